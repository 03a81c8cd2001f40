"""Sources are checksummed once: after the merge a cheap proof (row count, every row's
creator older than the staging snapshot, the table's shape) shows them unchanged, and
when it cannot, the full checksums decide."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psycopg import sql

from tcmerge.merge import run_merge
from tcmerge.merge.transport import create_staging, in_rooms, keys_name
from tcmerge.request import MergeRequest
from tcmerge.schema.tc import tc_msgarchive

from .data import TcData, source_reader

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
NAMES = ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog"]

#: changes made to a source between its staging and the end of the merge
CHANGES = {
    "nothing": [],
    # rewrites a row with the same values: the cheap proof fails, the checksums are equal
    "same values": ["UPDATE tc_msgarchive SET body_string = body_string WHERE msg_id = 1"],
    "one value": ["UPDATE tc_msgarchive SET body_string = 'edited' WHERE msg_id = 1"],
    # the same row count
    "delete and insert": [
        "DELETE FROM tc_msgarchive WHERE msg_id = 2",
        "INSERT INTO tc_msgarchive SELECT 9, to_jid, from_jid, nick_jid, sent_date, msg_type, "
        "body_len, message_len, body_string, message_string, body_text, message_text, subject "
        "FROM tc_msgarchive WHERE msg_id = 1"],
    # no row is rewritten, yet every row's text changes
    "column added": ["ALTER TABLE tc_timelog ADD COLUMN note text DEFAULT 'x'"],
}


def _fill(db: TcData) -> None:
    db.room(ROOM, next_=4)
    db.messages(ROOM, [(1, 0, "first"), (2, 1, "second"), (3, 2, "third")])
    db.member(ROOM, "bob@example.com")
    db.timelog(ROOM, "bob@example.com", 0, 5)


@pytest.mark.parametrize("transport", ["copy", "dblink"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_source_changed_during_the_merge_fails_verification(
        tc_factory: Callable[..., TcData], transport: str, change: str) -> None:
    target, one = tc_factory(), tc_factory()
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    _fill(one)
    before = target.digest()

    changed: list[str] = []

    def progress(what: str, _where: str, _rows: int) -> None:
        # after staging and analysis, before the apply and the verification (a change
        # while run's question waits is INPUTS_CHANGED: test_prompt.py)
        if what == "apply" and not changed:
            changed.append(what)
            one.execute(*CHANGES[change])

    request = MergeRequest(sources=(one.ref,), target=target.ref, transport=transport)
    result = run_merge(request, progress=progress)
    assert changed
    errors = [f.code for f in result.verification if f.severity == "error"]
    if change in ("nothing", "same values"):
        assert result.status == "succeeded" and errors == [], errors
        assert target.count("tc_msgarchive") == 3
    else:
        assert result.status == "verification-failed"
        assert errors == ["VERIFY_SOURCE_CHANGED"]
        assert target.digest() == before  # rolled back


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_the_cheap_proof_holds_for_an_untouched_source_only(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    target, one = tc_factory(), tc_factory()
    _fill(one)
    with source_reader(target, one, transport) as reader:
        reader.open()
        sums = reader.checksums(NAMES)
        xmin, shapes = reader.mark(NAMES)
        reader.finish()
        assert xmin.isdigit() and all(shapes[n].split(":")[0].isdigit() for n in NAMES)
        assert reader.unchanged_since(sums, xmin, shapes) is True
        one.execute(*CHANGES["same values"])
        assert reader.unchanged_since(sums, xmin, shapes) is False
        assert reader.checksums(NAMES) == sums  # the full comparison: equal


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_staging_checksums_come_later_from_a_second_session_in_the_same_snapshot(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    target, one = tc_factory(), tc_factory()
    _fill(one)
    with source_reader(target, one, transport) as reader:
        reader.open()
        reader.prepare_checksums(NAMES)
        assert reader.has_side(), "a second session shares the staging snapshot"
        # written after the snapshot: in neither the staged rows nor their checksums
        one.execute(*CHANGES["one value"])
        inside = reader.checksums(NAMES)  # the staging session's own view
        reader.finish()
        assert reader.sums is None, "nothing computed yet: the side session does it later"
        reader.send_checksums()
        sums = reader.staged_checksums()
        assert sums == inside
        assert reader.checksums(NAMES)["tc_msgarchive"] != sums["tc_msgarchive"]
        assert reader.checksums(NAMES)["tc_rooms"] == sums["tc_rooms"]


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_checksums_started_before_the_staging_are_kept_while_keys_are_read(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    """A source whose rooms are all settled starts its checksums before its staging
    (pg_merge._settle): the keys it then stages go through the staging session, and
    loading them does not take the checksums' result (before, the keys' wait joined the
    checksum work and the checksums were lost: a TypeError)."""
    target, one = tc_factory(), tc_factory()
    _fill(one)
    with source_reader(target, one, transport) as reader:
        reader.open()
        reader.prepare_checksums(NAMES)
        inside = reader.checksums(NAMES)
        reader.send_checksums()
        create_staging(reader.target, [tc_msgarchive])
        reader.stage_keys(tc_msgarchive, in_rooms("tc_msgarchive", [ROOM]))
        reader.load_keys()
        reader.finish()
        reader.send_checksums()  # again after the staging, as _stage does: nothing new
        assert reader.staged_checksums() == inside
        keys = reader.target.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(keys_name("tc_msgarchive")))).fetchone()
        assert keys == (3,), "the room's three keys, read beside the checksums"
