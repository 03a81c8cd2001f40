"""Passwords on the command line: a URL password is warned about once on stderr (others can
read a process's arguments), and -W asks for one instead, only where a terminal can answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import parse_database

PASSWORD = "Cmd1ine-secret"
#: nothing listens on port 1: every command fails fast at its first connection
WITH = f"postgresql://tcuser:{PASSWORD}@127.0.0.1:1/tcdb"
WITHOUT = "postgresql://tcuser@127.0.0.1:1/tcdb"
WARNING = "can be seen by other users of this machine"
CLI = "from tcmerge.cli.app import main; main()"


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", [
    ["validate", "--source", WITH + "1", "--source", WITH + "2", "--target", WITH + "3"],
    ["run", "--yes", "--source", WITH + "1", "--source", WITH + "2", "--target", WITH + "3"],
    ["verify", "20260101T000000-00000000", "--target", WITH + "3", "--source", WITH + "1"],
    ["jobs", "list", "--target", WITH],
    ["schema", "check", WITH],
])
def test_a_url_password_is_warned_about_once_on_stderr(command: list[str]) -> None:
    code, out, err = _invoke(*command, "--json")
    assert code != 0  # nothing listens: what matters is what was said before
    assert err.count(WARNING) == 1, err  # once, however many URLs carry one
    for alternative in ("PGPASSFILE", "password_env", "PGPASSWORD", "-W (--password)"):
        assert alternative in err, err
    assert WARNING not in out and json.loads(out)["ok"] is False  # stdout: one object
    assert PASSWORD not in out + err


def test_no_warning_without_a_url_password() -> None:
    code, out, err = _invoke("validate", "--source", WITHOUT + "1", "--target", WITHOUT + "2",
                             "--json")
    assert code == 1 and json.loads(out)["ok"] is False
    assert WARNING not in out + err


def test_the_warning_is_given_again_by_the_next_command_in_the_process() -> None:
    """Once per command, not once per process (the CLI's tests run many in one)."""
    for _ in range(2):
        assert _invoke("jobs", "list", "--target", WITH)[2].count(WARNING) == 1


def test_password_option_without_a_terminal_is_a_usage_error() -> None:
    """No controlling terminal (a new session) and stdin not one: -W cannot ask."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "jobs", "list", "-W", "--json", "--target", WITHOUT],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
        start_new_session=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "CONFIG_ERROR" and "terminal" in error["message"]
    assert "PGPASSFILE" in error["message"]


def test_the_prompt_names_user_host_and_database() -> None:
    from tcmerge.cli.output import password_prompt

    assert password_prompt(parse_database(WITHOUT)) == \
        "Password for tcuser@127.0.0.1:1/tcdb: "
    named = parse_database("postgresql://tc@db1/tcdb1", name="tcdb1")
    assert password_prompt(named) == "Password for tc@db1/tcdb1 (tcdb1): "


def test_password_option_is_offered_by_every_command_that_takes_databases() -> None:
    for command in (["validate"], ["run"], ["jobs", "list"], ["jobs", "show"], ["verify"],
                    ["restore"], ["schema", "upgrade"], ["schema", "check"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert "-W" in result.stdout and "--password" in result.stdout, command
