"""The Oracle merge plan rendered offline, and the executor's control flow.

No Oracle server here. ``render_script`` prints the whole plan of a 2-source
merge as a SQL script (like Alembic's offline mode); the order tests read it.

The control-flow tests run the real executor (``MergeExecutor`` with ``OracleMerge``) against
``RecordingConnection``: it records the Oracle text of every statement in order,
answers nothing (no rows, no row counts) and raises where a test tells it to.
It is NOT a database mock: no test here gets a result from it, so each failure
is injected before the executor would need one (the lock, the links, the
staging DDL). What the tests prove is the order of statements and that the
helpers a run made are dropped, and the lock released, after a failure.
Whether Oracle accepts and executes them is for the live test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tcmerge.dburl import DatabaseRef, parse_database
from tcmerge.errors import DatabaseError
from tcmerge.merge import oracle as ora
from tcmerge.merge.dialect_merge import RunContext
from tcmerge.merge.engine import MergeExecutor, MergeFailed, analyse_merge, run_merge
from tcmerge.merge.oracle_merge import (
    Connector,
    OracleMerge,
    OraclePlan,
    iter_sql,
    render_script,
)
from tcmerge.request import MergeRequest
from tcmerge.schema import tc
from tcmerge.validate import ValidationReport

PW = ["S3cr'et-one", "p@ss;two\\x", "T4rget-pw"]


def ref(user: str, host: str, password: str) -> DatabaseRef:
    return parse_database(f"oracle+oracledb://{user}@{host}:1521/?service_name=FREEPDB1"
                          ).with_password(password)


REQUEST = MergeRequest(sources=(ref("src1", "db1", PW[0]), ref("src2", "db2", PW[1])),
                       target=ref("tgt", "db0", PW[2]))
REPORT = ValidationReport(dialect="oracle",
                          transports={"dblink": {"possible": True, "link": "private"}})


def plan(**kw: Any) -> OraclePlan:
    return OraclePlan(kw.pop("request", REQUEST), "ab12cd34", kw.pop("kind", "private"), **kw)


def where(lines: list[str], pattern: str, *, last: bool = False) -> int:
    hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert hits, pattern
    return hits[-1] if last else hits[0]


def test_script_order_ddl_before_the_transaction_drops_after() -> None:
    script = render_script(plan())
    lines = script.splitlines()
    lock = where(lines, r"^LOCK TABLE tcmerge_merge_lock IN EXCLUSIVE MODE NOWAIT;")
    cleanup = where(lines, r"^DECLARE no_priv EXCEPTION")
    link1 = where(lines, r'CREATE DATABASE LINK "TCM_AB12CD34_L1"')
    link2 = where(lines, r'CREATE DATABASE LINK "TCM_AB12CD34_L2"')
    staging = where(lines, r"^CREATE TABLE tcm_ab12cd34_s_rooms \($")
    fill = where(lines, r"^INSERT /\*\+ APPEND \*/ INTO tcm_ab12cd34_s_rooms")
    fill_last = where(lines, r'^FROM tc_timelog@"TCM_AB12CD34_L2" r;', last=True)
    unlink = where(lines, r'^DROP DATABASE LINK "TCM_AB12CD34_L2";')
    work = where(lines, r"^CREATE TABLE tcm_ab12cd34_w_room AS")
    begin = where(lines, r"^-- BEGIN")
    snapshot = where(lines, r"^INSERT INTO tcmsnap_ab12cd34_rooms SELECT \* FROM tc_rooms;")
    rules = where(lines, r"^INSERT INTO tcm_ab12cd34_w_room \(room_jid, owner")
    apply = where(lines, r"^INSERT INTO tc_msgarchive \(")
    verify = where(lines, r"^-- verify: bans")
    job = where(lines, r"^INSERT INTO tcmerge_jobs \(")
    commit = where(lines, r"^COMMIT;$", last=True)
    drop = where(lines, r"^DROP TABLE tcm_ab12cd34_s_rooms PURGE;")
    unlock = where(lines, r"^ROLLBACK;$", last=True)
    assert (lock < cleanup < link1 < link2 < staging < fill < fill_last < unlink < work
            < begin < snapshot < rules < apply < verify < job < commit < drop < unlock)
    # every DDL is before BEGIN or after COMMIT: Oracle DDL would commit the merge
    inside = lines[begin:commit]
    assert not [x for x in inside if re.match(r"^(CREATE|DROP|ALTER|TRUNCATE) ", x)]
    # each direct-path fill is committed before the staging table is read (ORA-12838)
    assert script.count("INSERT /*+ APPEND */") == script.count(";\nCOMMIT;") == 10
    # the snapshot tables survive a committed merge, and are dropped when it did not commit
    assert "DROP TABLE tcmsnap_" not in script
    assert "DROP TABLE tcmsnap_ab12cd34_rooms PURGE;" in render_script(plan(), succeeded=False)


def test_no_password_in_any_sql_and_links_bind_it() -> None:
    p = plan()
    texts = list(iter_sql(p))
    for secret in PW:
        assert not any(secret in t for t in texts)
    creates = [t for t in texts if "CREATE DATABASE LINK" in t]
    assert len(creates) == 2 and all(":tcmerge_link_password" in t for t in creates)
    assert "CREATE PUBLIC DATABASE LINK" in render_script(plan(kind="public"))


def test_every_name_fits_thirty_characters() -> None:
    p = plan(request=MergeRequest(sources=REQUEST.sources, target=REQUEST.target,
                                  tables=tc.ALL_TABLES))
    names = p.all_names()
    assert len(names) == len(set(names)) > 30
    assert all(len(n) <= 30 for n in names), [n for n in names if len(n) > 30]
    assert all(n.upper().startswith(("TCM_AB12CD34_", "TCMSNAP_AB12CD34_")) for n in names)


def test_no_snapshot_means_no_snapshot_tables() -> None:
    script = render_script(plan(snapshot=False))
    assert "tcmsnap_" not in script and "checksum of the target" not in script


# -- the executor against a recording connection ---------------------------------------------
class OraError(Exception):
    """What python-oracledb raises: args[0] carries the ORA- code."""

    class _Err:
        def __init__(self, code: int, message: str) -> None:
            self.code = code
            self.message = message

        def __str__(self) -> str:
            return self.message

    def __init__(self, code: int, message: str) -> None:
        super().__init__(self._Err(code, message))


class RecordingConnection:
    """Records what is sent, in order; answers nothing. Not a database mock."""

    def __init__(self, log: list[tuple[str, str, Any]], role: str,
                 fail: Callable[[str], OraError | None]) -> None:
        self.log, self.role, self.fail = log, role, fail

    def execute(self, statement: Any, parameters: Any = None) -> None:
        text = ora.compile_oracle(statement).strip()
        self.log.append((self.role, text, parameters))
        problem = self.fail(text)
        if problem is not None:
            raise sa.exc.DatabaseError(text, parameters, problem)

    def commit(self) -> None:
        self.log.append((self.role, "COMMIT", None))

    def rollback(self) -> None:
        self.log.append((self.role, "ROLLBACK", None))

    def close(self) -> None:
        self.log.append((self.role, "CLOSE", None))


JOB_ID = "20261126T101500-ab12cd34"


def executor(connect: Connector, report: ValidationReport = REPORT,
             **oracle: Any) -> MergeExecutor:
    """run's executor with the Oracle steps on the given sessions (no lock session of
    tcmerge.lock: ``_execute`` is entered after it)."""

    def make(request: MergeRequest, report: ValidationReport, ctx: RunContext) -> OracleMerge:
        impl = OracleMerge(request, report, ctx, connect=connect)
        for name, value in oracle.items():
            setattr(impl, name, value)
        return impl

    merge = MergeExecutor(REQUEST, mode="run", progress=None, preflight=lambda r: report,
                          dialect_merge=make)
    merge.ctx.job_id = JOB_ID
    return merge


def run(fail: Callable[[str], OraError | None]) -> tuple[list[tuple[str, str, Any]], Any]:
    log: list[tuple[str, str, Any]] = []

    def connect(db: DatabaseRef, role: str) -> RecordingConnection:
        return RecordingConnection(log, role, fail)

    try:
        outcome: Any = executor(connect)._execute("oracle")
    except MergeFailed as exc:
        outcome = exc
    return log, outcome


def index(log: list[tuple[str, str, Any]], role: str, pattern: str, *, last: bool = False) -> int:
    hits = [i for i, (r, text, _) in enumerate(log) if r == role and re.search(pattern, text)]
    assert hits, (role, pattern)
    return hits[-1] if last else hits[0]


def test_a_second_merge_gets_merge_in_progress_and_makes_nothing() -> None:
    log, result = run(lambda t: OraError(54, "ORA-00054: resource busy and acquire with "
                                             "NOWAIT specified") if t.startswith("LOCK") else None)
    assert result.status == "refused" and not result.ok
    assert [f.code for f in result.findings] == ["MERGE_IN_PROGRESS"]
    assert not [t for _, t, _ in log if "DATABASE LINK" in t or t.startswith("CREATE TABLE")]
    assert log[-2:] == [("lock", "ROLLBACK", None), ("lock", "CLOSE", None)]


def test_failure_at_the_second_link_drops_the_first_and_releases_the_lock() -> None:
    log, failure = run(lambda t: OraError(12154, "ORA-12154: could not resolve the connect "
                                                 "identifier") if "_L2" in t and "CREATE" in t
                       else None)
    assert isinstance(failure, MergeFailed) and failure.code == "CONNECTION_FAILED"
    assert "the target is unchanged" in failure.message
    made = index(log, "merge", r'CREATE DATABASE LINK "TCM_AB12CD34_L1"')
    dropped = index(log, "merge", r'^DROP DATABASE LINK "TCM_AB12CD34_L1"$')
    unlock = index(log, "lock", r"^ROLLBACK$", last=True)
    assert made < dropped < unlock
    # a link in use by a transaction cannot be dropped (ORA-02080): rolled back first
    assert [t for _, t, _ in log[dropped - 2:dropped]] == [
        "ROLLBACK", "ALTER SESSION CLOSE DATABASE LINK TCM_AB12CD34_L1"]
    assert not [t for _, t, _ in log if t.startswith("CREATE TABLE tcm_")]
    # the failed job is recorded in a session of its own, without the passwords
    job = index(log, "jobs", r"^INSERT INTO tcmerge_jobs")
    assert log[job][2]["status"] == "failed" and log[job + 1] == ("jobs", "COMMIT", None)
    assert failure.job_id == "20261126T101500-ab12cd34"
    everything = repr([(t, p) for _, t, p in log if not (p and "tcmerge_link_password" in p)])
    assert not any(secret in everything for secret in PW)
    passwords = [p["tcmerge_link_password"] for _, _, p in log
                 if p and "tcmerge_link_password" in p]
    assert passwords == PW[:2]  # bound, never in the text


def test_failure_in_the_staging_ddl_drops_links_and_staging_made_so_far() -> None:
    log, failure = run(lambda t: OraError(1536, "ORA-01536: space quota exceeded")
                       if t.startswith("CREATE TABLE tcm_ab12cd34_s_msg") else None)
    assert isinstance(failure, MergeFailed)
    texts = [t for r, t, _ in log if r == "merge"]
    for link in ("TCM_AB12CD34_L1", "TCM_AB12CD34_L2"):
        assert f'DROP DATABASE LINK "{link}"' in texts
    assert "DROP TABLE tcm_ab12cd34_s_rooms PURGE" in texts
    assert "DROP TABLE tcm_ab12cd34_s_users PURGE" in texts
    assert "DROP TABLE tcm_ab12cd34_s_msg PURGE" not in texts  # never made
    assert not [t for t in texts if t.startswith("INSERT /*+ APPEND */")]
    last_drop = max(i for i, (_, t, _) in enumerate(log) if t.startswith("DROP "))
    assert last_drop < index(log, "lock", r"^ROLLBACK$", last=True)


def test_oracle_inputs_reach_the_oracle_executor() -> None:
    """run_merge no longer refuses Oracle: it gets as far as the link privilege."""
    no_link = ValidationReport(dialect="oracle", transports={"dblink": {"possible": False}})
    with pytest.raises(DatabaseError) as info:
        run_merge(REQUEST, preflight=lambda r: no_link)
    assert info.value.code == "PRIVILEGE_MISSING"
    # validate's data part would need DDL in the target: not run, and said so
    result = analyse_merge(REQUEST, preflight=lambda r: REPORT)
    assert result.status == "validated"
    assert [f.code for f in result.findings] == ["DATA_NOT_CHECKED"]


def test_the_merge_transaction_first_locks_the_merged_tables_against_writers() -> None:
    # as on PostgreSQL (pg_merge.py): SHARE mode from the transaction's first statement, so
    # that no writer changes the target between the checksums, the snapshot, the analysis
    # and the inserts. Without it, a row committed by another session in between was
    # missing from the snapshot (a restore would delete it) or changed what the rules saw.
    steps = [s.sql() for s in plan().transaction_steps()]
    lock = ("LOCK TABLE tc_rooms, tc_users, tc_messages, tc_msgarchive, tc_timelog "
            "IN SHARE MODE")
    assert steps[1] == lock
    assert steps.index(lock) < min(i for i, t in enumerate(steps)
                                   if t.startswith(("SELECT", "INSERT")))
    log: list[tuple[str, str, Any]] = []
    oracle = OracleMerge(REQUEST, REPORT, RunContext(mode="run", job_id=JOB_ID),
                         connect=lambda db, role: RecordingConnection(log, role, lambda t: None))
    oracle.conn = RecordingConnection(log, "merge", lambda t: OraError(
        1013, "ORA-01013: user requested cancel of current operation"))
    with pytest.raises(sa.exc.DatabaseError):
        oracle.begin_transaction(plan())
    assert [t for _, t, _ in log] == [lock]


def test_an_interrupted_merge_is_recorded_as_failed_and_cleans_up() -> None:
    # rules 8 and 9, as the executor does on PostgreSQL: Ctrl-C (or a bug) while a source is
    # staged still rolls back, records the failed job in a session of its own, drops the
    # links and staging, and releases the lock. The Oracle executor caught only driver and
    # tcmerge errors: such a run left no job record at all.
    log: list[tuple[str, str, Any]] = []

    def interrupt(text: str) -> OraError | None:
        if text.startswith("INSERT /*+ APPEND */ INTO tcm_ab12cd34_s_users"):
            raise KeyboardInterrupt
        return None

    merge = executor(lambda db, role: RecordingConnection(log, role, interrupt),
                     read_source_checksums=lambda: {})
    with pytest.raises(KeyboardInterrupt):
        merge._execute("oracle")
    job = index(log, "jobs", r"^INSERT INTO tcmerge_jobs")
    assert log[job][2]["status"] == "failed"
    assert log[job][2]["error"] == "KeyboardInterrupt: interrupted or internal error"
    assert log[job + 1] == ("jobs", "COMMIT", None)
    texts = [t for r, t, _ in log if r == "merge"]
    assert 'DROP DATABASE LINK "TCM_AB12CD34_L1"' in texts
    assert "DROP TABLE tcm_ab12cd34_s_users PURGE" in texts
    assert log[-2:] == [("lock", "ROLLBACK", None), ("lock", "CLOSE", None)]


def test_the_target_named_among_the_sources_is_not_read_again() -> None:
    """Cisco's "merge DB1 into DB2" names DB2 as a source too (validation: TARGET_IS_SOURCE,
    its database is the target's). As on PostgreSQL, its rows are the target's own: no
    link to it, nothing of it staged, its password never bound; the job marks it."""
    into = ValidationReport(dialect="oracle", transports=REPORT.transports,
                            databases=[{"title": "target"}, {"title": "source 1"},
                                       {"title": "source 2", "same_as": "target"}])
    log: list[tuple[str, str, Any]] = []

    def fail(text: str) -> OraError | None:  # a failure once source 1 is being staged
        if text.startswith("INSERT /*+ APPEND */ INTO tcm_ab12cd34_s_users"):
            return OraError(1653, "ORA-01653: unable to extend table")
        return None

    merge = executor(lambda db, role: RecordingConnection(log, role, fail), into,
                     read_source_checksums=lambda: {1: {}})
    with pytest.raises(MergeFailed):
        merge._execute("oracle")
    texts = [t for _, t, _ in log]
    links = [t for t in texts if "CREATE DATABASE LINK" in t]
    assert len(links) == 1 and 'CREATE DATABASE LINK "TCM_AB12CD34_L1"' in links[0]
    assert not [t for t in texts if "_L2" in t]
    passwords = [p["tcmerge_link_password"] for _, _, p in log
                 if p and "tcmerge_link_password" in p]
    assert passwords == PW[:1]
    job = index(log, "jobs", r"^INSERT INTO tcmerge_jobs")
    inputs = json.loads(log[job][2]["inputs"])
    assert [s.get("is_target", False) for s in inputs["sources"]] == [False, True]
    # the plan lists the target's checksums (the mirror's) even without a snapshot
    steps = [s.note for s in plan(snapshot=False, mirrors=frozenset({2})).transaction_steps()]
    assert "checksum of the target's tc_msgarchive" in steps
