"""The job history (merge/jobs.py) is written once for every dialect: its statements,
compiled for PostgreSQL and for Oracle, and the CLI's jobs commands on an Oracle URL
(no Oracle server here: they must reach the connection, not refuse the dialect)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.dialects import oracle, postgresql
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.base import Executable
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.errors import ConfigError
from tcmerge.merge import jobs
from tcmerge.sqlexec import Row, Runner

JOB = jobs.JobRecord(job_id="20261207T101500-ab12cd34", status="succeeded",
                     started_at=datetime(2026, 12, 7, 10, 15), finished_at=None,
                     inputs={"dialect": "oracle", "target": {"label": "t"}, "sources": []},
                     counts={"tables": {}})


class CompilingRunner(Runner):
    """Compiles each statement for its dialect and keeps the text; answers ``answers``
    in turn (the rows a server would give). Not a database: nothing is executed."""

    def __init__(self, dialect: Dialect, answers: list[list[Row]]) -> None:
        self.dialect = dialect
        self.answers = answers
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def rows(self, statement: Executable,
             params: Mapping[str, Any] | None = None) -> list[Row]:
        compiled = statement.compile(dialect=self.dialect,  # type: ignore[attr-defined]
                                     compile_kwargs={"render_postcompile": True})
        values = compiled.construct_params(dict(params) if params else None)
        self.sent.append((str(compiled), dict(values or {})))
        return self.answers.pop(0) if self.answers else []

    def execute(self, statement: Executable,
                params: Mapping[str, Any] | None = None) -> int:
        self.rows(statement, params)
        return 0


DIALECTS = {"postgresql": postgresql.dialect(), "oracle": oracle.dialect()}


@pytest.mark.parametrize("name", list(DIALECTS))
def test_write_then_read_one_record_shape(name: str) -> None:
    run = CompilingRunner(DIALECTS[name], [[(0,)], [], []])
    jobs.ensure_jobs_table(run)
    jobs.write_job(run, JOB)
    (probe, _), (create, _), (insert, values) = run.sent
    if name == "oracle":
        assert "user_tables" in probe and "EXCEPTION WHEN OTHERS" in create
    else:
        assert "to_regclass" in probe and "CREATE TABLE IF NOT EXISTS tcmerge_jobs" in create
    assert insert.startswith("INSERT INTO tcmerge_jobs")
    # the same columns and values whatever the dialect; JSON text, no password anywhere
    assert json.loads(values["inputs"]) == JOB.inputs
    assert set(values) == {c.name for c in jobs.tcmerge_jobs.columns}
    # a table already there is not created again
    again = CompilingRunner(DIALECTS[name], [[(1,)]])
    jobs.ensure_jobs_table(again)
    assert len(again.sent) == 1


@pytest.mark.parametrize("name", list(DIALECTS))
def test_a_job_by_prefix_locked_for_restore(name: str) -> None:
    row = (JOB.job_id, "succeeded", JOB.started_at, None, "0.1.0",
           json.dumps(JOB.inputs), "{}", json.dumps(JOB.counts), None)
    run = CompilingRunner(DIALECTS[name], [[(1,)], [row]])
    found = jobs.get_job(run, "20261207T1015", for_update=True)
    assert found.job_id == JOB.job_id and found.inputs == JOB.inputs
    text, params = run.sent[1]
    assert "FOR UPDATE" in text and "ESCAPE" in text
    # the prefix is matched literally: _ and % in it are escaped
    assert any(v == "20261207T1015%" for v in params.values())
    run = CompilingRunner(DIALECTS[name], [[(1,)], []])
    with pytest.raises(ConfigError, match="no job"):
        jobs.get_job(run, "a_b%")
    assert any(v == "a\\_b\\%%" for v in run.sent[1][1].values()), run.sent


@pytest.mark.parametrize("command", [["jobs", "list"], ["jobs", "show", "2026"],
                                     ["verify", "2026"], ["restore", "2026", "--yes"]])
def test_jobs_commands_take_an_oracle_target(command: list[str]) -> None:
    """Refused only by the closed port (CONNECTION_FAILED, exit 3), not by the dialect."""
    result = CliRunner().invoke(app, [*command, "--target",
                                      "oracle+oracledb://tc@127.0.0.1:9/?service_name=X",
                                      "--json"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 3 and payload["error"]["code"] == "CONNECTION_FAILED", payload


def test_verify_recomputes_oracle_digests_by_the_oracle_statement() -> None:
    """verify JOB reads an Oracle source's checksums with the statement the Oracle merge
    took them with, whatever method a stored value names."""
    from tcmerge.dialects import adapter_for
    from tcmerge.schema import tc

    adapter = adapter_for("oracle")
    for table in tc.TC_TABLES:
        text = str(adapter.digest_statement(table.name, "text").compile(
            dialect=DIALECTS["oracle"]))
        assert text == str(adapter.checksum_statement(table).compile(
            dialect=DIALECTS["oracle"]))
        assert "ORA_HASH" in text


def test_restore_finds_changed_rows_on_oracle_without_except_all_or_lob_sets() -> None:
    """Oracle's 'rows held before the merge and gone since' (restore's change check): a
    grouped, null-safe match that parses as Oracle SQL, with LOBs compared by length and
    prefix (no LOB in a set operation, no EXCEPT ALL before 21c)."""
    import sqlglot

    from tcmerge.dialects import adapter_for

    run = CompilingRunner(DIALECTS["oracle"], [[(3,)]])
    gone = adapter_for("oracle").missing_rows(run, "TCMSNAP_AB12CD34_TC_MSGARCHIVE",
                                              "tc_msgarchive", ())
    assert gone == 3
    text = run.sent[0][0]
    assert "EXCEPT" not in text and "MINUS" not in text
    assert "DBMS_LOB.SUBSTR(s.body_text, 1000, 1)" in text
    assert "DECODE(a.k0, b.k0, 1, 0) = 1" in text
    sqlglot.parse_one(text, read="oracle")
    # the counters a merge raises are left out of the comparison of tc_rooms
    run = CompilingRunner(DIALECTS["oracle"], [[(0,)]])
    adapter_for("oracle").missing_rows(run, "S", "tc_rooms", ("start_msg_id", "next_msg_id"))
    assert "next_msg_id" not in run.sent[0][0]
