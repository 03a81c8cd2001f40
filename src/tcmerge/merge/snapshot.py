"""Snapshot of the target's tables before a merge, and ``restore`` from it.

The snapshot is taken inside the merge transaction (``CREATE TABLE ... AS TABLE``),
so it exists exactly when the merge committed. Snapshot tables are named
``tcmerge_snap_<job token>_<table>`` and listed in the job record with the
target's checksums before the merge; ``restore`` puts the rows back in one
transaction, proves the checksums equal, marks the job ``restored`` and drops
the snapshot tables. On PostgreSQL only the tables whose rows the merge changes
or that are small are copied (the adapter's ``snapshot_tables``); of the others the merge only
inserts rows, all written by its transaction, whose id the job keeps
(``inserted_rows``): restore deletes the rows of that transaction, and the same
checksums prove the tables as they were (Oracle copies every table).

A restore would also discard what changed in the target after the merge (messages
the TC service archived, rows edited by hand). Before writing, it compares the
target with the snapshot and the job's counts: every snapshot row still there
(tc_rooms' counters aside, which the merge itself raises) and as many rows as the
merge left. When they differ it refuses (RESTORE_TARGET_CHANGED) unless ``force``.
Changes to the rows the merge itself inserted, balanced by as many inserted rows,
are not seen (no copy of the merged state is kept).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from tcmerge.db import MERGE_LOCK_KEY, server_reason, session
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects import adapter_for
from tcmerge.errors import DatabaseError, FindingsBlock
from tcmerge.lock import target_lock
from tcmerge.merge import jobs
from tcmerge.merge.checksums import recorded_methods
from tcmerge.merge.pg import PgConn
from tcmerge.sqlexec import Runner, SaRunner

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "tcmerge_snap_"
#: One key for every tcmerge change to a target: merges and restores exclude each other.


def snapshot_names(job_id: str, tables: list[str]) -> dict[str, str]:
    token = job_id.rsplit("-", 1)[-1]
    return {t: f"{SNAPSHOT_PREFIX}{token}_{t}" for t in tables}


def take_snapshot(conn: PgConn, job_id: str, tables: list[str]) -> dict[str, str]:
    names = snapshot_names(job_id, tables)
    for table, snap in names.items():
        conn.execute(sql.SQL("CREATE TABLE {} AS TABLE {}").format(
            sql.Identifier(snap), sql.Identifier(table)))
    return names


def try_merge_lock(conn: PgConn) -> bool:
    """The per-target merge lock, held until the transaction ends."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (MERGE_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


class MergeInProgress(FindingsBlock):
    code = "MERGE_IN_PROGRESS"


@dataclass
class RestoreResult:
    job_id: str
    tables: dict[str, int] = field(default_factory=dict)
    checksums_match: bool = True
    #: per table what changed after the merge and was discarded (``force``)
    changes_discarded: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.checksums_match

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "job_id": self.job_id, "status": "restored",
                "tables": {t: {"rows": n} for t, n in self.tables.items()},
                "checksums_match": self.checksums_match,
                "changes_discarded": dict(self.changes_discarded)}


#: columns a merge may change in rows the target held before it (rule 4)
COUNTERS = {"tc_rooms": ("start_msg_id", "next_msg_id")}


def inserted_rows(job: jobs.JobRecord) -> tuple[int | None, list[str]]:
    """The merge's transaction id and the tables whose rows restore finds by it (a job
    that copied every table, or ran without a snapshot: None, [])."""
    marked = job.counts.get("inserted_rows") or {}
    return marked.get("xid"), list(marked.get("tables") or [])


def restorable(job: jobs.JobRecord) -> bool:
    return bool(job.counts.get("snapshot")) or bool(inserted_rows(job)[1])


def changes_since(run: Runner, job: jobs.JobRecord, snap: dict[str, str]) -> dict[str, str]:
    """Per table, how the target differs from what the job left (empty: no change seen)."""
    adapter = adapter_for(run.name)
    out: dict[str, str] = {}
    counts = job.counts.get("tables", {})
    for table, snapshot in snap.items():
        parts = []
        now = int(run.scalar(sa.select(sa.func.count()).select_from(sa.table(table))))
        before = int(run.scalar(sa.select(sa.func.count()).select_from(sa.table(snapshot))))
        gone = adapter.missing_rows(run, snapshot, table, COUNTERS.get(table, ()))
        left = before + int(counts.get(table, {}).get("inserted", 0))
        if gone:
            parts.append(f"{gone} row(s) held before the merge edited or deleted")
        if now != left:
            parts.append(f"{now} rows where the merge left {left}")
        if parts:
            out[table] = "; ".join(parts)
    xid, marked = inserted_rows(job)
    if xid is None:
        return out
    sums = dict(job.counts.get("target_checksums_before") or {})
    methods = recorded_methods(sums)
    adapter.digest_session(run)
    for table in marked:
        parts = []
        inserted = int(counts.get(table, {}).get("inserted", 0))
        kept = int(run.scalar(adapter.transaction_rows(table, xid)))
        if kept != inserted:
            parts.append(f"{kept} row(s) as the merge wrote them where it inserted {inserted} "
                         "(edited or deleted since)")
        row = run.rows(adapter.digest_without_transaction(table, methods[table], xid))[0]
        if f"{row[0]}:{row[1]}" != sums[table]:
            parts.append(f"the other rows differ from the {sums[table].split(':')[0]} held "
                         "before the merge "
                         f"({row[0]} rows now: added, edited or deleted since)")
        if parts:
            out[table] = "; ".join(parts)
    return out


