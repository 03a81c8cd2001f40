"""The room service on a real PostgreSQL: atomic ids, lease fencing, failover, fallback."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tcmerge.db import create_engine
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import DatabaseError
from tcmerge.ha.rooms import (
    Ack,
    BannedError,
    LeaseLostError,
    RoomService,
    RoomUnavailableError,
    create_rooms,
    verify_acknowledged,
)
from tcmerge.schema.bookkeeping import tcmerge_room_leases as leases
from tcmerge.schema.compare import compare_to_model, reflect
from tcmerge.schema.tc import tc_messages, tc_msgarchive, tc_rooms, tc_users

pytestmark = pytest.mark.postgresql

A_ALIAS = "conference-1-cup.example.com"
B_ALIAS = "conference-2-cup.example.com"
AT = dt.datetime(2026, 1, 5, 9, 0, 0)


@pytest.fixture
def engine(tc_database: DatabaseRef) -> Iterator[sa.Engine]:
    eng = create_engine(tc_database)
    create_rooms(eng, [(f"room{i}@{A_ALIAS}", "andy@example.com", f"room {i}") for i in range(3)]
                 + [(f"other@{B_ALIAS}", "bob@example.com", "other")])
    yield eng
    eng.dispose()


def lease_rows(engine: sa.Engine) -> dict[str, tuple[str | None, int]]:
    with engine.connect() as conn:
        return {r.room_jid: (r.holder, int(r.fencing))
                for r in conn.execute(sa.select(leases))}


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_migrated_lease_table_matches_the_model(tc_database: DatabaseRef) -> None:
    eng = create_engine(tc_database)
    try:
        with eng.connect() as conn:
            live = reflect(conn, [leases])
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes(leases.name)}
        assert leases.name in live
        findings = compare_to_model(live, [leases], "db")
        assert [f for f in findings if f.severity != "info"] == []
        assert live[leases.name].primary_key == ("room_jid",)
        assert "tcmerge_room_leases_holder" in indexes
    finally:
        eng.dispose()


def test_load_takes_every_room_of_the_alias(engine: sa.Engine) -> None:
    a = RoomService("1A", engine)
    assert a.load([A_ALIAS]) == 3
    assert a.hosted() == [f"room{i}@{A_ALIAS}" for i in range(3)]
    assert set(lease_rows(engine).values()) == {("1A", 1)}


def test_concurrent_posts_get_unique_consecutive_ids(engine: sa.Engine) -> None:
    a = RoomService("1A", engine)
    a.load([A_ALIAS])
    room = f"room0@{A_ALIAS}"
    acks: list[Ack] = []
    lock = threading.Lock()

    def poster(user: str) -> None:
        for n in range(10):
            body = f"{user} says {n}"
            result = a.post(room, f"{user}@example.com", user, body, AT)
            with lock:
                acks.append(Ack(room, result.msg_id, f"{user}@example.com", body))

    threads = [threading.Thread(target=poster, args=(u,)) for u in ("andy", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.msg_id for a in acks) == list(range(1, 21))
    with engine.connect() as conn:
        next_id = conn.execute(sa.select(tc_rooms.c.next_msg_id)
                               .where(tc_rooms.c.room_jid == room)).scalar_one()
    assert next_id == 21
    assert count(engine, tc_msgarchive) == count(engine, tc_messages) == 20
    acks.sort(key=lambda x: x.msg_id)
    assert verify_acknowledged(engine, acks).ok


def test_a_node_that_lost_its_lease_cannot_write(engine: sa.Engine) -> None:
    room = f"room1@{A_ALIAS}"
    a, b = RoomService("1A", engine), RoomService("1B", engine)
    a.load([A_ALIAS])
    a.post(room, "andy@example.com", "andy", "before", AT)
    b.load([A_ALIAS])  # takeover: fencing 1 -> 2
    assert lease_rows(engine)[room] == ("1B", 2)
    with pytest.raises(LeaseLostError) as info:
        a.post(room, "andy@example.com", "andy", "stale write", AT)
    assert info.value.code == "HA_LEASE_LOST"
    assert count(engine, tc_msgarchive) == 1  # nothing written by the stale node
    with engine.connect() as conn:
        assert conn.execute(sa.select(tc_rooms.c.next_msg_id)
                            .where(tc_rooms.c.room_jid == room)).scalar_one() == 2
    assert b.post(room, "bob@example.com", "bob", "after", AT).msg_id == 2
    with pytest.raises(RoomUnavailableError):  # the stale node dropped the room
        a.post(room, "andy@example.com", "andy", "again", AT)


def test_failover_loads_peer_rooms_with_full_history_and_fallback_returns_them(
        engine: sa.Engine) -> None:
    room = f"room2@{A_ALIAS}"
    a, b = RoomService("1A", engine), RoomService("1B", engine)
    a.load([A_ALIAS])
    b.load([B_ALIAS])
    acks = [Ack(room, a.post(room, "andy@example.com", "andy", f"a{n}", AT).msg_id,
                "andy@example.com", f"a{n}") for n in range(3)]
    a.stop()  # TC fails on 1A: its rooms are gone from memory, leases stay
    with pytest.raises(RoomUnavailableError):
        a.post(room, "andy@example.com", "andy", "down", AT)
    assert b.load([A_ALIAS]) == 3  # failover
    assert [m.body for m in b.read_last(room, 100)] == ["a0", "a1", "a2"]
    history = b.join(room, "andy@example.com", AT)
    assert [m.msg_id for m in history] == [1, 2, 3]
    result = b.post(room, "bob@example.com", "bob", "b on backup", AT)
    acks.append(Ack(room, result.msg_id, "bob@example.com", "b on backup"))
    assert result.msg_id == 4
    # fallback: 1B unloads 1A's rooms, 1A loads them again
    assert b.unload([A_ALIAS]) == 3
    assert lease_rows(engine)[room] == (None, 2)
    assert b.hosted() == [f"other@{B_ALIAS}"]
    a.start()
    assert a.load([A_ALIAS]) == 3
    assert lease_rows(engine)[room] == ("1A", 3)
    result = a.post(room, "andy@example.com", "andy", "home again", AT)
    acks.append(Ack(room, result.msg_id, "andy@example.com", "home again"))
    assert [m.body for m in a.read_last(room, 100)] == ["a0", "a1", "a2", "b on backup",
                                                        "home again"]
    assert verify_acknowledged(engine, acks).ok


def test_takeover_failing_midway_loads_nothing_and_stops_tc(engine: sa.Engine) -> None:
    a, b = RoomService("1A", engine), RoomService("1B", engine, lock_timeout_ms=200)
    a.load([A_ALIAS])
    before = lease_rows(engine)
    # another session holds one lease row: B's takeover transaction fails on it
    with engine.connect() as blocker:
        blocker.execute(sa.select(leases).where(leases.c.room_jid == f"room2@{A_ALIAS}")
                        .with_for_update())
        with pytest.raises(DatabaseError) as info:
            b.load([A_ALIAS])
        blocker.rollback()
    assert "lock" in info.value.message
    assert not b.running and b.hosted() == []
    assert lease_rows(engine) == before  # no lease moved: no half-loaded rooms
    with pytest.raises(RoomUnavailableError):
        b.load([B_ALIAS])


def test_unreachable_database_during_takeover_stops_tc(tc_database: DatabaseRef) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    ref = DatabaseRef(tc_database.url.set(host="127.0.0.1", port=closed_port))
    eng = create_engine(ref, connect_args={"connect_timeout": 2})
    try:
        b = RoomService("1B", eng)
        with pytest.raises(DatabaseError) as info:
            b.load([A_ALIAS])
        assert info.value.code == "CONNECTION_FAILED"
        assert tc_database.url.password not in info.value.message
        assert not b.running and b.hosted() == []
    finally:
        eng.dispose()


def test_banned_users_cannot_join_or_post(engine: sa.Engine) -> None:
    room = f"room0@{A_ALIAS}"
    with engine.begin() as conn:
        conn.execute(tc_users.insert().values(room_jid=room, real_jid="eve@example.com",
                                              role="none", affiliation="outcast",
                                              nick_jid=f"{room}/eve"))
    a = RoomService("1A", engine)
    a.load([A_ALIAS])
    with pytest.raises(BannedError):
        a.join(room, "eve@example.com", AT)
    with pytest.raises(BannedError):
        a.post(room, "eve@example.com", "eve", "spam", AT)
    assert count(engine, tc_msgarchive) == 0
