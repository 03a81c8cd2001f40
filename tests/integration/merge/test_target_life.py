"""The life of a target after merges: signals, verify after hand edits, restore."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app

from . import proc
from .data import TcData
from .test_cli import cli, sources, url
from .test_reliability import fill, run_args

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_mid_merge_records_a_failed_job_and_leaves_the_target_unchanged(
        tc_factory: Callable[..., TcData], tmp_path: Path, signum: int) -> None:
    """A service manager stops tcmerge with SIGTERM, or the SSH session drops (SIGHUP): as
    Ctrl-C, the merge rolls back, the failed job is recorded (rule 9) and the command exits
    3 with INTERRUPTED."""
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    before = target.digest()
    pgpass = proc.write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    with proc.admin(target.ref) as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE tc_timelog IN SHARE MODE")
        child = proc.start(run_args(target, one), pgpass)
        proc.wait_until(blocker, proc.WAITING_ON, ("tc_timelog", "tcmerge-merge"), proc=child)
        child.send_signal(signum)
        code, out = proc.finish(child)
        blocker.rollback()
    assert code == 3, out
    assert out["ok"] is False and out["error"]["code"] == "INTERRUPTED"
    assert target.digest() == before
    assert target.query("SELECT status FROM tcmerge_jobs") == [("failed",)]
    assert target.query("SELECT count(*) FROM pg_class WHERE relname LIKE 'tcm\\_%' "
                        "OR relname LIKE 'tcmerge\\_snap%'") == [(0,)]
    code, out = proc.finish(proc.start(run_args(target, one), pgpass))
    assert code == 0, out
    assert target.query("SELECT status FROM tcmerge_jobs ORDER BY started_at") == [
        ("failed",), ("succeeded",)]


def test_verify_fails_when_a_ban_was_swapped_for_another(
        tc_factory: Callable[..., TcData]) -> None:
    """One ban lifted and another added by hand: the number of bans is the same, but a
    ban the merge kept is gone; verify must say so (exit 1), not merely warn."""
    target, one = tc_factory(), tc_factory()
    target.room(ROOM, next_=1)
    one.member(ROOM, "eve@example.com", "outcast")
    one.member(ROOM, "bob@example.com", "member")
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, done
    target.execute(
        f"UPDATE tc_users SET affiliation = 'member' WHERE room_jid = '{ROOM}' "
        "AND real_jid = 'eve@example.com'",
        f"UPDATE tc_users SET affiliation = 'outcast' WHERE room_jid = '{ROOM}' "
        "AND real_jid = 'bob@example.com'")
    code, checked = cli("verify", done["job_id"], "--target", url(target.ref))
    assert code == 1, checked
    assert "VERIFY_BAN_LOST" in [f["code"] for f in checked["findings"]
                                 if f["severity"] == "error"]


def test_verify_checks_the_target_named_among_the_sources_as_the_target(
        tc_factory: Callable[..., TcData]) -> None:
    """Cisco's "merge DB1 into DB2" names DB2 as a source too. The merge writes into DB2, so
    verify must not hold it to the checksums it had as a source before the merge (it said
    VERIFY_SOURCE_CHANGED and failed); the job marks it, and verify checks it as the
    target."""
    db2, db1 = tc_factory(), tc_factory()
    fill(db2, "two")
    fill(db1, "one")
    code, done = cli("run", *sources(db1, db2), "--target", url(db2.ref), "--yes")
    assert code == 0, done
    assert done["tables"]["tc_msgarchive"]["inserted"] == 30
    code, shown = cli("jobs", "show", done["job_id"], "--target", url(db2.ref))
    assert code == 0
    assert [s.get("is_target", False) for s in shown["inputs"]["sources"]] == [False, True]
    human = CliRunner().invoke(app, ["jobs", "show", done["job_id"], "--target", url(db2.ref)],
                               env={"COLUMNS": "200"})
    assert "source 2: " in human.stdout and "(the target itself" in human.stdout
    assert "source 1: " in human.stdout and human.stdout.count("(the target itself") == 1
    code, checked = cli("verify", done["job_id"], "--target", url(db2.ref),
                        *sources(db1, db2))
    assert code == 0, checked
    by_code = {f["code"]: f["database"] for f in checked["findings"] if "database" in f}
    assert "VERIFY_SOURCE_CHANGED" not in by_code
    assert by_code["VERIFY_SOURCE_IS_TARGET"] == shown["inputs"]["sources"][1]["label"]
    assert by_code["VERIFY_SOURCE_UNCHANGED"] == shown["inputs"]["sources"][0]["label"]
    # a job recorded before the mark: known by its source URL, the target's
    db2.execute("UPDATE tcmerge_jobs SET inputs = replace(inputs, ', \"is_target\": true', '')")
    code, shown = cli("jobs", "show", done["job_id"], "--target", url(db2.ref))
    assert [s.get("is_target", False) for s in shown["inputs"]["sources"]] == [False, False]
    code, checked = cli("verify", done["job_id"], "--target", url(db2.ref),
                        *sources(db1, db2))
    assert code == 0, checked
    assert "VERIFY_SOURCE_IS_TARGET" in [f["code"] for f in checked["findings"]]
    # DB1 changed after the merge: still an error
    db1.messages("late@conference-1-c1.example.com", [(1, 0, "late")])
    code, checked = cli("verify", done["job_id"], "--target", url(db2.ref),
                        *sources(db1, db2))
    assert code == 1
    assert [f["code"] for f in checked["findings"] if f["severity"] == "error"] == [
        "VERIFY_SOURCE_CHANGED"]


def _post(db: TcData, room: str, msg_id: int, body: str) -> None:
    """A message the TC service archives after the merge (as ha/rooms.py posts)."""
    db.messages(room, [(msg_id, 90, body)])
    db.execute(f"UPDATE tc_rooms SET next_msg_id = {msg_id + 1} WHERE room_jid = '{room}'")


def test_restore_newest_first_then_back_to_the_start(tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    fill(two, "two")
    start = target.digest()
    code, first = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, first
    after_first = target.digest()
    code, second = cli("run", *sources(two), "--target", url(target.ref), "--yes")
    assert code == 0, second
    code, out = cli("restore", first["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1 and out["error"]["code"] == "RESTORE_BLOCKED", out
    code, out = cli("restore", second["job_id"], "--target", url(target.ref), "--yes")
    assert code == 0, out
    assert target.digest() == after_first
    code, out = cli("restore", second["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1 and out["error"]["code"] == "RESTORE_NOT_POSSIBLE", out
    code, out = cli("restore", first["job_id"], "--target", url(target.ref), "--yes")
    assert code == 0, out
    assert target.digest() == start


def test_restore_refuses_to_discard_changes_made_after_the_merge(
        tc_factory: Callable[..., TcData]) -> None:
    """Messages posted (or rows edited) after the merge would be lost by a restore: it is
    refused (exit 1, nothing changed) unless --force says to discard them."""
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    start = target.digest()
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, done
    next_id = target.counters(ROOM)[1]
    _post(target, ROOM, next_id, "posted after the merge")
    changed = target.digest()
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1, out
    assert out["error"]["code"] == "RESTORE_TARGET_CHANGED"
    assert "tc_msgarchive" in out["error"]["message"]
    assert target.digest() == changed
    code, shown = cli("jobs", "show", done["job_id"], "--target", url(target.ref))
    assert shown["status"] == "succeeded"
    # a row of the target from before the merge, edited by hand: also a change
    target.execute(f"DELETE FROM tc_msgarchive WHERE msg_id = {next_id}",
                   f"DELETE FROM tc_messages WHERE msg_id = {next_id}",
                   "UPDATE tc_users SET role = 'visitor' WHERE real_jid = 't@example.com'")
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1 and out["error"]["code"] == "RESTORE_TARGET_CHANGED", out
    assert "tc_users" in out["error"]["message"]
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes",
                    "--force")
    assert code == 0, out
    assert out["changes_discarded"]["tc_users"]
    assert target.digest() == start


def test_a_later_merge_without_snapshot_blocks_restore_and_says_why(
        tc_factory: Callable[..., TcData]) -> None:
    # "restore the later jobs first" cannot be followed when a later job has no snapshot
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    fill(two, "two")
    code, first = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, first
    code, second = cli("run", *sources(two), "--target", url(target.ref), "--yes",
                       "--no-snapshot")
    assert code == 0, second
    before = target.digest()
    code, out = cli("restore", first["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1 and out["error"]["code"] == "RESTORE_BLOCKED", out
    message = out["error"]["message"]
    assert second["job_id"] in message and "--no-snapshot" in message
    assert "restore the later jobs first" not in message
    assert target.digest() == before


OTHER = "dev@conference-2-c1.example.com"


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_restore_finds_the_merged_rows_by_the_merge_transaction(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    """A merge copies only tc_rooms and tc_users for restore; the rows it inserts into
    the message tables and the time log (a room of its own, copied straight in, and rows
    of a shared room, renumbered) are found again by its transaction id: restore removes
    exactly them and proves the tables as they were before."""
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    one.room(OTHER, next_=6)
    one.messages(OTHER, [(i, i, f"other {i}") for i in range(1, 6)])
    one.timelog(OTHER, "one@example.com", 0, 5)
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    start = target.digest()
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes",
                     "--transport", transport)
    assert code == 0, done
    assert sorted(done["snapshot"]) == ["tc_rooms", "tc_users"]
    [(counts,)] = target.query("SELECT counts FROM tcmerge_jobs")
    marked = json.loads(counts)["inserted_rows"]
    assert sorted(marked["tables"]) == ["tc_messages", "tc_msgarchive", "tc_timelog"]
    assert target.query(
        "SELECT count(*) FROM tc_msgarchive WHERE xmin = CAST(CAST(:x AS text) AS xid)",
        x=marked["xid"] % 2**32) == [(35,)]  # 30 of the shared room, renumbered, and 5 of OTHER
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes")
    assert code == 0, out
    assert out["checksums_match"] is True
    assert target.digest() == start


def test_restore_of_a_merge_whose_rows_were_edited_since(
        tc_factory: Callable[..., TcData]) -> None:
    """A merged row edited after the merge is no longer the merge's: refused
    (RESTORE_TARGET_CHANGED), and --force removes it too. A row the target held before
    the merge, edited since, cannot be put back without a copy: a forced restore is
    refused (RESTORE_MISMATCH) with the reason, and nothing changes."""
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    one.room(OTHER, next_=6)
    one.messages(OTHER, [(i, i, f"other {i}") for i in range(1, 6)])
    start = target.digest()
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, done
    target.execute(f"UPDATE tc_msgarchive SET body_string = 'edited' WHERE to_jid = '{OTHER}' "
                   "AND msg_id = 2")
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1 and out["error"]["code"] == "RESTORE_TARGET_CHANGED", out
    assert "tc_msgarchive" in out["error"]["message"] and "edited" in out["error"]["message"]
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes",
                    "--force")
    assert code == 0, out
    assert target.digest() == start

    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, done
    target.execute(f"UPDATE tc_msgarchive SET body_string = 'edited' WHERE to_jid = '{ROOM}' "
                   "AND msg_id = 3")  # the target's own row, from before the merge
    edited = target.digest()
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes",
                    "--force")
    assert code == 1 and out["error"]["code"] == "RESTORE_MISMATCH", out
    assert "kept no copy" in out["error"]["message"]
    assert target.digest() == edited
    code, shown = cli("jobs", "show", done["job_id"], "--target", url(target.ref))
    assert shown["status"] == "succeeded"


def test_restore_refuses_when_the_transaction_ids_no_longer_tell_the_rows_apart(
        tc_factory: Callable[..., TcData]) -> None:
    # a job record whose transaction id the server has not reached (a target restored
    # from a dump onto another server, or 2^31 transactions later): refused, unchanged
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, done
    target.execute("UPDATE tcmerge_jobs SET counts = jsonb_set(counts::jsonb, "
                   "'{inserted_rows,xid}', to_jsonb(txid_current() + 1000))::text")
    merged = target.digest()
    code, out = cli("restore", done["job_id"], "--target", url(target.ref), "--yes")
    assert code == 1 and out["error"]["code"] == "RESTORE_NOT_POSSIBLE", out
    assert "transaction id" in out["error"]["message"]
    assert target.digest() == merged