#: Asked once every check has passed, before any change, with the job and what the
#: restore would discard (``force``); False cancels.
ConfirmRestore = Callable[[jobs.JobRecord, dict[str, str]], bool]


def restore_job(ref: DatabaseRef, job_id: str, *, force: bool = False,
                confirm: ConfirmRestore | None = None) -> RestoreResult:
    """Put the target's tables back as they were before ``job_id``, in one transaction,
    on a PostgreSQL or an Oracle target.

    Refused (RESTORE_TARGET_CHANGED) when the target changed after the merge, unless
    ``force``: the restore would discard those changes. ``confirm`` is asked once every
    check has passed, with no transaction open (only the one-merge lock is held); the
    checks are then made again, and what the question showed must still hold."""
    log.info("restoring %s to before job %s", ref.label, job_id)
    adapter = adapter_for(ref)
    with target_lock(ref, exclusive=True) as lock:
        if lock.refusal is not None:
            raise MergeInProgress(f"{lock.refusal.message}; nothing was restored")
        with session(ref, "restore", connect_args=adapter.digest_connect_args()) as conn:
            run = SaRunner(conn)
            try:
                shown: dict[str, str] | None = None
                if confirm is not None:
                    job, shown = _checked(run, job_id, force, locked=lock.held)
                    conn.rollback()
                    if not confirm(job, shown):
                        raise FindingsBlock("restore cancelled; nothing was changed",
                                            code="CANCELLED")
                return _restore(conn, run, job_id, force, locked=lock.held, shown=shown)
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                raise DatabaseError(f"restoring {ref.label} failed, nothing was changed: "
                                    f"{server_reason(exc, ref)}") from None


def _checked(run: Runner, job_id: str, force: bool, *,
             locked: bool) -> tuple[jobs.JobRecord, dict[str, str]]:
    """Every check before a restore, in the current transaction, which then holds the
    tables EXCLUSIVE (readers pass): the job and what the restore would discard."""
    adapter = adapter_for(run.name)
    if not locked and not adapter.lock_for_restore(run):
        raise MergeInProgress("another tcmerge merge or restore is changing this target; "
                              "nothing was restored")
    job = jobs.get_job(run, job_id, for_update=True)
    snap: dict[str, str] = dict(job.counts.get("snapshot") or {})
    xid, marked = inserted_rows(job)
    if job.status != "succeeded":
        raise FindingsBlock(f"job {job.job_id} is {job.status}: only a succeeded merge can be "
                            "restored", code="RESTORE_NOT_POSSIBLE")
    if not restorable(job):
        raise FindingsBlock(f"job {job.job_id} ran with --no-snapshot: nothing to restore from",
                            code="RESTORE_NOT_POSSIBLE")
    if xid is not None and not 0 < adapter.transactions_since(run, xid) < 2**31:
        # a row's transaction id has 32 bits: after 2^31 more, another transaction's
        # rows could carry the merge's
        raise FindingsBlock(
            f"more than two billion transactions ran on this server since job {job.job_id} "
            f"(or it is not the server the job ran on): the rows it inserted into "
            f"{', '.join(marked)} can no longer be told apart by their transaction id; "
            "restore the target from its backup", code="RESTORE_NOT_POSSIBLE")
    missing = sorted(s for s in snap.values() if not run.scalar(adapter.table_visible(s)))
    if missing:
        raise FindingsBlock(f"the snapshot tables of job {job.job_id} are gone: "
                            + ", ".join(missing), code="RESTORE_NOT_POSSIBLE")
    later = [j for j in jobs.list_jobs(run)
             if j.status == "succeeded" and j.job_id != job.job_id
             and (j.started_at, j.job_id) > (job.started_at, job.job_id)]
    if later:
        stuck = [j.job_id for j in later if not restorable(j)]
        if stuck:
            # that job cannot be restored, so this one never can: say so, rather than
            # ask for an order that cannot be followed
            raise FindingsBlock(
                f"job {stuck[-1]} merged into this target after {job.job_id} and ran with "
                f"--no-snapshot: it cannot be restored, so {job.job_id} cannot be either "
                "(its snapshot lacks that job's rows); restore the target from its backup",
                code="RESTORE_BLOCKED")
        raise FindingsBlock(f"job {later[-1].job_id} merged into this target after "
                            f"{job.job_id}: restore the later jobs first, newest first",
                            code="RESTORE_BLOCKED")
    tables = [*snap, *marked]
    _require_delete(run, tables)
    quote = run.dialect.identifier_preparer.quote
    run.execute(sa.text(f"LOCK TABLE {', '.join(quote(t) for t in tables)} IN EXCLUSIVE MODE"))
    discarded = changes_since(run, job, snap)
    if discarded and not force:
        raise FindingsBlock(
            f"the target changed after job {job.job_id} (" + "; ".join(
                f"{t}: {what}" for t, what in discarded.items())
            + "); a restore would discard those changes; nothing was changed (--force "
            "restores anyway)", code="RESTORE_TARGET_CHANGED")
    return job, discarded


