"""Snapshot of the target's tables before a merge, and ``restore`` from it.

The snapshot is taken inside the merge transaction (``CREATE TABLE ... AS TABLE``),
so it exists exactly when the merge committed. Snapshot tables are named
``tcmerge_snap_<job token>_<table>`` and listed in the job record with the
target's checksums before the merge; ``restore`` puts the rows back in one
transaction, proves the checksums equal, marks the job ``restored`` and drops
the snapshot tables.

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

import psycopg
from psycopg import sql

from tcmerge.db import MERGE_LOCK_KEY
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import FindingsBlock
from tcmerge.merge import jobs, pg
from tcmerge.merge.checksums import recorded_methods, table_checksums
from tcmerge.merge.pg import PgConn
from tcmerge.sqlexec import PsycopgRunner

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


def changes_since(conn: PgConn, job: jobs.JobRecord, snap: dict[str, str]) -> dict[str, str]:
    """Per table, how the target differs from what the job left (empty: no change seen)."""
    out: dict[str, str] = {}
    counts = job.counts.get("tables", {})
    for table, snapshot in snap.items():
        parts = []
        columns = [c for c in pg.table_columns(conn, snapshot)
                   if c not in COUNTERS.get(table, ())]
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        row = conn.execute(sql.SQL(
            "SELECT (SELECT count(*) FROM {t}), (SELECT count(*) FROM {s}), "
            "(SELECT count(*) FROM (SELECT {c} FROM {s} EXCEPT ALL SELECT {c} FROM {t}) d)"
        ).format(t=sql.Identifier(table), s=sql.Identifier(snapshot), c=cols)).fetchone()
        assert row is not None
        now, before, gone = (int(v) for v in row)
        left = before + int(counts.get(table, {}).get("inserted", 0))
        if gone:
            parts.append(f"{gone} row(s) held before the merge edited or deleted")
        if now != left:
            parts.append(f"{now} rows where the merge left {left}")
        if parts:
            out[table] = "; ".join(parts)
    return out


#: Asked once every check has passed, before any change, with the job and what the
#: restore would discard (``force``); False cancels.
ConfirmRestore = Callable[[jobs.JobRecord, dict[str, str]], bool]


def restore_job(ref: DatabaseRef, job_id: str, *, force: bool = False,
                confirm: ConfirmRestore | None = None) -> RestoreResult:
    """Put the target's tables back as they were before ``job_id``, in one transaction.

    Refused (RESTORE_TARGET_CHANGED) when the target changed after the merge, unless
    ``force``: the restore would discard those changes."""
    log.info("restoring %s to before job %s", ref.label, job_id)
    with pg.session(ref, role="restore") as conn:
        try:
            return _restore(conn, job_id, force, confirm)
        except psycopg.Error as exc:
            conn.rollback()
            raise pg.wrap(exc, ref, "restoring") from None


def _require_delete(conn: PgConn, tables: list[str]) -> None:
    """Restore empties each table before putting the snapshot back: it needs DELETE.

    A merge needs only SELECT, INSERT and UPDATE, so a target whose tables belong to
    another role can be merged into by a user that may not restore; say so before
    anything is changed, with the statement that grants it.
    """
    # schema-qualified: the owner who runs the GRANT may have another search_path
    rows = [conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
        "has_table_privilege(c.oid, 'DELETE') FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.oid = quote_ident(%s)::regclass", (t,)).fetchone()
        for t in tables]
    missing = [str(r[0]) for r in rows if r is not None and not r[1]]
    if missing:
        user = (conn.execute("SELECT quote_ident(current_user)").fetchone() or ("",))[0]
        raise FindingsBlock(
            f"{user} lacks DELETE on {', '.join(missing)}: restore replaces the rows of each "
            f"table with its snapshot; nothing was changed. As the tables' owner: GRANT DELETE "
            f"ON TABLE {', '.join(missing)} TO {user};", code="PRIVILEGE_MISSING")


def _restore(conn: PgConn, job_id: str, force: bool,
             confirm: ConfirmRestore | None) -> RestoreResult:
    if not try_merge_lock(conn):
        raise MergeInProgress("another tcmerge merge or restore is changing this target; "
                              "nothing was restored")
    job = jobs.get_job(PsycopgRunner(conn), job_id, for_update=True)
    snap: dict[str, str] = dict(job.counts.get("snapshot") or {})
    if job.status != "succeeded":
        raise FindingsBlock(f"job {job.job_id} is {job.status}: only a succeeded merge can be "
                            "restored", code="RESTORE_NOT_POSSIBLE")
    if not snap:
        raise FindingsBlock(f"job {job.job_id} ran with --no-snapshot: nothing to restore from",
                            code="RESTORE_NOT_POSSIBLE")
    missing = set(snap.values()) - pg.existing_tables(conn, list(snap.values()))
    if missing:
        raise FindingsBlock(f"the snapshot tables of job {job.job_id} are gone: "
                            + ", ".join(sorted(missing)), code="RESTORE_NOT_POSSIBLE")
    later = [j for j in jobs.list_jobs(PsycopgRunner(conn))
             if j.status == "succeeded" and j.job_id != job.job_id
             and (j.started_at, j.job_id) > (job.started_at, job.job_id)]
    if later:
        stuck = [j.job_id for j in later if not j.counts.get("snapshot")]
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
    _require_delete(conn, list(snap))
    result = RestoreResult(job.job_id)
    for table in snap:
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
    result.changes_discarded = changes_since(conn, job, snap)
    if result.changes_discarded and not force:
        raise FindingsBlock(
            f"the target changed after job {job.job_id} (" + "; ".join(
                f"{t}: {what}" for t, what in result.changes_discarded.items())
            + "); a restore would discard those changes; nothing was changed (--force "
            "restores anyway)", code="RESTORE_TARGET_CHANGED")
    if confirm is not None and not confirm(job, result.changes_discarded):
        conn.rollback()
        raise FindingsBlock("restore cancelled; nothing was changed", code="CANCELLED")
    for table, snapshot in snap.items():
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        cur = conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
            sql.Identifier(table), sql.Identifier(snapshot)))
        result.tables[table] = cur.rowcount
    before = dict(job.counts.get("target_checksums_before") or {})
    now = table_checksums(conn, list(before), recorded_methods(before))
    result.checksums_match = all(now.get(t) == before.get(t) for t in before)
    if not result.checksums_match:
        conn.rollback()
        raise FindingsBlock("the restored tables do not match the checksums recorded before "
                            "the merge; nothing was changed", code="RESTORE_MISMATCH")
    for snapshot in snap.values():
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(snapshot)))
    job.status = "restored"
    job.counts["restored_at"] = jobs.utcnow().isoformat()
    jobs.update_job(PsycopgRunner(conn), job)
    conn.commit()
    return result
