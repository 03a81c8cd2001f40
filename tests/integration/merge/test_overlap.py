"""Source work that runs beside other work: each source's rooms are read in the background."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tcmerge.merge import MergeResult, run_merge
from tcmerge.merge.engine import full_preflight
from tcmerge.request import MergeRequest
from tcmerge.validate import ValidationReport

from . import proc
from .data import TcData
from .test_engine import ROOM, ROOM2

pytestmark = pytest.mark.postgresql

SOURCE_QUERY = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = 'tcmerge-source' AND query LIKE %s)")


def test_the_second_sources_rooms_are_read_while_the_first_source_waits(
        tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    for db, room in ((one, ROOM), (two, ROOM2)):
        db.room(room, next_=3)
        db.messages(room, [(1, 1, "first"), (2, 2, "second")])
    blocker, watcher = proc.admin(one.ref), proc.admin(two.ref)
    blocker.autocommit = False

    def preflight(request: MergeRequest) -> ValidationReport:
        report = full_preflight(request)
        # after the checks (they read the tables): source one's rooms wait for this lock
        blocker.execute("LOCK TABLE tc_rooms IN ACCESS EXCLUSIVE MODE")
        return report

    results: list[MergeResult] = []
    request = MergeRequest(sources=(one.ref, two.ref), target=target.ref, transport="copy")
    merging = threading.Thread(target=lambda: results.append(
        run_merge(request, preflight=preflight)))
    merging.start()
    try:
        proc.wait_until(blocker, proc.WAITING_ON, ("tc_rooms", "tcmerge-source"))
        # without reading in the background, source two would not be asked yet
        proc.wait_until(watcher, SOURCE_QUERY, ("%SELECT DISTINCT 2::smallint%",))
    finally:
        blocker.rollback()
        merging.join()
        blocker.close()
        watcher.close()
    assert [r.status for r in results] == ["succeeded"]
    assert target.archive(ROOM) == [(1, "first"), (2, "second")]
    assert target.archive(ROOM2) == [(1, "first"), (2, "second")]
