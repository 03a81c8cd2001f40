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


def test_oracle_script_does_not_read_the_target_named_among_the_sources() -> None:
    """Cisco's "merge DB1 into DB2" names DB2 as a source too: its rows are the target's
    own, so the script makes no link to it and stages nothing of it (as the psql script
    and a run do)."""
    into = [*ORACLE[:2], "--source", ORACLE[5].replace("Secr3tTgt", "Other"),
            "--target", ORACLE[5]]
    result = CliRunner().invoke(app, ["run", "--sql", *into])
    assert result.exit_code == 0, result.output
    script = result.stdout
    assert "source 2 is the target itself" in script
    assert script.count("'CREATE DATABASE LINK") == 1
    assert '_L1"' in script and '_L2"' not in script
    assert script.count(":tcmerge_link_password = the password of source") == 1
    # the target's checksums, the mirror's, are taken in the transaction
    transaction = script.index("-- [transaction]")
    assert "checksum of the target's tc_msgarchive" in script[transaction:]


def test_run_sql_json_is_one_object() -> None:
    result = CliRunner().invoke(app, ["run", "--sql", "--json", *ORACLE])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["ok"] is True and payload["dialect"] == "oracle"
    assert "CREATE DATABASE LINK" in payload["sql"] and "Secr3t" not in payload["sql"]


POSTGRES = ["--source", "postgresql://tc:Secr3tOne@nohost-1.invalid/db1",
            "--source", "postgresql://tc:Secr3tTwo@nohost-2.invalid:5433/db2",
            "--target", "postgresql://tc:Secr3tTwo@nohost-2.invalid:5433/db2"]


def test_postgresql_merge_as_a_psql_script_without_passwords() -> None:
    """Run live against the case tables in tests/integration/merge/test_rule_cases.py."""
    result = CliRunner().invoke(app, ["run", "--sql", "--json", *POSTGRES])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["dialect"] == "postgresql", result.output
    script = payload["sql"]
    assert "Secr3t" not in script and "password" not in script.replace(
        "passwords come from psql", "")
    # source 1 is exported, source 2 is the target itself and is not read again
    assert "\\connect 'postgresql://tc@nohost-1.invalid/db1'" in script
    assert "\\copy (SELECT 1 AS inp, room_jid," in script
    assert "\\copy (SELECT 2 AS inp" not in script
    assert "source 2 is the target itself" in script
    # in the target: one transaction, the lock, the rules, a refusal, the inserts, COMMIT
    body = script.index("-- [merge]")
    order = [script.index(marker, body) for marker in (
        "BEGIN;", "pg_try_advisory_xact_lock", "IN SHARE MODE;", "CREATE TEMP TABLE tcm_s_",
        "INSERT INTO tcm_w_room ", "'ROOM_CONFLICT: ", "INSERT INTO tc_msgarchive",
        "UPDATE tc_rooms", "COMMIT;")]
    assert order == sorted(order)
    assert "dblink" not in script


def test_mssql_is_refused_before_anything() -> None:
    result = CliRunner().invoke(app, [
        "run", "--sql", "--json", "--source", "mssql+pyodbc://u@h/a",
        "--target", "mssql+pyodbc://u@h/b"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "UNSUPPORTED_DATABASE"
