"""The confirmation prompt on a terminal: with --json it goes to stderr and stdout keeps
its one JSON object; "no" writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .data import TcData
from .proc import admin, bare_url, child_env, on_a_terminal, write_pgpass

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"


def _answer_on_a_terminal(args: list[str], pgpass: Path, answer: str, *,
                          asked: bool = True, at_prompt: Callable[[], None] | None = None,
                          stdout_on_terminal: bool = False) -> tuple[int, str, str]:
    """Run tcmerge on a pseudo-terminal (``proc.on_a_terminal``), answer the first y/N
    question; ``asked``: whether a question must have come; ``at_prompt`` runs while the
    question waits."""
    answered: list[bool] = []

    def reply(shown: bytes) -> bytes | None:
        if answered or b"[y/N]" not in shown:
            return None
        if at_prompt is not None:
            at_prompt()
        answered.append(True)
        return answer.encode() + b"\n"

    code, out, shown = on_a_terminal(args, child_env(pgpass), reply,
                                     stdout_on_terminal=stdout_on_terminal)
    assert bool(answered) == asked, shown
    return code, out, shown


@pytest.mark.parametrize("answer", ["n", "y"])
def test_run_json_asks_on_the_terminal_and_keeps_stdout_one_object(
        tc_factory: Callable[..., TcData], tmp_path: Path, answer: str) -> None:
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    before = target.digest()
    pgpass = write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    code, out, shown = _answer_on_a_terminal(
        ["run", "--json", "--source", bare_url(one.ref), "--target", bare_url(target.ref)],
        pgpass, answer)
    payload = json.loads(out)  # exactly one object: nothing of the prompt on stdout
    assert "Merge into" in shown and "tc_msgarchive" in shown  # the counts were shown
    if answer == "n":
        assert code == 1 and payload["ok"] is False and payload["status"] == "cancelled"
        assert target.digest() == before
    else:
        assert code == 0 and payload["ok"] is True and payload["status"] == "succeeded"
        assert payload["tables"]["tc_msgarchive"]["inserted"] == 1
        merged = target.digest()
        code, out, shown = _answer_on_a_terminal(
            ["restore", payload["job_id"], "--json", "--target", bare_url(target.ref)],
            pgpass, "n")
        assert "Restore" in shown and code == 1
        assert json.loads(out) == {"ok": False, "error": {
            "code": "CANCELLED", "message": "restore cancelled; nothing was changed"}}
        assert target.digest() == merged
        # a job that cannot be restored is refused before any question (it was asked first)
        code, out, shown = _answer_on_a_terminal(
            ["restore", "20000101T000000-00000000", "--json", "--target",
             bare_url(target.ref)], pgpass, "y", asked=False)
        assert code != 0 and json.loads(out)["ok"] is False and "[y/N]" not in shown


#: tcmerge's sessions as another client sees them while the question waits
TCMERGE_SESSIONS = (
    "SELECT a.pid, a.application_name, a.state, a.xact_start IS NOT NULL, "
    "coalesce(array_agg(DISTINCT l.mode) FILTER (WHERE l.locktype = 'relation'), '{}') "
    "FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid "
    "WHERE a.application_name LIKE 'tcmerge-%%' AND a.application_name <> 'tcmerge-test-blocker' "
    "GROUP BY a.pid, a.application_name, a.state, a.xact_start")


def test_the_question_waits_with_no_transaction_and_no_table_lock(
        tc_factory: Callable[..., TcData], tmp_path: Path) -> None:
    """While run waits for y/N: no tcmerge session is in a transaction or holds more than
    AccessShare on a table, and another session reads and writes the tables at once; the
    merge then applies exactly what it showed."""
    target, one = tc_factory(), tc_factory()
    target.room("kept@conference-1-c1.example.com", next_=2)
    target.messages("kept@conference-1-c1.example.com", [(1, 0, "already here")])
    one.room(ROOM, next_=3)
    one.messages(ROOM, [(1, 0, "hello"), (2, 1, "again")])
    pgpass = write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    seen: dict[str, object] = {}

    def look() -> None:
        for db in (target, one):
            with admin(db.ref) as conn:
                conn.execute("SET lock_timeout = '5s'")  # a wait would fail, not hang
                seen[db.ref.label] = conn.execute(TCMERGE_SESSIONS).fetchall()
                # readers and writers pass (a writer waits on SHARE and stronger)
                conn.execute("SELECT count(*) FROM tc_msgarchive").fetchone()
                conn.execute("BEGIN")
                conn.execute("UPDATE tc_rooms SET subject = subject")
                conn.execute("ROLLBACK")

    code, out, shown = _answer_on_a_terminal(
        ["run", "--json", "--source", bare_url(one.ref), "--target", bare_url(target.ref)],
        pgpass, "y", at_prompt=look)
    payload = json.loads(out)
    assert code == 0 and payload["status"] == "succeeded", out
    for label, rows in seen.items():
        assert isinstance(rows, list)
        for _pid, name, _state, in_transaction, modes in rows:
            assert not in_transaction, (label, name)
            assert set(modes) <= {"AccessShareLock"}, (label, name, modes)
    # the one-merge lock is held meanwhile, by a session with no transaction
    target_sessions = seen[target.ref.label]
    assert isinstance(target_sessions, list)
    assert "tcmerge-lock" in {r[1] for r in target_sessions}
    assert payload["tables"]["tc_msgarchive"]["inserted"] == 2
    assert target.query("SELECT count(*) FROM tc_msgarchive") == [(3,)]
    # what the question showed is not printed again (a table header once, one question)
    assert shown.count("Merge into") == 1


@pytest.mark.parametrize("changed", ["source", "target"])
def test_inputs_changed_at_the_question_stop_the_merge(
        tc_factory: Callable[..., TcData], tmp_path: Path, changed: str) -> None:
    """A row written to an input while the question waits: run says so and stops with
    exit 1 after "yes", and writes nothing."""
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    before = target.digest()
    pgpass = write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    db = one if changed == "source" else target

    def write() -> None:
        db.room("late@conference-1-c1.example.com", next_=1)

    code, out, _shown = _answer_on_a_terminal(
        ["run", "--json", "--source", bare_url(one.ref), "--target", bare_url(target.ref)],
        pgpass, "y", at_prompt=write)
    payload = json.loads(out)
    assert code == 1 and payload["ok"] is False, out
    changed_findings = [f for f in payload["findings"] if f["code"] == "INPUTS_CHANGED"]
    assert changed_findings and changed_findings[0]["database"] == bare_url(db.ref)
    assert payload["job_id"] is None
    if changed == "source":
        assert target.digest() == before
    else:
        db.execute("DELETE FROM tc_rooms WHERE room_jid = 'late@conference-1-c1.example.com'")
        assert target.digest() == before
    if target.query("SELECT to_regclass('tcmerge_jobs') IS NOT NULL")[0][0]:
        assert target.query("SELECT count(*) FROM tcmerge_jobs") == [(0,)]


@pytest.mark.parametrize("redirected", [False, True], ids=["terminal", "stdout-to-file"])
def test_after_yes_the_summary_is_not_printed_twice(
        tc_factory: Callable[..., TcData], tmp_path: Path, redirected: bool) -> None:
    """Human output: the question and its summary are on the terminal, also when stdout
    goes to a file; the summary shown at the question is not printed again on the same
    terminal, while a redirected stdout gets the whole report."""
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    pgpass = write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    code, out, shown = _answer_on_a_terminal(
        ["run", "--source", bare_url(one.ref), "--target", bare_url(target.ref)],
        pgpass, "y", stdout_on_terminal=not redirected)
    assert code == 0, (out, shown)
    assert "succeeded:" in (out if redirected else shown)
    before_question = shown.split("[y/N]")[0]
    assert "Merge summary" in before_question
    assert shown.count("Merge summary") == 1, shown
    if redirected:
        assert out.count("Merge summary") == 1 and "[y/N]" not in out


@pytest.mark.parametrize("write", [False, True], ids=["unchanged", "written-meanwhile"])
def test_restore_asks_with_no_transaction_open(
        tc_factory: Callable[..., TcData], tmp_path: Path, write: bool) -> None:
    """restore's question waits with no transaction and no table lock held (the checks
    ran and ended); after yes the checks run again: a target written meanwhile is
    refused (exit 1, nothing changed), an unchanged one restored."""
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    before = target.digest()
    pgpass = write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    code, out, _ = _answer_on_a_terminal(
        ["run", "--json", "--yes", "--source", bare_url(one.ref), "--target",
         bare_url(target.ref)], pgpass, "y", asked=False)
    job = json.loads(out)["job_id"]
    seen: list[object] = []

    def look() -> None:
        with admin(target.ref) as conn:
            conn.execute("SET lock_timeout = '5s'")
            seen.extend(conn.execute(TCMERGE_SESSIONS).fetchall())
            if write:  # a writer passes: no lock is held on the tables
                conn.execute("INSERT INTO tc_rooms (room_jid, creator_jid, subject, type, "
                             "config, spacket, start_msg_id, next_msg_id) VALUES "
                             "('late@c.example.com', 'a@example.com', 's', 'persistent', "
                             "'<x/>', '<s/>', 1, 1)")
            else:
                conn.execute("BEGIN")
                conn.execute("UPDATE tc_rooms SET subject = subject")
                conn.execute("ROLLBACK")

    code, out, shown = _answer_on_a_terminal(
        ["restore", job, "--json", "--target", bare_url(target.ref)], pgpass, "y",
        at_prompt=look)
    payload = json.loads(out)
    for _pid, name, _state, in_transaction, modes in seen:  # type: ignore[misc]
        assert not in_transaction and set(modes) <= {"AccessShareLock"}, (name, modes)
    if write:
        assert code == 1 and payload["error"]["code"] == "RESTORE_TARGET_CHANGED", out
        assert target.query("SELECT status FROM tcmerge_jobs") == [("succeeded",)]
    else:
        assert code == 0 and payload["status"] == "restored", (out, shown)
        assert target.digest() == before
