"""The merge rules end to end on real PostgreSQL (copy transport unless stated)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tcmerge.merge import MergeResult, run_merge
from tcmerge.merge.engine import analyse_merge
from tcmerge.providers import DatabaseServer
from tcmerge.request import MergeRequest
from tcmerge.schema import tc

from .data import TcData, at

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
ROOM2 = "dev@conference-2-c1.example.com"


def merge(target: TcData, *sources: TcData, **options: object) -> MergeResult:
    request = MergeRequest(sources=tuple(s.ref for s in sources), target=target.ref,
                           **options)  # type: ignore[arg-type]
    return run_merge(request)


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_split_room_renumbers_drops_duplicates_and_keeps_bans(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    one.room(ROOM, next_=4)
    one.messages(ROOM, [(1, 0, "first"), (2, 10, "second"), (3, 20, "third")])
    one.member(ROOM, "bob@example.com", "member")
    one.member(ROOM, "eve@example.com", "member")
    two.room(ROOM, next_=4, subject="other subject")
    # id 1 collides with a different message; id 2 is an exact duplicate of one's id 2
    # under another id; id 3 is new
    two.messages(ROOM, [(1, 5, "two-a"), (5, 10, "second"), (3, 30, "two-b")])
    two.member(ROOM, "bob@example.com", "admin")       # affiliation conflict: owner wins
    two.member(ROOM, "eve@example.com", "outcast")     # a ban beats a source's member row
    two.room(ROOM2, next_=3)
    two.messages(ROOM2, [(1, 0, "only here"), (2, 1, "and here")])

    # validation first: the same counts and findings as the merge, and nothing written
    # into the target's tables (not even rolled back: their size stays)
    sizes = "SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relname LIKE 'tc\\_%' " \
            "AND relkind = 'r' ORDER BY 1"
    before = target.query(sizes)
    checked = analyse_merge(MergeRequest(sources=(one.ref, two.ref), target=target.ref,
                                         transport=transport))
    assert checked.status == "validated" and target.query(sizes) == before

    result = merge(target, one, two, transport=transport)
    assert result.ok, [f.message for f in result.verification]
    assert result.as_dict()["transport"] == transport
    assert checked.as_dict()["tables"] == result.as_dict()["tables"]
    assert [f.as_dict() for f in checked.findings] == [f.as_dict() for f in result.findings]
    tables = result.as_dict()["tables"]
    assert tables["tc_msgarchive"] == {"read": [0, 3, 5], "inserted": 7, "duplicates": 1,
                                       "renumbered": 2, "conflicts": 0}
    # owner's ids kept; two's rows renumbered above 3 in (sent_date, input, id) order
    assert target.archive(ROOM) == [(1, "first"), (2, "second"), (3, "third"),
                                    (4, "two-a"), (5, "two-b")]
    assert target.archive(ROOM2) == [(1, "only here"), (2, "and here")]
    assert target.query("SELECT msg_id, msg FROM tc_messages WHERE room_jid = :r "
                        "ORDER BY msg_id", r=ROOM)[3:] == [(4, "<m>two-a</m>"),
                                                          (5, "<m>two-b</m>")]
    assert target.counters(ROOM) == (1, 6)
    assert target.counters(ROOM2) == (1, 3)
    assert target.query("SELECT subject FROM tc_rooms WHERE room_jid = :r", r=ROOM) == [
        ("hello",)]
    users = dict(target.query("SELECT real_jid, affiliation FROM tc_users"))
    assert users == {"bob@example.com": "member", "eve@example.com": "outcast"}
    codes = {f["code"] for f in result.as_dict()["findings"]}
    assert {"ROOM_DIVERGED", "AFFILIATION_CONFLICT", "MSG_ID_COLLISION"} <= codes
    assert result.job_id is not None


def test_same_merge_twice_inserts_nothing(tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    for i, db in enumerate((one, two)):
        db.room(ROOM, next_=3)
        db.messages(ROOM, [(1, i, f"m{i}a"), (2, 10 + i, f"m{i}b")])
        db.timelog(ROOM, "bob@example.com", 0, 5)
    first = merge(target, one, two)
    assert first.ok
    before = target.digest()
    second = merge(target, one, two)
    assert second.ok, second.as_dict()
    assert all(t["inserted"] == 0 for t in second.as_dict()["tables"].values())
    assert target.digest() == before


def test_three_sources_an_empty_one_and_the_target_among_them(
        tc_factory: Callable[..., TcData]) -> None:
    target, one, empty, three = tc_factory(), tc_factory(), tc_factory(), tc_factory()
    target.room(ROOM, next_=3)
    target.messages(ROOM, [(1, 0, "t1"), (2, 5, "t2")])
    target.timelog(ROOM, "bob@example.com", 0, 1)
    one.room(ROOM, next_=3)
    one.messages(ROOM, [(1, 1, "o1"), (2, 6, "t2")])  # "t2" differs: sent_date 6 vs 5
    three.room(ROOM, next_=9)
    three.messages(ROOM, [(7, 2, "h7"), (8, 3, "o1")])  # o1 at minute 3 is new too
    three.room(ROOM2, next_=2)
    three.messages(ROOM2, [(1, 0, "x")])
    # the target itself named as a source: all of its rows are duplicates
    result = merge(target, one, empty, target, three)
    assert result.ok, result.as_dict()
    t = result.as_dict()["tables"]
    assert t["tc_msgarchive"]["read"] == [2, 2, 0, 2, 3]
    assert t["tc_msgarchive"]["duplicates"] == 2
    assert t["tc_msgarchive"]["renumbered"] == 4
    # new ids above 2 in (sent_date, input, old id) order: o1(1), t2@6(input 1) last
    assert target.archive(ROOM) == [(1, "t1"), (2, "t2"), (3, "o1"), (4, "h7"), (5, "o1"),
                                    (6, "t2")]
    # next_msg_id never lower than the owner's, above every id
    assert target.counters(ROOM) == (1, 7)
    assert t["tc_timelog"] == {"read": [1, 0, 0, 1, 0], "inserted": 0, "duplicates": 1,
                               "renumbered": 0, "conflicts": 0}
    assert t["tc_rooms"]["inserted"] == 1 and t["tc_rooms"]["duplicates"] == 3


def test_long_and_non_ascii_values_survive_byte_for_byte(
        tc_factory: Callable[..., TcData]) -> None:
    target, one = tc_factory(), tc_factory()
    long_body = ("Grüße, 日本語, emoji 🎉, quote ' \" backslash \\ ; tab\t" * 2000)[:60000]
    room = "gr\u00fc\u00dfe-'\";@conference-1-c1.example.com"
    one.room(room, subject="Ünïcødé ' \" ;", next_=3)
    one.messages(room, [(1, 0, long_body), (2, 1, "короткий")])
    one.member(room, "zoë@example.com", nick=f"{room}/zoë ' ;")
    result = merge(target, one)
    assert result.ok, result.as_dict()
    assert target.digest() == {**one.digest()} | {"tc_rooms": target.digest()["tc_rooms"]}
    assert target.query("SELECT body_text FROM tc_msgarchive WHERE msg_id = 1") == [
        (long_body,)]
    assert target.digest()["tc_rooms"] == one.digest()["tc_rooms"]  # counters consistent


@pytest.mark.parametrize("spec", ["tc,ma,mft", "ma,mft"])
def test_union_tables_and_aft_index_renumbering(tc_factory: Callable[..., TcData],
                                                spec: str) -> None:
    """jm and aft_log with the TC tables, and alone (--tables ma,mft: no room table)."""
    from tcmerge.schema import tables_for, tc

    from .data import at

    target, one, two = tc_factory(), tc_factory(), tc_factory()

    def aft(index: int, name: str, minute: int) -> dict[str, object]:
        return dict(aft_index=index, jid="a@x", to_jid="b@x", method="POST", filename=name,
                    real_filename=name, file_type="txt", chat_type="im", file_server="fs",
                    file_path=f"/f/{name}", file_size=1, bytes_transferred=1,
                    timestampvalue=at(minute))

    def jm(body: str) -> dict[str, object]:
        return dict(to_jid="b@x", from_jid="a@x", sent_date=at(0), subject=None,
                    thread_id=None, msg_type="c", direction="O", body_len=len(body),
                    message_len=len(body), body_string=body, message_string=body,
                    body_text=None, message_text=None, history_flag=None)

    target.insert(tc.aft_log, [aft(1, "t", 0)])
    one.insert(tc.aft_log, [aft(1, "one", 1), aft(2, "t", 0), aft(5, "five", 2)])
    two.insert(tc.aft_log, [aft(5, "two", 3), aft(6, "six", 4)])
    one.insert(tc.jm, [jm("hi"), jm("hi"), jm("only one")])  # identical rows inside one input
    two.insert(tc.jm, [jm("hi"), jm("two")])
    one.room("solo@conference-1-c1.example.com")
    result = merge(target, one, two, tables=tables_for(spec))
    assert result.ok, result.as_dict()
    t = result.as_dict()["tables"]
    rooms = target.query("SELECT room_jid FROM tc_rooms")
    if spec == "ma,mft":  # the TC tables are left alone
        assert set(t) == {"jm", "aft_log"} and rooms == []
    else:
        assert rooms == [("solo@conference-1-c1.example.com",)]
    assert t["jm"]["inserted"] == 4 and t["jm"]["duplicates"] == 1
    assert sorted(target.query("SELECT body_string FROM jm")) == [
        ("hi",), ("hi",), ("only one",), ("two",)]
    assert t["aft_log"] == {"read": [1, 3, 2], "inserted": 4, "duplicates": 1,
                            "renumbered": 2, "conflicts": 0}
    assert target.query("SELECT aft_index, filename FROM aft_log ORDER BY aft_index") == [
        (1, "t"), (5, "five"), (6, "six"), (7, "one"), (8, "two")]


def _room_indexed(db: TcData, table: str) -> bool:
    from tcmerge.merge.transport import room_indexed_query

    engine = db.engine()
    with engine.connect() as conn:
        text = room_indexed_query(table).as_string(conn.connection.driver_connection)
        value = conn.exec_driver_sql(text).scalar()
    engine.dispose()
    return value == 1


def test_id_ranges_are_probed_only_by_an_ascending_room_and_msg_id_index(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    assert _room_indexed(db, "tc_msgarchive")  # the primary key (to_jid, msg_id)
    found = []
    for index in ("(to_jid)", "(to_jid, sent_date)", "(to_jid DESC, msg_id)",
                  "(to_jid, msg_id DESC)", "(to_jid, msg_id)"):
        db.execute("ALTER TABLE tc_msgarchive DROP CONSTRAINT IF EXISTS tc_msgarchive_pkey",
                   "DROP INDEX IF EXISTS probe", f"CREATE INDEX probe ON tc_msgarchive {index}")
        found.append(_room_indexed(db, "tc_msgarchive"))
    assert found == [False, False, False, False, True]


def test_holders_give_each_rooms_lowest_and_highest_id_with_and_without_indexes(
        tc_factory: Callable[..., TcData]) -> None:
    """holders_select: per room its id range over both message tables (NULL for a room
    with no message rows), the same by index probes as by scanning every row."""
    from tcmerge.merge.transport import HOLDING_TABLES, holders_select

    db = tc_factory()
    db.room(ROOM, next_=10)
    db.messages(ROOM, [(3, 0, "a"), (7, 1, "b")], recent=False)
    db.insert(tc.tc_messages, [dict(msg_id=i, room_jid=ROOM, stamp=at(i), msg="m")
                               for i in (5, 9)])
    db.room(ROOM2, next_=1)                                       # no message rows
    db.insert(tc.tc_messages, [dict(msg_id=4, room_jid="c@conference-1-c1.example.com",
                                    stamp=at(0), msg="m")])       # recent messages only
    expected = [("c@conference-1-c1.example.com", 4, 4), (ROOM2, None, None), (ROOM, 3, 9)]
    found = []
    for indexed in (["tc_msgarchive", "tc_messages"], []):
        engine = db.engine()
        with engine.connect() as conn:
            text = holders_select(2, HOLDING_TABLES, indexed).as_string(
                conn.connection.driver_connection)
            found.append(sorted((r[1], r[2], r[3]) for r in conn.exec_driver_sql(text)
                                if r[0] == 2))
        engine.dispose()
    assert found == [sorted(expected)] * 2


def test_rooms_and_counters_found_without_room_indexes(
        tc_factory: Callable[..., TcData]) -> None:
    """Rooms and id ranges are read by index probes when a btree index leads with the room
    column; without one (here: primary keys dropped) the row scans give the same merge."""
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    one.room(ROOM, next_=4)
    one.messages(ROOM, [(1, 0, "first"), (2, 10, "second"), (3, 20, "third")])
    two.room(ROOM, next_=4)
    two.messages(ROOM, [(1, 5, "two-a"), (5, 10, "second"), (3, 30, "two-b")])
    two.room(ROOM2, next_=3)
    two.messages(ROOM2, [(1, 0, "only here"), (2, 1, "and here")])
    assert _room_indexed(two, "tc_msgarchive") and _room_indexed(target, "tc_messages")
    for db in (two, target):
        engine = db.engine()
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE tc_msgarchive DROP CONSTRAINT tc_msgarchive_pkey")
            conn.exec_driver_sql("ALTER TABLE tc_messages DROP CONSTRAINT tc_messages_pkey")
        engine.dispose()
    assert not _room_indexed(two, "tc_msgarchive") and not _room_indexed(target, "tc_messages")

    result = merge(target, one, two)
    assert result.ok, [f.message for f in result.verification]
    assert result.as_dict()["tables"]["tc_msgarchive"]["renumbered"] == 2
    assert target.archive(ROOM) == [(1, "first"), (2, "second"), (3, "third"),
                                    (4, "two-a"), (5, "two-b")]
    assert target.archive(ROOM2) == [(1, "only here"), (2, "and here")]
    assert target.counters(ROOM) == (1, 6)
    assert target.counters(ROOM2) == (1, 3)


def test_recent_messages_follow_their_archive_rows(
        tc_factory: Callable[..., TcData]) -> None:
    """Rule 3: tc_messages takes the archive's mapping, even when the two tables alone
    would judge a message differently (review finding)."""
    room = "ops@conference-1-cup.example.com"
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    # source one: "a", "b" archived; its recent buffer was cleared
    one.room(room, next_=3)
    one.messages(room, [(1, 1, "a"), (2, 2, "b")], recent=False)
    # source two: "b" again (an archive duplicate) whose recent copy one no longer has,
    # and "ok" from bob in the same minute as alice's "ok" (archive rows differ by sender,
    # the recent packets are equal)
    two.room(room, next_=9)
    two.messages(room, [(7, 2, "b")])
    one.messages(room, [(3, 5, "ok")])
    two.messages(room, [(8, 5, "ok")], sender="bob@example.com")
    result = merge(target, one, two)
    assert result.ok, result.as_dict()
    archive = target.query("SELECT msg_id, from_jid, body_string FROM tc_msgarchive "
                           "ORDER BY msg_id")
    recent = target.query("SELECT msg_id, msg FROM tc_messages ORDER BY msg_id")
    by_id = {int(r[0]): (r[1], r[2]) for r in archive}
    assert [v for v in by_id.values()] == [
        ("alice@example.com", "a"), ("alice@example.com", "b"),
        ("alice@example.com", "ok"), ("bob@example.com", "ok")]
    # every recent message has an archive row with the same id and body
    for msg_id, msg in recent:
        assert int(msg_id) in by_id and msg == f"<m>{by_id[int(msg_id)][1]}</m>"
    # bob's "ok" was kept in the archive (renumbered to 4): its recent copy is kept with it
    assert (4, "<m>ok</m>") in [(int(i), m) for i, m in recent]
    # the duplicate "b" of source two is dropped from both tables
    assert [int(i) for i, m in recent if m == "<m>b</m>"] == []


def test_verify_of_an_earlier_job_after_a_later_merge(
        tc_factory: Callable[..., TcData]) -> None:
    """Later merges add rows: verifying the first job must not call that a failure."""
    from tcmerge.merge import verify_job

    target, one, two = tc_factory(), tc_factory(), tc_factory()
    one.room("a@conference-1-cup.example.com", next_=2)
    one.messages("a@conference-1-cup.example.com", [(1, 1, "x")])
    two.room("b@conference-2-cup.example.com", next_=2)
    two.messages("b@conference-2-cup.example.com", [(1, 1, "y")])
    first = merge(target, one)
    assert first.ok and first.job_id
    assert merge(target, two).ok
    report = verify_job(target.ref, first.job_id, [one.ref])
    assert report.ok, [f.as_dict() for f in report.findings]
    assert "VERIFY_ROWS_ADDED_SINCE" in {f.code for f in report.findings}
    engine = target.engine()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM tc_msgarchive"))  # fewer rows than job 1 left
    finally:
        engine.dispose()
    lost = verify_job(target.ref, first.job_id, [one.ref])
    assert not lost.ok


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_duplicates_are_found_across_encodings(
        embedded_server: DatabaseServer, tc_factory: Callable[..., TcData],
        transport: str) -> None:
    """A LATIN1 source's rows are compared as the target holds them (UTF-8): an accented
    row equal to one the UTF-8 target holds is a duplicate; one differing by an accent is
    not."""
    from tcmerge.schema import manage
    from tcmerge.testing.plugin import unique_name

    target = tc_factory()
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    name = unique_name("latin")
    one = TcData(embedded_server.create_database(name, encoding="LATIN1"))
    try:
        manage.upgrade(one.ref)
        room = "café@conference-1-c1.example.com"
        target.room(room, next_=3)
        target.messages(room, [(1, 0, "déjà vu"), (2, 1, "naïve")])
        one.room(room, next_=3)
        one.messages(room, [(1, 0, "déjà vu"), (2, 1, "naive")])
        result = merge(target, one, transport=transport)
        assert result.ok, result.as_dict()
        counts = result.plan.counts["tc_msgarchive"] if result.plan else None
        assert counts is not None and (counts.duplicates, counts.inserted) == (1, 1)
        assert target.archive(room) == [(1, "déjà vu"), (2, "naïve"), (3, "naive")]
    finally:
        embedded_server.drop_database(name)


def test_members_and_timelog_of_rooms_in_one_input_go_straight_in(
        tc_factory: Callable[..., TcData]) -> None:
    """tc_users and tc_timelog rows of rooms no other input has go straight into the
    target table; the rest is analysed. Counts, bans and duplicates come out the same."""
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    alone_t, alone_1, alone_2 = ("t@conference-1-c1.example.com", ROOM2,
                                 "b@conference-2-c1.example.com")
    visited = "gone@conference-1-c1.example.com"  # only in the timelogs, never held
    target.room(alone_t)
    target.member(alone_t, "bad@example.com", "outcast")  # the target's own ban
    target.timelog(alone_t, "bob@example.com", 0, 1)
    target.timelog(ROOM, "bob@example.com", 5, 6)          # the same visit in source one
    one.room(alone_1)
    one.member(alone_1, "troll@example.com", "outcast")    # a ban of a room in one input
    one.member(alone_1, "bob@example.com", "admin")
    one.timelog(alone_1, "bob@example.com", 0, 1)
    one.timelog(alone_1, "bob@example.com", 0, 1)          # twice in one input: both kept
    one.room(ROOM)
    one.member(ROOM, "bob@example.com", "member")
    one.timelog(ROOM, "bob@example.com", 5, 6)
    one.timelog(visited, "eve@example.com", 1, None)
    two.room(ROOM)
    two.member(ROOM, "bob@example.com", "outcast")         # beats one's member row
    two.member(ROOM, "eve@example.com", "member")
    two.room(alone_2)
    two.member(alone_2, "eve@example.com", "owner")
    two.timelog(visited, "eve@example.com", 1, None)        # a duplicate of one's visit
    two.timelog(alone_1, "bob@example.com", 0, 1)           # and of one's (room not two's)
    two.timelog(alone_2, "eve@example.com", 2, 3)

    result = merge(target, one, two)
    assert result.ok, [f.message for f in result.verification]
    tables = result.as_dict()["tables"]
    assert tables["tc_users"] == {"read": [1, 3, 3], "inserted": 5, "duplicates": 0,
                                  "renumbered": 0, "conflicts": 1}
    assert tables["tc_timelog"] == {"read": [2, 4, 3], "inserted": 4, "duplicates": 3,
                                    "renumbered": 0, "conflicts": 0}
    assert sorted(target.query("SELECT room_jid, real_jid, affiliation FROM tc_users")) == \
        sorted([(alone_2, "eve@example.com", "owner"),
                (ROOM, "bob@example.com", "outcast"), (ROOM, "eve@example.com", "member"),
                (ROOM2, "bob@example.com", "admin"), (ROOM2, "troll@example.com", "outcast"),
                (alone_t, "bad@example.com", "outcast")])
    assert sorted(target.query("SELECT room_jid, count(*) FROM tc_timelog GROUP BY 1")) == \
        sorted([(alone_2, 1), (ROOM, 1), (ROOM2, 2), (visited, 1), (alone_t, 1)])


@pytest.mark.parametrize("rooms", [[], ["a"], ["a", "c"]])
def test_each_row_takes_one_path_and_a_row_without_room_is_staged(
        tc_factory: Callable[..., TcData], rooms: list[str]) -> None:
    from psycopg import sql

    from tcmerge.merge import pg as mpg
    from tcmerge.merge.transport import in_rooms

    db = tc_factory()
    with mpg.session(db.ref, role="test") as conn:
        row = conn.execute(sql.SQL(
            "SELECT array_agg(coalesce(room_jid, '-') ORDER BY room_jid) FILTER (WHERE {d}), "
            "array_agg(coalesce(room_jid, '-') ORDER BY room_jid) FILTER (WHERE {s}) "
            "FROM (VALUES ('a'), ('b'), ('c'), (NULL)) AS t(room_jid)").format(
                d=in_rooms("tc_timelog", rooms, negate=True),
                s=in_rooms("tc_timelog", rooms))).fetchone()
    assert row is not None
    direct, staged = row[0] or [], row[1] or []
    assert sorted(direct + staged) == ["-", "a", "b", "c"]
    assert sorted(staged) == sorted(["-", *rooms])


def _same_minute(db: TcData, room: str, rows: list[tuple[int, str | None, str | None]]) -> None:
    """(msg_id, body_string, subject) archive rows of ``room``, all sent in one minute."""
    db.insert(tc.tc_msgarchive, [
        dict(msg_id=i, to_jid=room, from_jid="alice@example.com", nick_jid=f"{room}/alice",
             sent_date=at(0), msg_type="g", body_len=5, message_len=5, body_string=body,
             message_string=None, body_text=None, message_text=None, subject=subject)
        for i, body, subject in rows])


@pytest.mark.parametrize(("transport", "staged"),
                         [("copy", False), ("dblink", False), ("copy", True)])
def test_a_duplicate_is_equal_in_every_column_but_msg_id(
        tc_factory: Callable[..., TcData], transport: str, staged: bool) -> None:
    """Rows of one room and minute, each differing from the target's by one thing only
    (NULL and '', case, a trailing space, a control character) are all kept; an equal row
    is dropped whether the earlier one is the target's, the owner's copied straight in or
    an earlier source's staged row; equal rows inside one input are all kept. ``staged``:
    the target's body_len is a bigint, so every source row is staged (none copied in)."""
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    if staged:
        target.execute("ALTER TABLE tc_msgarchive ALTER COLUMN body_len TYPE bigint")
    room3 = "lab@conference-1-c1.example.com"
    for db in (target, one, two):
        db.room(ROOM, next_=10)
    for db in (one, two):
        db.room(room3, next_=10)
    _same_minute(target, ROOM, [(1, "hello", "s")])
    _same_minute(one, ROOM, [(1, "hello", "s"), (2, "hello", None), (3, "hello", ""),
                             (4, "Hello", "s"), (5, "hello ", "s"), (6, None, "hello"),
                             (7, "hello", "s\x01"), (8, "x", "y"), (9, "x", "y")])
    _same_minute(two, ROOM, [(1, "x", "y"), (2, "hello", "s"), (3, "new", "z")])
    _same_minute(one, room3, [(1, "a", "b"), (2, "c", "d")])
    _same_minute(two, room3, [(1, "a", "b"), (5, "c", "d ")])

    result = merge(target, one, two, transport=transport)
    assert result.ok, result.as_dict()
    assert result.as_dict()["tables"]["tc_msgarchive"] == {
        "read": [1, 11, 5], "inserted": 12, "duplicates": 4, "renumbered": 10,
        "conflicts": 0}
    rows = target.query("SELECT to_jid, msg_id, body_string, subject FROM tc_msgarchive "
                        "ORDER BY to_jid, msg_id")
    assert [r[1:] for r in rows if r[0] == ROOM] == [
        (1, "hello", "s"), (2, "hello", None), (3, "hello", ""), (4, "Hello", "s"),
        (5, "hello ", "s"), (6, None, "hello"), (7, "hello", "s\x01"), (8, "x", "y"),
        (9, "x", "y"), (10, "new", "z")]
    assert [r[1:] for r in rows if r[0] == room3] == [(1, "a", "b"), (2, "c", "d"),
                                                     (3, "c", "d ")]


