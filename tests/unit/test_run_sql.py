"""``tcmerge run --sql``: the merge as a SQL script, connecting to nothing, with no
password in it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tcmerge.cli.app import app

# hosts that do not resolve: any connection attempt would fail the command
ORACLE = ["--source", "oracle+oracledb://tc:Secr3tOne@nohost-1.invalid:1521/?service_name=N1",
          "--source", "oracle+oracledb://tc:Secr3tTwo@nohost-2.invalid:1521/?service_name=N2",
          "--target", "oracle+oracledb://tc:Secr3tTgt@nohost-3.invalid:1521/?service_name=M"]


def test_oracle_merge_as_a_script_without_passwords() -> None:
    result = CliRunner().invoke(app, ["run", "--sql", *ORACLE])
    assert result.exit_code == 0, result.output
    script = result.stdout
    for secret in ("Secr3tOne", "Secr3tTwo", "Secr3tTgt"):
        assert secret not in script
    # every step of the merge, in order: lock, links, staging, rules, apply, verify, job
    body = script.index("-- [lock]")  # after the header's instructions
    order = [script.index(marker, body) for marker in (
        "LOCK TABLE tcmerge_merge_lock IN EXCLUSIVE MODE NOWAIT",
        "CREATE DATABASE LINK", "-- [transaction]", "-- [apply]", "-- [verify]",
        "INSERT INTO tcmerge_jobs", "-- [drop]")]
    assert order == sorted(order)
    # each link says whose password its bind variable takes
    assert script.count(":tcmerge_link_password = the password of source") == 2
    assert "source 2 (oracle+oracledb://tc:***@nohost-2.invalid" in script


def test_run_sql_json_is_one_object() -> None:
    result = CliRunner().invoke(app, ["run", "--sql", "--json", *ORACLE])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["ok"] is True and payload["dialect"] == "oracle"
    assert "CREATE DATABASE LINK" in payload["sql"] and "Secr3t" not in payload["sql"]


def test_postgresql_has_no_script_yet_and_says_so() -> None:
    result = CliRunner().invoke(app, [
        "run", "--sql", "--json", "--source", "postgresql://tc@nohost-1.invalid/a",
        "--target", "postgresql://tc@nohost-2.invalid/b"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 2 and payload["error"]["code"] == "CONFIG_ERROR"
    assert "run --sql is not available for postgresql" in payload["error"]["message"]


def test_mssql_is_refused_before_anything() -> None:
    result = CliRunner().invoke(app, [
        "run", "--sql", "--json", "--source", "mssql+pyodbc://u@h/a",
        "--target", "mssql+pyodbc://u@h/b"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "UNSUPPORTED_DATABASE"
