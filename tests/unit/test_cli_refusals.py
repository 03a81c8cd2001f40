"""Commands that read a target refuse MS SQL with exit 2 before any connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app

MSSQL = "mssql+pyodbc://sa:Ms-Pw-1@no-such-host.invalid/tc"


@pytest.mark.parametrize("args", [
    ["jobs", "list", "--target", MSSQL],
    ["jobs", "show", "abc", "--target", MSSQL],
    ["verify", "abc", "--target", MSSQL],
    ["restore", "abc", "--yes", "--target", MSSQL],
    ["run", "--yes", "--source", MSSQL, "--target", MSSQL],
])
def test_mssql_target_refused(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["code"] == "UNSUPPORTED_DATABASE"
    assert "Ms-Pw-1" not in result.output


def test_topology_name_without_topology_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["jobs", "list", "--target", "tcmerged", "--json"])
    assert result.exit_code == 2
    assert "--topology" in json.loads(result.stdout)["error"]["message"]


@pytest.mark.parametrize("text", [
    "tcuser:Hunter2pw@db1:5432/tcdb1",               # no scheme
    "postgresql://tcuser:Hunter2pw@db1:port/tcdb1",  # a port that is not a number
])
def test_a_bad_url_is_a_configuration_error_that_shows_no_password(text: str) -> None:
    result = CliRunner().invoke(app, ["validate", "--source", text, "--target",
                                      "postgresql://u@no-such-host.invalid/tc", "--json"])
    assert "Hunter2pw" not in result.output
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "CONFIG_ERROR" and "tcuser:***@db1" in error["message"]


def test_a_command_line_the_parser_refuses_still_gives_one_json_object() -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", "from tcmerge.cli.app import main; main()", "run", "--source",
         "postgresql://u@h/db", "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert json.loads(run.stdout)["error"]["code"] == "USAGE_ERROR"
    assert "--target" in run.stderr
    human = subprocess.run(
        [sys.executable, "-c", "from tcmerge.cli.app import main; main()", "run", "--source",
         "postgresql://u@h/db"], capture_output=True, text=True, timeout=60)
    assert human.returncode == 2 and human.stdout == ""


def test_the_command_ends_after_atexit_handlers_with_its_exit_code(tmp_path: Path) -> None:
    """main() ends without unloading modules (cli/app._exit), yet the atexit handlers
    (logging, temporary files, an embedded server's stop) still run and the exit code
    and output are the command's."""
    import subprocess
    import sys

    marker = tmp_path / "atexit-ran"
    code = ("import atexit, pathlib; "
            f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes'); "
            "from tcmerge.cli.app import main; main()")
    done = subprocess.run([sys.executable, "-c", code, "schema", "sql", "--dialect",
                           "postgresql"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("CREATE TABLE") >= 5 and done.stdout.rstrip().endswith(";")
    assert marker.read_text() == "yes"
    marker.unlink()
    refused = subprocess.run([sys.executable, "-c", code, "run", "--source", MSSQL,
                              "--target", MSSQL, "--json"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["error"]["code"] == "UNSUPPORTED_DATABASE"
    assert marker.read_text() == "yes"


def test_version_is_answered_without_a_command() -> None:
    from tcmerge import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == __version__


def test_a_terminal_that_cannot_show_a_character_gets_it_escaped(tmp_path: Path) -> None:
    """An ASCII-only stdout (or a byte of a SQL_ASCII database that is not UTF-8): the
    character is escaped, the command still ends with its own exit code."""
    import os
    import subprocess
    import sys

    from tcmerge.ha.scenario import scenarios_dir

    text = (scenarios_dir() / "seed-topology.toml").read_text(encoding="utf-8")
    path = tmp_path / "topology.toml"
    path.write_text(text.replace('name = "cup"', 'name = "cup-café"', 1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "from tcmerge.cli.app import main; main()", "topology",
         "check", str(path)], capture_output=True, timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "ascii:strict"})
    assert done.returncode == 0, done.stderr
    assert b"Cluster cup-caf\\xe9" in done.stdout


@pytest.mark.parametrize("args", [
    ["schema", "upgrade", "mssql+pyodbc://u@h/x", "--json"],
    ["schema", "check", "foo://x", "--json"],
    ["schema", "upgrade", "postgresql://u@h:99999/x", "--json"],
])
def test_schema_commands_refuse_what_they_cannot_serve_before_connecting(
        args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] in {"UNSUPPORTED_DATABASE", "CONFIG_ERROR"}


def test_an_unknown_revision_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["schema", "sql", "--dialect", "oracle", "--revision",
                                      "nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.stderr
