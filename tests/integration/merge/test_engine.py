"""The merge rules end to end on real PostgreSQL (copy transport unless stated)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tcmerge.merge import MergeResult, run_merge
from tcmerge.request import MergeRequest

from .data import TcData

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
ROOM2 = "dev@conference-2-c1.example.com"


def merge(target: TcData, *sources: TcData, **options: object) -> MergeResult:
    request = MergeRequest(sources=tuple(s.ref for s in sources), target=target.ref,
                           **options)  # type: ignore[arg-type]
    return run_merge(request)


def test_split_room_renumbers_drops_duplicates_and_keeps_bans(
        tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
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

    result = merge(target, one, two)
    assert result.ok, result.as_dict()
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
