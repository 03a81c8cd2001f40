"""verify finds a room whose next_msg_id is not above every id, with an index on
(room, msg_id) (one probe per room) and without one (grouped scans)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tcmerge.merge import run_merge
from tcmerge.merge.verify import verify_job
from tcmerge.request import MergeRequest

from .data import TcData

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
ROOM2 = "dev@conference-1-c1.example.com"


@pytest.mark.parametrize("indexed", [True, False])
def test_verify_reports_counters_not_above_every_id(
        tc_factory: Callable[..., TcData], indexed: bool) -> None:
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=4)
    one.messages(ROOM, [(1, 0, "a"), (2, 1, "b"), (3, 2, "c")])
    one.room(ROOM2, next_=3)
    one.messages(ROOM2, [(1, 0, "x"), (2, 1, "y")], recent=False)
    result = run_merge(MergeRequest(sources=(one.ref,), target=target.ref))
    assert result.ok and result.job_id is not None
    assert verify_job(target.ref, result.job_id).ok

    engine = target.engine()
    with engine.begin() as conn:
        if not indexed:
            conn.exec_driver_sql("ALTER TABLE tc_msgarchive DROP CONSTRAINT tc_msgarchive_pkey")
            conn.exec_driver_sql("ALTER TABLE tc_messages DROP CONSTRAINT tc_messages_pkey")
        # ROOM: only its tc_messages ids reach 3; ROOM2: its archive ids reach 2
        conn.exec_driver_sql("DELETE FROM tc_msgarchive WHERE to_jid = 'ops@conference-1-c1"
                             ".example.com' AND msg_id = 3")
        conn.exec_driver_sql("UPDATE tc_rooms SET next_msg_id = msg_id_top FROM (VALUES "
                             "('ops@conference-1-c1.example.com', 3), "
                             "('dev@conference-1-c1.example.com', 2)) AS v(r, msg_id_top) "
                             "WHERE room_jid = v.r")
    engine.dispose()
    report = verify_job(target.ref, result.job_id)
    counter = [f for f in report.findings if f.code == "VERIFY_COUNTER"]
    assert len(counter) == 1
    assert ROOM in counter[0].message and ROOM2 in counter[0].message
    assert counter[0].message.startswith("2 room(s)")
