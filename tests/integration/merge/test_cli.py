"""``tcmerge run / jobs / verify / restore`` through the CLI: JSON shape and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef

from .data import TcData

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
SOLO = "solo@conference-2-c1.example.com"


def url(ref: DatabaseRef) -> str:
    return ref.url.render_as_string(hide_password=False)


def cli(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def sources(*dbs: TcData) -> list[str]:
    return [arg for db in dbs for arg in ("--source", url(db.ref))]


def test_run_jobs_verify_restore(tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    target.room(ROOM, next_=2)
    target.messages(ROOM, [(1, 0, "target's own")])
    one.room(ROOM, next_=3)
    one.messages(ROOM, [(1, 1, "from one"), (2, 2, "from one again")])
    two.member(ROOM, "eve@example.com", "outcast")
    two.room(SOLO, next_=3)  # held by one input only: copied straight into the target
    two.messages(SOLO, [(1, 0, "solo 1"), (2, 1, "solo 2")])
    before = target.digest()

    code, dry = cli("run", *sources(one, two), "--target", url(target.ref), "--dry-run")
    assert code == 0, dry
    assert dry["ok"] is True and dry["job_id"] is None and dry["status"] == "dry-run"
    assert dry["tables"]["tc_msgarchive"] == {"read": [1, 2, 2], "inserted": 4,
                                              "duplicates": 0, "renumbered": 2,
                                              "conflicts": 0}
    assert target.digest() == before  # rolled back

    code, done = cli("run", *sources(one, two), "--target", url(target.ref))
    assert code == 0, done
    assert done["tables"] == dry["tables"]
    job = done["job_id"]
    assert target.archive(ROOM) == [(1, "target's own"), (2, "from one"),
                                    (3, "from one again")]
    assert target.counters(ROOM) == (1, 4)
    assert target.archive(SOLO) == [(1, "solo 1"), (2, "solo 2")]

    code, listed = cli("jobs", "list", "--target", url(target.ref))
    assert code == 0 and [j["job_id"] for j in listed["jobs"]] == [job]
    # the human table shows the whole id (what jobs show / verify / restore take)
    human = CliRunner().invoke(app, ["jobs", "list", "--target", url(target.ref)],
                               env={"COLUMNS": "80"})
    assert human.exit_code == 0 and job in human.stdout, human.stdout
    assert "succeeded" in human.stdout and "…" not in human.stdout, human.stdout
    for ref in (one.ref, two.ref):  # each source named short, on a line of its own
        short = (f"{ref.url.host}:{ref.url.port or 5432}/{ref.url.database}"
                 if ref.url.host else str(ref.url.database))
        assert f"│ {short} " in human.stdout, human.stdout
    code, shown = cli("jobs", "show", job[:-2], "--target", url(target.ref))
    assert code == 0 and shown["status"] == "succeeded"
    assert shown["counts"]["tables"]["tc_msgarchive"]["inserted"] == 4
    human = CliRunner().invoke(app, ["jobs", "show", job, "--target", url(target.ref)],
                               env={"COLUMNS": "80"})
    assert human.exit_code == 0 and "status: succeeded" in human.stdout, human.stdout
    assert "None" not in human.stdout and "…" not in human.stdout, human.stdout
    assert "password" not in json.dumps(shown).lower()
    for ref in (target.ref, one.ref):
        assert ref.url.password not in json.dumps(shown)

    code, checked = cli("verify", job, "--target", url(target.ref), *sources(one, two))
    assert code == 0, checked
    assert checked["ok"] is True

    # a source changed after the merge: verification fails with exit 1
    one.messages("late@conference-1-c1.example.com", [(1, 0, "late")])
    code, checked = cli("verify", job, "--target", url(target.ref), *sources(one, two))
    assert code == 1
    assert [f["code"] for f in checked["findings"] if f["severity"] == "error"] == [
        "VERIFY_SOURCE_CHANGED"]

    code, restored = cli("restore", job, "--target", url(target.ref), "--yes")
    assert code == 0, restored
    assert restored["checksums_match"] is True
    assert target.digest() == before
    code, shown = cli("jobs", "show", job, "--target", url(target.ref))
    assert shown["status"] == "restored"
    assert target.query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tcmerge_snap%'"
                        ) == [(0,)]


def test_room_conflict_refuses_with_exit_1(tc_factory: Callable[..., TcData]) -> None:
    target, one = tc_factory(), tc_factory()
    target.room(ROOM, creator="alice@example.com")
    one.room(ROOM, creator="mallory@example.com")
    one.messages(ROOM, [(1, 0, "x")])
    before = target.digest()
    code, out = cli("run", *sources(one), "--target", url(target.ref))
    assert code == 1
    assert out["ok"] is False and out["job_id"] is None
    assert any(f["code"] == "ROOM_CONFLICT" and f["severity"] == "error"
               for f in out["findings"])
    assert target.digest() == before
    # the human summary gives no rate for a run that moved nothing
    human = CliRunner().invoke(app, ["run", *sources(one), "--target", url(target.ref)],
                               terminal_width=80)
    assert human.exit_code == 1 and "refused:" in human.stdout, human.stdout
    assert "rows/s" not in human.stdout


def test_strict_blocks_on_warnings(tc_factory: Callable[..., TcData]) -> None:
    target, one = tc_factory(), tc_factory()
    target.room(ROOM, subject="a")
    one.room(ROOM, subject="b")
    code, out = cli("run", *sources(one), "--target", url(target.ref), "--strict")
    assert code == 1 and out["ok"] is False
    code, out = cli("run", *sources(one), "--target", url(target.ref))
    assert code == 0 and out["ok"] is True
    assert out["tables"]["tc_rooms"]["conflicts"] == 1


def test_mssql_is_refused_before_connecting() -> None:
    code, out = cli("run", "--source", "mssql+pyodbc://u:pw@nowhere/db",
                    "--target", "postgresql://u@127.0.0.1:1/x")
    assert code == 2
    assert out["error"]["code"] == "UNSUPPORTED_DATABASE"


def test_jobs_list_shows_no_rows_for_a_failed_or_restored_job(
        tc_factory: Callable[..., TcData]) -> None:
    """A failed job's attempt counted 216,829 rows and rolled back; a restored job's rows
    were taken out again: the list shows what the target holds from each (nothing, with
    the status saying why), and jobs show labels the failed attempt's counts as such."""
    from datetime import datetime

    from tcmerge.merge import jobs, pg
    from tcmerge.sqlexec import PsycopgRunner

    target = tc_factory()
    counts = {"tables": {"tc_msgarchive": {"read": [0, 216829], "inserted": 216829,
                                           "duplicates": 0, "renumbered": 0, "conflicts": 0}}}
    inputs = {"target": {"label": "tgt"}, "sources": [{"label": "src", "name": "src"}]}
    with pg.session(target.ref, role="jobs") as conn:
        run = PsycopgRunner(conn)
        jobs.ensure_jobs_table(run)
        for n, status in enumerate(("failed", "restored", "succeeded")):
            jobs.write_job(run, jobs.JobRecord(
                job_id=f"2026010{n + 1}T000000-0000000{n}", status=status,
                started_at=datetime(2026, 1, n + 1), finished_at=datetime(2026, 1, n + 1),
                inputs=inputs, counts=counts,
                error="merge aborted" if status == "failed" else None))
        conn.commit()
    failed, restored, succeeded = (f"2026010{n + 1}T000000-0000000{n}" for n in range(3))

    human = CliRunner().invoke(app, ["jobs", "list", "--target", url(target.ref)],
                               env={"COLUMNS": "80"})
    assert human.exit_code == 0, human.output
    rows = {line.strip("│ ").split()[0]: line for line in human.stdout.splitlines()
            if line.strip("│ ").startswith("2026")}
    assert "216,829" not in rows[failed] and "—" in rows[failed], human.stdout
    assert "failed, rolled back" in rows[failed], human.stdout
    assert "216,829" not in rows[restored] and "restored" in rows[restored], human.stdout
    assert "216,829" in rows[succeeded], human.stdout
    code, listed = cli("jobs", "list", "--target", url(target.ref))
    assert code == 0
    assert {j["job_id"]: j["rows_in_target"] for j in listed["jobs"]} == {
        failed: 0, restored: 0, succeeded: 216829}

    human = CliRunner().invoke(app, ["jobs", "show", failed, "--target", url(target.ref)],
                               env={"COLUMNS": "100"})
    assert human.exit_code == 0, human.output
    assert "rows in target: 0 (failed, rolled back" in human.stdout, human.stdout
    assert "Counted by the failed attempt (rolled back)" in human.stdout, human.stdout
    assert "inserted" not in human.stdout and "216,829" in human.stdout, human.stdout
    code, shown = cli("jobs", "show", failed, "--target", url(target.ref))
    assert code == 0 and shown["rows_in_target"] == 0 and shown["status"] == "failed"


