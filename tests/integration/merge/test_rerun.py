"""A merge run again: rooms a source holds exactly as the target does are compared by
digest and not moved (ROOMS_ALREADY_MERGED); every other room takes the full rules.

The counts and rows must be those of the rules in every case: a room differing in one
row, or only in its recent messages, is not settled; rows equal but for msg_id are
duplicates as the rules say."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tcmerge.merge.engine import analyse_merge
from tcmerge.request import MergeRequest

from .data import TcData, at, source_reader
from .test_cli import cli, sources, url
from .test_reliability import ROOM, fill

pytestmark = pytest.mark.postgresql

OTHER = "dev@conference-2-c1.example.com"
THIRD = "qa@conference-3-c1.example.com"


def settled(out: dict[str, Any]) -> dict[str, int]:
    return {f["database"]: f["count"] for f in out["findings"]
            if f["code"] == "ROOMS_ALREADY_MERGED"}


def room_of_its_own(db: TcData, room: str, tag: str, n: int = 5) -> None:
    db.room(room, next_=n + 1)
    db.messages(room, [(i, i, f"{tag} {i}") for i in range(1, n + 1)])


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_a_merge_run_again_moves_nothing_and_says_why(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    target, one = tc_factory(), tc_factory()
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    fill(target, "t")
    fill(one, "one")  # a shared room: renumbered the first time
    room_of_its_own(one, OTHER, "other")
    room_of_its_own(one, THIRD, "third")
    args = [*sources(one), "--target", url(target.ref), "--yes", "--transport", transport]
    code, first = cli("run", *args)
    assert code == 0, first
    assert settled(first) == {}  # nothing of the target's own is held the same
    merged = target.digest()
    # validation stages every row it reads (no direct path) but the settled rooms': it
    # counts as the run does
    checked = analyse_merge(MergeRequest(sources=(one.ref,), target=target.ref,
                                         transport=transport)).as_dict()
    code, again = cli("run", *args)
    assert code == 0, again
    assert target.digest() == merged
    tables = again["tables"]
    assert all(t["inserted"] == 0 and t["duplicates"] == sum(t["read"][1:])
               for t in tables.values()), tables
    assert tables["tc_msgarchive"]["read"] == [70, 40]
    # OTHER and THIRD are held exactly as merged; the shared room's rows were renumbered
    # to the top of the target's range, where their digests are found equal too
    assert settled(again) == {one.ref.label: 3}
    assert checked["tables"] == tables and settled(checked) == settled(again)


@pytest.mark.parametrize("change", ["source gained a message", "target row edited",
                                    "source row edited"])
def test_a_renumbered_room_settles_only_while_the_target_holds_every_row_of_it(
        tc_factory: Callable[..., TcData], change: str) -> None:
    # the first merge renumbers one's rows of ROOM above the target's (31..60); run again,
    # the room settles only when those rows are still equal to one's: otherwise the rules
    # decide row by row, and the row the target lacks is renumbered in
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    args = [*sources(one), "--target", url(target.ref), "--yes"]
    code, first = cli("run", *args)
    assert code == 0, first
    assert first["tables"]["tc_msgarchive"]["renumbered"] == 30
    if change == "source gained a message":
        one.messages(ROOM, [(31, 31, "one 31")], recent=False)
        missing = "one 31"
    elif change == "target row edited":
        target.execute(f"UPDATE tc_msgarchive SET body_string = 'edited' WHERE to_jid = '{ROOM}' "
                       "AND msg_id = 45")  # one's row 15, renumbered
        missing = "one 15"
    else:
        one.execute(f"UPDATE tc_msgarchive SET body_string = 'edited' WHERE to_jid = '{ROOM}' "
                    "AND msg_id = 30")
        missing = "edited"
    code, again = cli("run", *args)
    assert code == 0, again
    assert settled(again) == {}
    arch = again["tables"]["tc_msgarchive"]
    assert arch["inserted"] == 1 and arch["duplicates"] == sum(arch["read"][1:]) - 1
    assert target.archive(ROOM)[-1] == (61, missing)


def test_a_room_differing_in_one_row_or_in_its_recent_messages_is_not_settled(
        tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    for db in (target, one):
        room_of_its_own(db, OTHER, "same")
        room_of_its_own(db, THIRD, "same")
        room_of_its_own(db, ROOM, "same")
    one.execute(f"UPDATE tc_msgarchive SET body_string = 'changed' WHERE to_jid = '{OTHER}' "
                "AND msg_id = 3")
    one.execute(f"UPDATE tc_messages SET msg = '<m>changed</m>' WHERE room_jid = '{THIRD}' "
                "AND msg_id = 2")
    # the same rows as the target's, also held by a second source with other rows
    room_of_its_own(two, ROOM, "two")
    code, out = cli("run", *sources(one, two), "--target", url(target.ref), "--yes")
    assert code == 0, out
    assert settled(out) == {one.ref.label: 1}  # ROOM, for `one`; not OTHER nor THIRD
    arch = out["tables"]["tc_msgarchive"]
    # OTHER: the changed row renumbered in (the rules); ROOM: two's five rows renumbered
    assert arch["read"] == [15, 15, 5] and arch["inserted"] == 6
    assert arch["duplicates"] == 14 and arch["renumbered"] == 6
    assert target.archive(OTHER)[-1] == (6, "changed")
    msgs = out["tables"]["tc_messages"]
    # THIRD's changed recent message follows its archive row, a duplicate: dropped
    assert msgs["inserted"] == 6 and msgs["duplicates"] == 14
    assert [r for r in target.archive(ROOM) if r[0] > 5] == [
        (i + 5, f"two {i}") for i in range(1, 6)]


def test_equal_rows_inside_one_input_are_duplicates_of_the_targets_as_the_rules_say(
        tc_factory: Callable[..., TcData]) -> None:
    # two rows equal but for msg_id, in the source and in the target: both duplicates
    target, one = tc_factory(), tc_factory()
    for db in (target, one):
        db.room(OTHER, next_=3)
        db.messages(OTHER, [(1, 1, "hello"), (2, 1, "hello")])
    code, out = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, out
    assert settled(out) == {one.ref.label: 1}
    arch = out["tables"]["tc_msgarchive"]
    assert arch["inserted"] == 0 and arch["duplicates"] == 2
    assert [f["code"] for f in out["findings"] if f["code"] == "DUPLICATE_ROWS"]


@pytest.mark.parametrize("method", ["text", "record"])
def test_room_digests_tell_equal_rooms_from_rooms_differing_in_a_row_or_an_id(
        tc_factory: Callable[..., TcData], method: str) -> None:
    # both hash methods: equal rows (ids aside) give equal digests in two databases;
    # one changed value, one row fewer, or the same rows moved to other ids do not hide
    from tcmerge.merge.transport import LISTED, listed_windows, room_digest_select
    from tcmerge.schema import tc

    one, two = tc_factory(), tc_factory()
    for db in (one, two):
        room_of_its_own(db, OTHER, "same")
        room_of_its_own(db, THIRD, "same")
        room_of_its_own(db, ROOM, "same")
    two.execute(f"UPDATE tc_msgarchive SET body_len = body_len + 1 WHERE to_jid = '{OTHER}' "
                "AND msg_id = 4",
                f"DELETE FROM tc_msgarchive WHERE to_jid = '{THIRD}' AND msg_id = 5",
                f"UPDATE tc_msgarchive SET msg_id = msg_id + 10 WHERE to_jid = '{ROOM}'")

    def digests(db: TcData) -> dict[str, tuple[Any, ...]]:
        rooms = "{" + ",".join(f'"{r}"' for r in (OTHER, THIRD, ROOM)) + "}"
        query = room_digest_select(tc.tc_msgarchive, 1, listed_windows(rooms), method,
                                   LISTED)
        return {r[2]: r[3:] for r in db.query(query.as_string(None))}

    a, b = digests(one), digests(two)
    assert a[ROOM] == b[ROOM]  # msg_id is left out: equal rows under other ids
    assert a[OTHER] != b[OTHER] and a[OTHER][0] == b[OTHER][0]
    assert a[THIRD] != b[THIRD]


@pytest.mark.parametrize("change", [None, "source visited again", "target row edited"])
def test_a_rooms_visits_settle_only_while_the_target_holds_exactly_them(
        tc_factory: Callable[..., TcData], change: str | None) -> None:
    # OTHER's visits (two equal ones among them) are one's alone: merged the first time,
    # run again they are the target's exactly and settle; ROOM's are both inputs' and
    # take the rules. A visit the target lacks is inserted, by the rules.
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    room_of_its_own(one, OTHER, "other")
    for start in (1, 1, 7):
        one.timelog(OTHER, "bob@example.com", start, start + 2)
    args = [*sources(one), "--target", url(target.ref), "--yes"]
    code, first = cli("run", *args)
    assert code == 0, first
    assert first["tables"]["tc_timelog"]["inserted"] == 4
    if change == "source visited again":
        one.timelog(OTHER, "carol@example.com", 9, None)
    elif change == "target row edited":
        target.execute(f"UPDATE tc_timelog SET real_jid = 'eve@example.com' "
                       f"WHERE room_jid = '{OTHER}' AND \"start\" = '{at(7)}'")
    code, again = cli("run", *args)
    assert code == 0, again
    visits = again["tables"]["tc_timelog"]
    assert visits["read"][1] == (5 if change == "source visited again" else 4)
    said = [f["message"] for f in again["findings"] if f["code"] == "ROOMS_ALREADY_MERGED"]
    if change is None:
        assert visits["inserted"] == 0 and visits["duplicates"] == 4
        assert len(said) == 1 and "the 3 timelog row(s) of 1 room(s)" in said[0], said
    else:
        # not settled: OTHER's rows compared by the rules; the missing one inserted
        assert visits["inserted"] == 1 and visits["duplicates"] == visits["read"][1] - 1
        assert not any("timelog" in m for m in said), said
    rows = target.query("SELECT real_jid, \"start\" FROM tc_timelog WHERE room_jid = :r "
                        "ORDER BY 2, 1", r=OTHER)
    expected = 3 + (change is not None)
    assert len(rows) == expected


@pytest.mark.parametrize("edited", [False, True])
def test_two_sources_merged_into_an_empty_target_settle_every_room_when_run_again(
        tc_factory: Callable[..., TcData], edited: bool) -> None:
    # ROOM is both sources': `one` owned it and kept its ids (1..30), `two`'s rows were
    # renumbered above them (31..60). Run again, each source's rows are found where the
    # first merge left them, kept or renumbered, and nothing is moved: the indexes stay.
    # With one of `one`'s rows edited in the target since, ROOM is not settled for `one`:
    # the rules find that row missing and renumber it in; `two` still settles it
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    fill(one, "one")
    fill(two, "two")
    room_of_its_own(one, OTHER, "other")
    room_of_its_own(two, THIRD, "third")
    for db in (one, two):
        db.execute("ANALYZE")  # the row estimates that choose whether indexes are set aside
    args = [*sources(one, two), "--target", url(target.ref), "--yes"]
    code, first = cli("run", *args)
    assert code == 0, first
    assert first["tables"]["tc_msgarchive"]["renumbered"] == 30
    if edited:
        target.execute(f"UPDATE tc_msgarchive SET body_string = 'edited' WHERE to_jid = '{ROOM}' "
                       "AND msg_id = 15")
    merged = target.digest()
    index = "SELECT 'tc_msgarchive_pkey'::regclass::oid"
    before = target.query(index)
    code, again = cli("run", *args)
    assert code == 0, again
    arch = again["tables"]["tc_msgarchive"]
    assert arch["read"] == [70, 35, 35]
    assert target.query(index) == before  # kept, not dropped and built again
    if edited:
        assert settled(again) == {one.ref.label: 1, two.ref.label: 2}
        assert arch["inserted"] == 1 and arch["duplicates"] == 69
        assert target.archive(ROOM)[-1] == (61, "one 15")
    else:
        assert target.digest() == merged
        assert settled(again) == {one.ref.label: 2, two.ref.label: 2}
        assert arch["inserted"] == 0 and arch["duplicates"] == 70


@contextlib.contextmanager
def _rules_on(db: TcData, tables: list[str]) -> Iterator[tuple[Any, Any]]:
    """A session on ``db`` with hand-made work tables (``name (columns)``, TEMP) and the
    PostgreSQL rules of a merge of three inputs over them."""
    from tcmerge.merge import pg
    from tcmerge.merge.rules_pg import PgRules
    from tcmerge.schema import tc

    with pg.open_session(db.ref, role="test") as conn:
        for table in tables:
            conn.execute(f"CREATE TEMP TABLE {table}")
        yield conn, PgRules(conn, tuple(tc.ALL_TABLES), ["t", "one", "two"])


def test_a_source_holding_no_room_it_does_not_stage_is_not_read_directly(
        tc_factory: Callable[..., TcData]) -> None:
    # the direct read of a source takes the rows of the rooms it does not stage; where
    # there are none (a merge run again: the target holds every room) it is not made
    with _rules_on(tc_factory(), [
            "tcm_s_holders (inp smallint, room_jid text, lo bigint, hi bigint)",
            "tcm_w_room (room_jid text, owner smallint, nholders bigint, lo bigint, "
            "hi bigint)", "tcm_s_timelog_holders (inp smallint, room_jid text)",
            "tcm_w_timelog_room (room_jid text)"]) as (conn, rules):
        # input 1: `a` shared and owned by the target, `b` shared and owned by 1, a row
        # without a room (held by two inputs: among the rooms staged, which must not
        # hide the others); input 2: `a` and a room of its own, `c`; visits: `a` both
        # inputs', `c` input 2's alone
        conn.execute(
            "INSERT INTO tcm_s_holders VALUES (0, 'a', 1, 9), (1, 'a', 1, 5), (1, 'b', 1, 5), "
            "(1, NULL, 1, 1), (0, 'b', 1, 9), (2, 'a', 1, 5), (2, 'c', 1, 5); "
            "INSERT INTO tcm_w_room VALUES ('a', 0, 3, 1, 9), ('b', 1, 2, 1, 5), "
            "(NULL, 1, 2, 1, 1), ('c', 2, 1, 1, 5); "
            "INSERT INTO tcm_s_timelog_holders VALUES (1, 'a'), (2, 'a'), (2, 'c'), (1, NULL); "
            "INSERT INTO tcm_w_timelog_room VALUES ('a'), (NULL)")
        # 1 owns `b`: its rows of the message tables go straight in; of tc_users every
        # shared room is staged
        assert rules.holds_unstaged_rooms("tc_msgarchive", 1)
        assert not rules.holds_unstaged_rooms("tc_users", 1)
        assert not rules.holds_unstaged_rooms("tc_timelog", 1)
        conn.execute("UPDATE tcm_w_room SET owner = 0 WHERE room_jid = 'b'")
        assert not rules.holds_unstaged_rooms("tc_msgarchive", 1)
        for table in ("tc_msgarchive", "tc_users", "tc_timelog"):
            assert rules.holds_unstaged_rooms(table, 2)  # `c`


def test_a_source_moves_messages_until_every_room_it_has_messages_of_is_settled(
        tc_factory: Callable[..., TcData]) -> None:
    # such a source starts its checksums before its staging (pg_merge._settle)
    with _rules_on(tc_factory(), [
            "tcm_s_holders (inp smallint, room_jid text, lo bigint, hi bigint)",
            "tcm_w_settled (inp smallint, room_jid text)"]) as (conn, rules):
        # input 1: messages of `a` and `b`, members of `m` only (no messages: lo NULL);
        # input 2: messages of `a` and of a row without a room
        conn.execute(
            "INSERT INTO tcm_s_holders VALUES (1, 'a', 1, 5), (1, 'b', 1, 5), "
            "(1, 'm', NULL, NULL), (2, 'a', 1, 5), (2, NULL, 1, 1); "
            "INSERT INTO tcm_w_settled VALUES (1, 'a'), (2, 'a')")
        assert rules.moves_messages(1)  # `b`
        assert rules.moves_messages(2)  # the row without a room is always moved
        conn.execute("INSERT INTO tcm_w_settled VALUES (1, 'b')")
        assert not rules.moves_messages(1)  # `m` has no messages to move
        assert not rules.moves_messages(3)  # an input holding nothing


class _CountingLock:
    """A lock that counts how often it is taken."""

    def __init__(self) -> None:
        self.lock, self.taken = threading.Lock(), 0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_source_reads_its_room_digests_in_its_turn(
        tc_factory: Callable[..., TcData]) -> None:
    # the target's digests, one input after another, are a run again's longest path: a
    # source's digests are read in its turn (the lock the merge's readers share), not
    # beside every other source's
    from tcmerge.merge.checksums import TEXT
    from tcmerge.merge.transport import (
        LISTED,
        create_staging,
        listed_windows,
        room_digest_queries,
    )
    from tcmerge.schema import tc

    target, one = tc_factory(), tc_factory()
    room_of_its_own(one, OTHER, "mine")
    turn = _CountingLock()
    with source_reader(target, one, "copy") as reader:
        reader.turn = turn  # type: ignore[assignment]
        reader.open()
        create_staging(reader.target, [tc.tc_msgarchive])
        reader.stage_room_digests(room_digest_queries(
            [tc.tc_msgarchive], 1, listed_windows("{" + OTHER + "}"), TEXT, LISTED))
        reader.load_room_digests()
        assert turn.taken == 1
        rows = reader.target.execute("SELECT inp, tbl, room_jid, n FROM "
                                     "tcm_s_room_digests").fetchall()
        assert rows == [(1, "tc_msgarchive", OTHER, 5)]
