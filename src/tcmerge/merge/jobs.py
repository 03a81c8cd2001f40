"""Job records in the target (``tcmerge_jobs``): written, listed and read back.

The table comes from ``schema/bookkeeping.py`` (migration 0002); a merge creates
it when absent. Records hold labels and password-less URLs only. Every function
takes a ``Runner`` (``tcmerge.sqlexec``) and builds Core statements, so PostgreSQL and
Oracle targets keep one history in one shape; what differs (is the table there, how
to create it) is the dialect adapter's.
"""

from __future__ import annotations

import json
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from tcmerge import __version__
from tcmerge.db import session
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects import adapter_for
from tcmerge.errors import ConfigError
from tcmerge.schema.bookkeeping import tcmerge_jobs
from tcmerge.sqlexec import Runner, SaRunner

JOBS_TABLE = "tcmerge_jobs"
_COLUMNS = ("job_id", "status", "started_at", "finished_at", "tcmerge_version", "inputs",
            "options", "counts", "error")


def new_job_id() -> str:
    """Sortable and short: ``20261124T101500-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def jobs_table_exists(run: Runner) -> bool:
    return bool(run.scalar(adapter_for(run.name).table_visible(JOBS_TABLE)))


def ensure_jobs_table(run: Runner) -> None:
    """Create tcmerge_jobs unless one is visible already.

    PostgreSQL's IF NOT EXISTS alone looks only in the schema a new table would go to
    (the first of the path, e.g. a "$user" schema made after the first merge), and would
    start a second, empty history there that hides the first one.
    """
    if not jobs_table_exists(run):
        run.execute(adapter_for(run.name).create_if_absent(tcmerge_jobs))


@dataclass
class JobRecord:
    job_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    tcmerge_version: str = __version__
    inputs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def counted_inserts(self) -> int:
        """The rows the job's merge counted as inserted, over all tables (a failed job's
        attempt counted them too, then rolled back)."""
        return sum(int(c.get("inserted", 0)) for c in self.counts.get("tables", {}).values())

    @property
    def rows_in_target(self) -> int | None:
        """The rows the target holds from this job: those it inserted when it succeeded;
        none when it failed (its transaction rolled back) or was restored (they were
        taken out again); None when unknown (a job still running)."""
        if self.status == "succeeded":
            return self.counted_inserts
        if self.status in ("failed", "restored"):
            return 0
        return None

    def as_dict(self, *, full: bool = True) -> dict[str, Any]:
        record: dict[str, Any] = {
            "job_id": self.job_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "tcmerge_version": self.tcmerge_version,
            "inputs": self.inputs,
            "error": self.error,
            # what the target holds from the job: a failed job's counts are what its
            # rolled-back attempt counted, not rows in the target
            "rows_in_target": self.rows_in_target,
        }
        if full:
            record["options"] = self.options
            record["counts"] = self.counts
        else:
            record["tables"] = {
                name: {k: v for k, v in c.items() if k in ("inserted", "duplicates",
                                                          "renumbered", "conflicts")}
                for name, c in self.counts.get("tables", {}).items()
            }
        return record


def job_values(job: JobRecord) -> dict[str, Any]:
    """The record as the table's column values (JSON texts, no password)."""
    return {"job_id": job.job_id, "status": job.status, "started_at": job.started_at,
            "finished_at": job.finished_at, "tcmerge_version": job.tcmerge_version,
            "inputs": json.dumps(job.inputs), "options": json.dumps(job.options),
            "counts": json.dumps(job.counts), "error": job.error}


def write_job(run: Runner, job: JobRecord) -> None:
    run.execute(sa.insert(tcmerge_jobs).values(job_values(job)))


def record_failure(ref: DatabaseRef, job: JobRecord) -> bool:
    """Write a failed job in its own transaction (a new session); False if impossible."""
    try:
        with _reading(ref) as conn:
            run = SaRunner(conn)
            ensure_jobs_table(run)
            write_job(run, job)
            conn.commit()
    except Exception:  # the target may be the thing that failed
        return False
    return True


def _text(value: Any) -> str | None:
    """A text column's value (a CLOB may come back as a LOB object)."""
    if value is None:
        return None
    read = getattr(value, "read", None)
    return str(read()) if callable(read) else str(value)


def _from_row(row: tuple[Any, ...]) -> JobRecord:
    def load(value: Any) -> dict[str, Any]:
        text = _text(value)
        return dict(json.loads(text)) if text else {}

    return JobRecord(job_id=row[0], status=row[1], started_at=row[2], finished_at=row[3],
                     tcmerge_version=row[4], inputs=load(row[5]), options=load(row[6]),
                     counts=load(row[7]), error=_text(row[8]))


def _select() -> sa.Select[Any]:
    return sa.select(*(tcmerge_jobs.c[name] for name in _COLUMNS))


def list_jobs(run: Runner) -> list[JobRecord]:
    if not jobs_table_exists(run):
        return []
    rows = run.rows(_select().order_by(tcmerge_jobs.c.started_at, tcmerge_jobs.c.job_id))
    return [_from_row(r) for r in rows]


def get_job(run: Runner, job_id: str, *, for_update: bool = False) -> JobRecord:
    """A job by id or unique id prefix; ConfigError (exit 2) when unknown."""
    if not jobs_table_exists(run):
        raise ConfigError(f"no job {job_id!r}: the target has no job history")
    c = tcmerge_jobs.c
    prefix = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = _select().where(sa.or_(c.job_id == job_id,
                                   c.job_id.like(prefix, escape="\\"))).order_by(c.job_id)
    rows = run.rows(query.with_for_update() if for_update else query)
    exact = [r for r in rows if r[0] == job_id]
    if exact:
        return _from_row(exact[0])
    if len(rows) == 1:
        return _from_row(rows[0])
    if not rows:
        raise ConfigError(f"no job {job_id!r} in the target's job history")
    raise ConfigError(f"job id {job_id!r} is ambiguous ({len(rows)} jobs match)")


def update_job(run: Runner, job: JobRecord) -> None:
    run.execute(sa.update(tcmerge_jobs).where(tcmerge_jobs.c.job_id == job.job_id).values(
        status=job.status, counts=json.dumps(job.counts)))


# -- the job history of a target, for any dialect (jobs list / jobs show) -------------------
def _reading(ref: DatabaseRef) -> AbstractContextManager[sa.Connection]:
    return session(ref, "jobs")


def history(ref: DatabaseRef) -> list[JobRecord]:
    """Every job recorded in the target ``ref``, oldest first (none without a history)."""
    with _reading(ref) as conn:
        return list_jobs(SaRunner(conn))


def find_job(ref: DatabaseRef, job_id: str) -> JobRecord:
    """One job of the target ``ref`` by id or unique prefix (ConfigError when unknown)."""
    with _reading(ref) as conn:
        return get_job(SaRunner(conn), job_id)