def test_counters_follow_the_ids_kept(tc_factory: Callable[..., TcData]) -> None:
    """Rule 4 with ids not starting at 1, stale counters, and rooms whose messages are all
    another input's: start_msg_id is the lowest id kept (a target's never raised),
    next_msg_id above every id and never lower than the owner's."""
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    stale, kept, empty = ("stale@conference-1-c1.example.com",
                          "kept@conference-1-c1.example.com",
                          "empty@conference-1-c1.example.com")
    one.room(stale, next_=3)                                # stale: ids go up to 7
    one.messages(stale, [(5, 0, "a"), (6, 1, "b")])
    one.insert(tc.tc_messages, [dict(msg_id=7, room_jid=stale, stamp=at(2), msg="c")])
    target.room(kept, next_=5)
    target.messages(kept, [(4, 0, "t")])
    target.execute(f"UPDATE tc_rooms SET start_msg_id = 4 WHERE room_jid = '{kept}'")
    two.room(kept, next_=3)
    two.messages(kept, [(1, 1, "x"), (2, 2, "y")])
    one.room(empty, next_=1)                                # owner without messages
    two.room(empty, next_=5)
    two.messages(empty, [(3, 0, "p"), (4, 1, "q")])
    two.room(ROOM2, next_=30)                               # one input, no messages
    result = merge(target, one, two)
    assert result.ok, result.as_dict()
    assert target.counters(stale) == (5, 8)
    assert target.counters(kept) == (4, 7)
    assert target.archive(kept) == [(4, "t"), (5, "x"), (6, "y")]
    assert target.counters(empty) == (1, 3)
    assert target.archive(empty) == [(1, "p"), (2, "q")]
    assert target.counters(ROOM2) == (1, 30)
