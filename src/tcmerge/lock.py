"""The one-merge lock of a target, held for a whole command by a session of its own.

``run`` holds it exclusively from its first statement to its last, ``validate``
shared: a second run, or a validate while a run works, is told MERGE_IN_PROGRESS
at once, before it sends any statement that could wait on the running merge's
table locks. ``restore`` takes the same key in its transaction (merge/snapshot.py).

The lock session runs no transaction while it holds the lock (PostgreSQL: a
session-level advisory lock), so run can ask its question with nothing held but
the lock. Dialects without a session-level lock (Oracle) take their lock in the
merge itself; here they get no lock and no refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from tcmerge.db import session
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects import adapter_for
from tcmerge.errors import DatabaseError
from tcmerge.results import Finding, error


@dataclass
class TargetLock:
    """What ``target_lock`` got: ``held``, or ``refusal`` (MERGE_IN_PROGRESS), or neither
    (the target could not be reached: the preflight says why; the dialect has no lock)."""

    held: bool = False
    refusal: Finding | None = None


def in_progress(ref: DatabaseRef, holders: set[str]) -> Finding:
    """MERGE_IN_PROGRESS, saying what holds the lock."""
    what = ("another tcmerge merge or restore is changing this target" if "exclusive" in holders
            else "tcmerge validate is checking this target right now" if holders
            else "another tcmerge command is using this target")
    return error("MERGE_IN_PROGRESS", what, database=ref.label,
                 hint="wait for it to finish (tcmerge jobs list shows the merges)")


@contextmanager
def target_lock(ref: DatabaseRef, *, exclusive: bool) -> Iterator[TargetLock]:
    """Hold the target's one-merge lock for the block (see the module's text)."""
    adapter = adapter_for(ref)
    if not adapter.session_merge_lock:
        yield TargetLock()
        return
    with ExitStack() as stack:
        try:
            conn = stack.enter_context(session(ref, "lock"))
            taken = adapter.try_merge_lock(conn, exclusive=exclusive)
            holders = set() if taken else adapter.merge_lock_holders(conn)
        except (DatabaseError, sa.exc.DBAPIError):
            # not reachable: the preflight reports the target's connection failure; a
            # merge then takes the lock in its own transaction
            yield TargetLock()
            return
        # closing the session (leaving the stack) releases the lock, after failures too
        yield TargetLock(held=True) if taken else TargetLock(refusal=in_progress(ref, holders))
