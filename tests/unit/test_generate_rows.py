"""The generator without a server: rows, COPY text, determinism, overlap counts."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import pytest

from tcmerge.errors import ConfigError
from tcmerge.generate import (
    COLUMNS,
    STRING_LIMIT,
    TABLES,
    GeneratorSpec,
    copy_blocks,
    copy_escape,
    copy_line,
    generate_rows,
    overlap_of,
)
from tcmerge.schema.tc import AFFILIATIONS, ROLES, ROOM_TYPES

SMALL = GeneratorSpec(rooms_per_node=6, messages_per_room=40, recent_per_room=5,
                      timelog_per_room=6, long_body_ratio=0.1, non_ascii_ratio=0.3)
OVERLAP = GeneratorSpec(rooms_per_node=8, messages_per_room=30, recent_per_room=5,
                        timelog_per_room=6, shared_rooms=0.5, duplicate_ratio=0.3,
                        affiliation_conflicts=3, bans=3, diverged_rooms=1, room_conflicts=1)

Rows = dict[str, list[tuple[Any, ...]]]


def _digest(spec: GeneratorSpec, databases: int = 1) -> str:
    h = hashlib.sha256()
    for db, table, block in copy_blocks(spec, databases):
        h.update(f"{db}:{table}:".encode())
        h.update(block.encode())
    return h.hexdigest()


def _col(table: str, name: str) -> int:
    return COLUMNS[table].index(name)


def test_same_spec_same_bytes_and_another_seed_differs() -> None:
    assert _digest(OVERLAP, 2) == _digest(OVERLAP, 2)
    assert _digest(OVERLAP, 2) != _digest(GeneratorSpec(**{**OVERLAP.__dict__, "seed": 2}), 2)


def test_copy_text_is_the_escaped_form_of_the_values() -> None:
    rows = generate_rows(OVERLAP, 3)
    texts: list[dict[str, list[str]]] = [defaultdict(list) for _ in range(3)]
    for db, table, block in copy_blocks(OVERLAP, 3):
        texts[db][table].extend(block.splitlines(keepends=True))
    for db in range(3):
        for table in TABLES:
            assert texts[db][table] == [copy_line(r) for r in rows[db][table]], (db, table)


def test_copy_escape() -> None:
    assert copy_escape('a\\b\tc\nd\re "q"') == 'a\\\\b\\tc\\nd\\re "q"'
    assert copy_line([None, 3, "x\ty"]) == "\\N\t3\tx\\ty\n"


def test_rows_follow_the_model() -> None:
    spec = SMALL
    (rows,) = generate_rows(spec, 1)
    alias = spec.alias(1)
    assert alias == "conference-1-cup.example.com"
    rooms = {r[0]: r for r in rows["tc_rooms"]}
    assert len(rooms) == spec.rooms_per_node
    for jid, creator, subject, kind, config, spacket, start, nxt in rooms.values():
        assert jid.endswith("@" + alias)
        assert kind in ROOM_TYPES
        assert config.startswith("<iq ") and "http://jabber.org/protocol/muc#owner" in config
        assert "<x xmlns='jabber:x:data' type='submit'>" in config and jid in config
        assert spacket.startswith("<message ") and "<subject>" in spacket and jid in spacket
        assert 0 < len(subject) <= 255 and creator.endswith("@example.com")
        assert start >= 1 and nxt == start + spec.messages_per_room
    assert {r[3] for r in rows["tc_rooms"]} <= set(ROOM_TYPES)

    ids: dict[str, list[int]] = defaultdict(list)
    for row in rows["tc_msgarchive"]:
        (msg_id, to_jid, from_jid, nick_jid, _sent, msg_type, body_len, message_len,
         body_string, message_string, body_text, message_text, subject) = row
        ids[to_jid].append(msg_id)
        assert msg_type == "g" and nick_jid.startswith(to_jid + "/")
        body = body_string if body_text is None else body_text
        packet = message_string if message_text is None else message_text
        assert (body_string is None) != (body_text is None)
        assert (message_string is None) != (message_text is None)
        assert body_len == len(body) and message_len == len(packet)
        assert (body_text is not None) == (body_len > STRING_LIMIT)
        assert (message_text is not None) == (message_len > STRING_LIMIT)
        assert packet.startswith("<message ") and packet.endswith("</body></message>")
        assert f"to='{to_jid}'" in packet and from_jid in packet
        assert subject is None or "<subject>" in packet
    for jid, room in rooms.items():
        assert ids[jid] == list(range(room[6], room[7]))  # in sent_date order, next > max

    # tc_messages: the newest archive messages, same ids, a packet embedding the room JID
    newest = {jid: set(v[-spec.recent_per_room:]) for jid, v in ids.items()}
    recent: dict[str, set[int]] = defaultdict(set)
    for msg_id, room_jid, _stamp, msg in rows["tc_messages"]:
        recent[room_jid].add(msg_id)
        assert msg.startswith(f"<message from='{room_jid}/") and f"to='{room_jid}'" in msg
    assert recent == newest

    assert len(rows["tc_timelog"]) == spec.rooms_per_node * spec.timelog_per_room
    assert any(r[3] is None for r in rows["tc_timelog"])
    assert all(r[3] is None or r[3] > r[2] for r in rows["tc_timelog"])


def test_every_role_and_affiliation_in_every_room() -> None:
    (rows,) = generate_rows(SMALL, 1)
    by_room: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows["tc_users"]:
        by_room[row[0]].append(row)
        assert row[4] == f"{row[0]}/{row[4].split('/', 1)[1]}"
    for members in by_room.values():
        assert len(members) == SMALL.members_per_room
        assert {m[2] for m in members} == set(ROLES)
        assert {m[3] for m in members} == set(AFFILIATIONS)
        assert all(m[5] is not None for m in members if m[3] == "outcast")
    assert len({(r[0], r[1]) for r in rows["tc_users"]}) == len(rows["tc_users"])


def test_few_members_still_cover_everything_across_rooms() -> None:
    (rows,) = generate_rows(GeneratorSpec(rooms_per_node=12, members_per_room=3,
                                          messages_per_room=2), 1)
    assert {r[2] for r in rows["tc_users"]} == set(ROLES)
    assert {r[3] for r in rows["tc_users"]} == set(AFFILIATIONS)


def test_bodies_are_long_short_and_non_ascii_with_awkward_characters() -> None:
    (rows,) = generate_rows(SMALL, 1)
    archive = rows["tc_msgarchive"]
    bodies = [r[8] if r[10] is None else r[10] for r in archive]
    longs = [b for b in bodies if len(b) > STRING_LIMIT]
    assert longs and all(r[8] is None for r in archive if r[10] is not None)
    assert any(not b.isascii() for b in bodies)
    assert any("🎉" in b or "🚀" in b for b in bodies)
    for char in ("\\", "\t", "\n", '"', "'"):
        assert any(char in b for b in bodies), repr(char)
    # XML specials are escaped inside the packet
    assert any("&lt;" in (r[9] or r[11]) for r in archive)


def _overlap_counts(prev: Rows, here: Rows) -> dict[str, int]:
    """Count each kind of overlap from the rows themselves."""
    users_prev = {(r[0], r[1]): r for r in prev["tc_users"]}
    bans = conflicts = 0
    for row in here["tc_users"]:
        old = users_prev.get((row[0], row[1]))
        if old is None or old == row:
            continue
        if row[3] == "outcast" and old[3] != "outcast":
            bans += 1
        elif old[2:4] != row[2:4]:
            conflicts += 1
    rooms_prev = {r[0]: r for r in prev["tc_rooms"]}
    shared = [r for r in here["tc_rooms"] if r[0] in rooms_prev]
    room_conflicts = sum(1 for r in shared if r[1] != rooms_prev[r[0]][1])
    diverged = sum(1 for r in shared
                   if r[1] == rooms_prev[r[0]][1] and r[2:6] != rooms_prev[r[0]][2:6])
    content_prev = {r[1:] for r in prev["tc_msgarchive"]}
    ids_prev = {(r[1], r[0]) for r in prev["tc_msgarchive"]}
    dups = [r for r in here["tc_msgarchive"] if r[1:] in content_prev]
    colliding = [r for r in here["tc_msgarchive"]
                 if r[1:] not in content_prev and (r[1], r[0]) in ids_prev]
    return {"shared_rooms": len(shared), "duplicates": len(dups),
            "colliding_ids": len(colliding), "affiliation_conflicts": conflicts, "bans": bans,
            "diverged_rooms": diverged, "room_conflicts": room_conflicts}


def test_overlap_options_make_exactly_the_requested_counts() -> None:
    dbs = generate_rows(OVERLAP, 3)
    reported = overlap_of(OVERLAP, 3)
    assert reported[0] == dict.fromkeys(reported[0], 0)
    for i in (1, 2):
        counted = _overlap_counts(dbs[i - 1], dbs[i])
        shared = round(OVERLAP.shared_rooms * len(dbs[i - 1]["tc_rooms"]))
        assert counted["shared_rooms"] == shared > 0
        assert counted["bans"] == OVERLAP.bans
        assert counted["affiliation_conflicts"] == OVERLAP.affiliation_conflicts
        assert counted["diverged_rooms"] == OVERLAP.diverged_rooms
        assert counted["room_conflicts"] == OVERLAP.room_conflicts
        per_room_dups = round(OVERLAP.messages_per_room * OVERLAP.duplicate_ratio)
        assert counted["duplicates"] == shared * per_room_dups
        # equal message counts per room: every new message of a shared room collides
        assert counted["colliding_ids"] == shared * (OVERLAP.messages_per_room - per_room_dups)
        assert {k: reported[i][k] for k in counted} == counted
    # a shared room keeps its JID (the previous node's alias) and its type
    prev_rooms = {r[0]: r for r in dbs[0]["tc_rooms"]}
    for room in dbs[1]["tc_rooms"]:
        if room[0] in prev_rooms:
            assert OVERLAP.alias(1) in room[0] and room[3] == prev_rooms[room[0]][3]
        else:
            assert OVERLAP.alias(2) in room[0]


def test_without_colliding_ids_new_messages_continue_after_the_previous_ids() -> None:
    spec = GeneratorSpec(**{**OVERLAP.__dict__, "colliding_ids": False})
    first, second = generate_rows(spec, 2)
    counted = _overlap_counts(first, second)
    assert counted["colliding_ids"] == 0 and counted["duplicates"] > 0
    nxt = {r[0]: r[7] for r in first["tc_rooms"]}
    assert all(r[0] >= nxt[r[1]] for r in second["tc_msgarchive"] if r[1] in nxt)


@pytest.mark.parametrize("changes", [
    {"rooms_per_node": -1}, {"members_per_room": 0}, {"duplicate_ratio": 1.5},
    {"long_body_ratio": 0.6, "non_ascii_ratio": 0.6}, {"cluster_id": "a b"},
    {"domain": "x'y"},
])
def test_bad_specs_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        GeneratorSpec(**changes)


def test_more_conflicts_than_shared_members_is_refused() -> None:
    spec = GeneratorSpec(rooms_per_node=2, messages_per_room=2, shared_rooms=0.5, bans=50)
    with pytest.raises(ConfigError, match="bans"):
        generate_rows(spec, 2)
    with pytest.raises(ConfigError, match="room_conflicts"):
        generate_rows(GeneratorSpec(rooms_per_node=2, room_conflicts=1), 2)