def test_merge_in_progress_says_a_merge_or_restore_is_changing_the_target(
        tc_factory: Callable[..., TcData]) -> None:
    """The merge lock is held by a restore here: validate and restore say what is going
    on (a merge or a restore changes the target), not that a run is merging."""
    import psycopg

    from tcmerge.db import MERGE_LOCK_KEY
    from tcmerge.merge.pg import libpq_params

    target, one = tc_factory(), tc_factory()
    with psycopg.connect(**libpq_params(target.ref), application_name="tcmerge-restore",
                         autocommit=True) as held:
        held.execute("SELECT pg_advisory_lock(%s)", (MERGE_LOCK_KEY,))
        code, checked = cli("validate", *sources(one), "--target", url(target.ref))
        code2, restored = cli("restore", "20260101T000000-00000000", "--target",
                              url(target.ref), "--yes")
    assert code == 1, checked
    [busy] = [f for f in checked["findings"] if f["code"] == "MERGE_IN_PROGRESS"]
    assert busy["message"] == "another tcmerge merge or restore is changing this target"
    assert code2 == 1 and restored["error"]["code"] == "MERGE_IN_PROGRESS", restored
    assert restored["error"]["message"].startswith(
        "another tcmerge merge or restore is changing this target"), restored


def test_verbose_logs_progress_to_stderr_without_passwords(
        tc_factory: Callable[..., TcData]) -> None:
    """-v: what connects where (labels), the phases of validate and run, on stderr; the
    URLs' password never appears; without -v none of it."""
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    password = str(target.ref.url.password)
    args = [*sources(one), "--target", url(target.ref), "--json"]
    quiet = CliRunner().invoke(app, ["validate", *args])
    assert quiet.exit_code == 0 and "INFO" not in quiet.stderr, quiet.stderr

    checked = CliRunner().invoke(app, ["-v", "validate", *args])
    assert checked.exit_code == 0, checked.output
    json.loads(checked.stdout)  # the log is on stderr only
    log = checked.stderr
    for expected in ("validating: target ", "preflight", "connecting to ", "data analysis",
                     "validation passed"):
        assert expected in log, log
    assert one.ref.url.database in log and target.ref.url.database in log
    assert password not in checked.output

    merged = CliRunner().invoke(app, ["--verbose", "run", "--yes", *args])
    assert merged.exit_code == 0, merged.output
    assert "merging into " in merged.stderr and "merge: analyse" in merged.stderr
    assert "merge succeeded, job " in merged.stderr, merged.stderr
    assert password not in merged.output


