"""Reliability on real PostgreSQL: kill, lost source, concurrency, hostile names."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from tcmerge.dburl import DatabaseRef
from tcmerge.merge import run_merge
from tcmerge.providers import DatabaseServer
from tcmerge.request import MergeRequest

from . import proc
from .conftest import make_tc_database
from .data import TcData

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

ROOM = "ops@conference-1-c1.example.com"


def fill(db: TcData, tag: str, n: int = 30) -> None:
    db.room(ROOM, next_=n + 1)
    db.messages(ROOM, [(i, i, f"{tag} {i}") for i in range(1, n + 1)])
    db.member(ROOM, f"{tag}@example.com")
    db.timelog(ROOM, f"{tag}@example.com", 0, 5)


def run_args(target: TcData, *sources: TcData) -> list[str]:
    args = ["run", "--json", "--yes", "--target", proc.bare_url(target.ref)]
    for s in sources:
        args += ["--source", proc.bare_url(s.ref)]
    return args


def test_sigkill_mid_merge_leaves_target_identical_and_next_run_succeeds(
        tc_factory: Callable[..., TcData], tmp_path: Path) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    fill(two, "two")
    # a visit of a room only `one` has: copied straight into tc_timelog (a source with
    # no such room is not read directly)
    one.timelog("lobby@conference-1-c1.example.com", "one@example.com", 0, 5)
    before = target.digest()
    pgpass = proc.write_pgpass(tmp_path / "pgpass", [target.ref, one.ref, two.ref])
    with proc.admin(target.ref) as blocker:
        # reads go through; the merge's copy into tc_timelog (after the first source's
        # members, messages and archive rows are written) waits on this lock
        blocker.autocommit = False
        blocker.execute("LOCK TABLE tc_timelog IN SHARE MODE")
        child = proc.start(run_args(target, one, two), pgpass)
        proc.wait_until(blocker, proc.WAITING_ON, ("tc_timelog", "tcmerge-merge"), proc=child)
        # members, messages and archive rows are already written in the open transaction
        waiting = blocker.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'tcmerge-merge'"
        ).fetchone()
        child.send_signal(signal.SIGKILL)
        child.communicate()
        blocker.rollback()
        blocker.autocommit = True
        proc.wait_until(blocker, proc.SESSION_GONE)
    assert child.returncode == -signal.SIGKILL
    assert waiting is not None and waiting[0].startswith('COPY "tc_timelog"')
    assert target.digest() == before
    assert target.query("SELECT count(*) FROM pg_class WHERE relname LIKE 'tcm\\_%' "
                        "OR relname LIKE 'tcmerge\\_snap%'") == [(0,)]
    assert target.query("SELECT count(*) FROM tcmerge_jobs") == [(0,)]
    code, out = proc.finish(proc.start(run_args(target, one, two), pgpass))
    assert code == 0, out
    assert out["tables"]["tc_msgarchive"]["inserted"] == 60


def test_two_concurrent_runs_one_gets_merge_in_progress(
        tc_factory: Callable[..., TcData], tmp_path: Path) -> None:
    target, one = tc_factory(), tc_factory()
    fill(one, "one")
    pgpass = proc.write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    with proc.admin(target.ref) as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE tc_timelog IN SHARE MODE")
        first = proc.start(run_args(target, one), pgpass)
        proc.wait_until(blocker, proc.WAITING_ON, ("tc_timelog", "tcmerge-merge"), proc=first)
        code2, out2 = proc.finish(proc.start(run_args(target, one), pgpass))
        blocker.rollback()
    code1, out1 = proc.finish(first)
    assert code1 == 0, out1
    assert code2 == 1
    assert [f["code"] for f in out2["findings"] if f["severity"] == "error"] == [
        "MERGE_IN_PROGRESS"]
    assert target.count("tc_msgarchive") == 30


def test_source_stopped_mid_merge_exit_3_target_unchanged_job_failed(
        tc_factory: Callable[..., TcData], cluster_factory: Callable[..., DatabaseServer],
        tmp_path: Path) -> None:
    remote = cluster_factory("stopsrc")
    target, one = tc_factory(), tc_factory()
    two = TcData(make_tc_database(remote, []))
    fill(target, "t")
    fill(one, "one")
    fill(two, "two")
    # a visit of a room only `one` has: copied straight into tc_timelog while `one` is
    # read (a source with no such room is not read directly)
    one.timelog("lobby@conference-1-c1.example.com", "one@example.com", 0, 5)
    before = target.digest()
    pgpass = proc.write_pgpass(tmp_path / "pgpass", [target.ref, one.ref, two.ref])
    # Validation reads every input, so the merge is held on the *target* (its copy into
    # tc_timelog, after source one's other rows are written, waits on this lock) while
    # source two's server is stopped; what remains of the merge (source two's rows) then
    # meets a source that is gone.
    blocker = proc.admin(target.ref)
    blocker.autocommit = False  # a transaction holds the lock; wait_until renews its view
    blocker.execute("LOCK TABLE tc_timelog IN SHARE MODE")
    child = proc.start(run_args(target, one, two), pgpass)
    proc.wait_until(blocker, proc.WAITING_ON, ("tc_timelog", "tcmerge-merge"), proc=child)
    remote.stop("immediate")
    blocker.rollback()
    blocker.close()
    code, out = proc.finish(child)
    assert code == 3, out
    assert out["ok"] is False and out["error"]["code"] in {"DATABASE_ERROR", "MERGE_FAILED"}
    # what validation found before the failure is still reported
    assert "SPACE_ESTIMATE" in {f["code"] for f in out["findings"]}
    assert out["job_id"]
    assert target.digest() == before
    assert target.query("SELECT job_id, status FROM tcmerge_jobs") == [(out["job_id"],
                                                                        "failed")]
    error_text = target.query("SELECT error FROM tcmerge_jobs")[0][0]
    assert two.ref.url.password not in error_text and remote.password not in out["error"][
        "message"]


HOSTILE_USER = "we'ird\"us;er\\"
HOSTILE_PASSWORD = "p'a\"s;s\\w:rd @%"


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_hostile_names_work_and_inject_nothing(
        embedded_server: DatabaseServer, tmp_path: Path, transport: str) -> None:
    server = embedded_server
    created: list[str] = []
    try:
        server.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            psycopg.sql.Identifier(HOSTILE_USER + transport),
            psycopg.sql.Literal(HOSTILE_PASSWORD)).as_string(None))
        dbs: list[TcData] = []
        for tag in ("tgt", "one", "two"):
            name = f"{tag}_{transport}'\"; DROP TABLE canary; --\\"
            make_tc_database(server, created, name=name)
            admin = server.admin_ref(name)
            server.execute([
                "CREATE TABLE canary (x int)",
                *(psycopg.sql.SQL("GRANT ALL ON {} TO {}").format(
                    psycopg.sql.SQL(what), psycopg.sql.Identifier(HOSTILE_USER + transport)
                ).as_string(None) for what in ("ALL TABLES IN SCHEMA public",
                                               "SCHEMA public")),
            ], database=name)
            if tag == "tgt" and transport == "dblink":
                server.execute("CREATE EXTENSION dblink", database=name)
            url = URL.create("postgresql+psycopg", username=HOSTILE_USER + transport,
                             password=HOSTILE_PASSWORD, host=admin.url.host,
                             port=admin.url.port, database=name)
            dbs.append(TcData(DatabaseRef(url)))
        target, one, two = dbs
        TcData(server.admin_ref(one.ref.url.database)).room(ROOM)
        TcData(server.admin_ref(one.ref.url.database)).messages(ROOM, [(1, 0, "a ' \" ;")])
        TcData(server.admin_ref(two.ref.url.database)).messages(ROOM, [(1, 1, "b \\ ;")])
        if transport == "copy":
            pgpass = proc.write_pgpass(tmp_path / "pgpass", [d.ref for d in dbs])
            code, out = proc.finish(proc.start(run_args(target, one, two), pgpass))
            assert code == 0, out
            assert HOSTILE_PASSWORD not in repr(out)
        else:
            result = run_merge(MergeRequest(sources=(one.ref, two.ref), target=target.ref,
                                            transport="dblink"))
            assert result.ok, result.as_dict()
            assert HOSTILE_PASSWORD not in repr(result.as_dict())
        admin_target = TcData(server.admin_ref(target.ref.url.database))
        assert admin_target.archive(ROOM) == [(1, "a ' \" ;"), (2, "b \\ ;")]
        for db in dbs:
            assert TcData(server.admin_ref(db.ref.url.database)).query(
                "SELECT count(*) FROM canary") == [(0,)]
    finally:
        for name in created:
            server.drop_database(name)
        server.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(
            psycopg.sql.Identifier(HOSTILE_USER + transport)).as_string(None))


@pytest.mark.parametrize("second", ["run", "validate"])
def test_merge_in_progress_is_immediate_even_while_the_first_run_is_in_its_preflight(
        tc_factory: Callable[..., TcData], tmp_path: Path, second: str) -> None:
    """The first run is held inside its preflight (reading the target's table sizes, which
    waits on another session's lock): a second run or validate must still be told
    MERGE_IN_PROGRESS at once, not wait on the first one's locks. Without the lock taken
    at the command's first statement, the second one passed the lock check and waited."""
    target, one = tc_factory(), tc_factory()
    fill(one, "one")
    pgpass = proc.write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    with proc.admin(target.ref) as blocker:
        blocker.autocommit = False
        # (the size of tc_rooms, which a snapshot copies, is read by the preflight)
        blocker.execute("LOCK TABLE tc_rooms IN ACCESS EXCLUSIVE MODE")
        first = proc.start(run_args(target, one), pgpass)
        proc.wait_until(blocker, proc.WAITING_ON, ("tc_rooms", "tcmerge"), proc=first)
        args = run_args(target, one) if second == "run" else [
            "validate", "--json", "--target", proc.bare_url(target.ref),
            "--source", proc.bare_url(one.ref)]
        # the blocker still holds its lock: a second command that waited would time out
        code2, out2 = proc.finish(proc.start(args, pgpass), timeout=60)
        assert first.poll() is None  # the first is still held in its preflight
        blocker.rollback()
    code1, out1 = proc.finish(first)
    assert code1 == 0, out1
    assert code2 == 1, out2
    in_progress = [f for f in out2["findings"] if f["code"] == "MERGE_IN_PROGRESS"]
    assert [f["code"] for f in out2["findings"] if f["severity"] == "error"] == [
        "MERGE_IN_PROGRESS"]
    assert "merge or restore is changing this target" in in_progress[0]["message"]
    assert target.count("tc_msgarchive") == 30