def _require_delete(run: Runner, tables: list[str]) -> None:
    """Restore empties each table before putting the snapshot back: it needs DELETE.

    A merge needs only SELECT, INSERT and UPDATE, so a target whose tables belong to
    another role can be merged into by a user that may not restore; say so before
    anything is changed, with the statement that grants it.
    """
    # schema-qualified: the owner who runs the GRANT may have another search_path
    missing = adapter_for(run.name).tables_without_delete(run, tables)
    if missing:
        user = run.dialect.identifier_preparer.quote(
            str(run.scalar(sa.select(sa.literal_column("current_user")))))
        raise FindingsBlock(
            f"{user} lacks DELETE on {', '.join(missing)}: restore replaces the rows of each "
            f"table with its snapshot; nothing was changed. As the tables' owner: GRANT DELETE "
            f"ON TABLE {', '.join(missing)} TO {user};", code="PRIVILEGE_MISSING")


def _restore(conn: sa.Connection, run: Runner, job_id: str, force: bool, *, locked: bool,
             shown: dict[str, str] | None) -> RestoreResult:
    adapter = adapter_for(run.name)
    job, discarded = _checked(run, job_id, force, locked=locked)
    if shown is not None and discarded != shown:
        raise FindingsBlock(
            "the target changed while the question waited: what the restore would discard "
            "is not what was shown; nothing was changed", code="RESTORE_TARGET_CHANGED")
    snap: dict[str, str] = dict(job.counts.get("snapshot") or {})
    xid, marked = inserted_rows(job)
    result = RestoreResult(job.job_id, changes_discarded=discarded)
    quote = run.dialect.identifier_preparer.quote
    for table, snapshot in snap.items():
        run.execute(sa.text(f"DELETE FROM {quote(table)}"))
        result.tables[table] = run.execute(sa.text(
            f"INSERT INTO {quote(table)} SELECT * FROM {quote(snapshot)}"))
    for table in marked:
        assert xid is not None
        # the merge's rows; with --force also what was written after it (discarded, as
        # a copy put back would discard it)
        run.execute(adapter.delete_transaction_rows(table, xid, later=table in discarded))
        result.tables[table] = int(run.scalar(sa.select(sa.func.count()).select_from(
            sa.table(table))))
    before = dict(job.counts.get("target_checksums_before") or {})
    adapter.digest_session(run)
    now = {}
    for table, method in recorded_methods(before).items():
        row = run.rows(adapter.digest_statement(table, method))[0]
        now[table] = f"{row[0]}:{row[1]}"
    result.checksums_match = all(now.get(t) == before.get(t) for t in before)
    if not result.checksums_match:
        conn.rollback()
        lost = [t for t in marked if now.get(t) != before.get(t)]
        why = (f"; rows of {', '.join(lost)} that the target held before the merge were "
               "edited or deleted since, and the merge kept no copy of them (only of "
               f"{', '.join(snap) or 'no table'}): restore the target from its backup"
               if lost else "")
        raise FindingsBlock("the restored tables do not match the checksums recorded before "
                            f"the merge{why}; nothing was changed", code="RESTORE_MISMATCH")
    drops = [sa.text(f"DROP TABLE {quote(s)}") for s in snap.values()]
    if adapter.transactional_ddl:  # gone with the commit, or there still
        for drop in drops:
            run.execute(drop)
    job.status = "restored"
    job.counts["restored_at"] = jobs.utcnow().isoformat()
    jobs.update_job(run, job)
    conn.commit()
    if not adapter.transactional_ddl:  # DDL commits by itself: only after the restore
        for drop in drops:
            try:
                run.execute(drop)
            except sa.exc.DBAPIError as exc:
                log.warning("restore done, but a snapshot table could not be dropped: %s",
                            exc.orig)
    return result
