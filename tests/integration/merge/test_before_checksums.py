"""The target's checksums before a merge, taken by a second session in the merge
transaction's snapshot (pg_merge.BeforeChecksums): waited for, never cut short, and of
the target as the merge session saw it when it locked the tables."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tcmerge.merge import pg
from tcmerge.merge.checksums import table_checksums
from tcmerge.merge.pg_merge import BeforeChecksums

from . import proc
from .data import TcData
from .test_reliability import ROOM, fill

pytestmark = pytest.mark.postgresql

TABLES = ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog"]


class _Signalling:
    """A thread whose join() first says it was called."""

    def __init__(self, thread: threading.Thread, called: threading.Event) -> None:
        self.thread, self.called = thread, called

    def join(self, timeout: float | None = None) -> None:
        self.called.set()
        self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread.is_alive()


def test_checksums_still_running_are_waited_for_and_see_the_locked_target(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    fill(db, "t")
    with pg.open_session(db.ref, role="test") as fresh:
        expected = table_checksums(fresh, TABLES)
    with proc.admin(db.ref) as blocker, proc.admin(db.ref) as watcher, \
            pg.open_session(db.ref, role="merge") as main:
        watcher.autocommit = True
        blocker.autocommit = False
        # the checksums' session waits on this lock until the merge asks for its result
        blocker.execute("LOCK TABLE tc_timelog IN ACCESS EXCLUSIVE MODE")
        main.execute("LOCK TABLE tc_rooms IN SHARE MODE")
        before = BeforeChecksums(main, db.ref, TABLES)
        # the merge session writes after the export: the checksums do not see it
        main.execute("DELETE FROM tc_messages WHERE room_jid = %s", (ROOM,))
        proc.wait_until(watcher, proc.WAITING_ON, ("tc_timelog", "tcmerge-checksums"))
        asked = threading.Event()
        thread: Any = before.thread
        before.thread = _Signalling(thread, asked)  # type: ignore[assignment]

        def release() -> None:
            asked.wait(60)
            blocker.commit()

        releaser = threading.Thread(target=release)
        releaser.start()
        try:
            found = before.result()
        finally:
            asked.set()
            releaser.join()
        main.rollback()
    assert found == expected