@pytest.mark.parametrize("twice", [False, True], ids=["target-alone", "target-twice"])
def test_run_with_only_the_target_as_input_is_refused_before_anything_is_written(
        tc_factory: Callable[..., TcData], twice: bool) -> None:
    """--source T --target T has nothing to merge (NOTHING_TO_MERGE); --source T --source T
    names a database twice (DUPLICATE_SOURCE): exit 1, no job, no snapshot, no change."""
    target = tc_factory()
    target.room(ROOM, next_=2)
    target.messages(ROOM, [(1, 0, "target's own")])
    before = target.digest()
    tables = "SELECT relname FROM pg_class WHERE relname LIKE 'tcm%' ORDER BY relname"
    objects = target.query(tables)
    repeated = sources(target, target) if twice else sources(target)
    code, out = cli("run", *repeated, "--target", url(target.ref), "--yes")
    assert code == 1, out
    assert out["ok"] is False and out["job_id"] is None
    codes = {f["code"] for f in out["findings"] if f["severity"] == "error"}
    assert codes == ({"DUPLICATE_SOURCE", "NOTHING_TO_MERGE"} if twice
                     else {"NOTHING_TO_MERGE"})
    assert target.digest() == before
    assert target.query(tables) == objects  # no job table, no snapshot
    if ("tcmerge_jobs",) in objects:
        assert target.query("SELECT count(*) FROM tcmerge_jobs") == [(0,)]


def test_a_target_without_a_job_table_gets_one_with_its_first_job(
        tc_factory: Callable[..., TcData]) -> None:
    """A TC database that IM and Presence made has no tcmerge_jobs: the first run creates
    it in its transaction, a failure records into a new one, and jobs list reads both."""
    target, one = tc_factory(), tc_factory()
    target.execute("DROP TABLE tcmerge_jobs")
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "50% off")])  # a % in data and in LIKE patterns
    code, out = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, out
    code, listed = cli("jobs", "list", "--target", url(target.ref))
    assert code == 0 and [j["job_id"] for j in listed["jobs"]] == [out["job_id"]]
    assert listed["jobs"][0]["inputs"]["dialect"] == "postgresql"
    code, shown = cli("jobs", "show", out["job_id"][:17], "--target", url(target.ref))
    assert code == 0 and shown["job_id"] == out["job_id"]
    # a failed run's record goes into a job table of its own session, created there too
    target.execute("DROP TABLE tcmerge_jobs")
    from tcmerge.merge.jobs import JobRecord, record_failure, utcnow

    assert record_failure(target.ref, JobRecord(job_id="20261207T000000-00000000",
                                                status="failed", started_at=utcnow()))
    code, listed = cli("jobs", "list", "--target", url(target.ref))
    assert [j["status"] for j in listed["jobs"]] == ["failed"]
