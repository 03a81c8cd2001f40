"""Job records in the target (``tcmerge_jobs``): written, listed and read back.

The table comes from ``schema/bookkeeping.py`` (migration 0002); a merge creates
it when absent. Records hold labels and password-less URLs only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from tcmerge import __version__
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ConfigError
from tcmerge.merge import pg
from tcmerge.merge.pg import PgConn
from tcmerge.schema.bookkeeping import tcmerge_jobs

JOBS_TABLE = "tcmerge_jobs"


def new_job_id() -> str:
    """Sortable and short: ``20261124T101500-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ensure_jobs_table(conn: PgConn) -> None:
    """Create tcmerge_jobs unless one is visible on the search path.

    IF NOT EXISTS alone looks only in the schema a new table would go to (the first of
    the path, e.g. a "$user" schema made after the first merge), and would start a
    second, empty history there that hides the first one.
    """
    if pg.existing_tables(conn, [JOBS_TABLE]):
        return
    statement = CreateTable(tcmerge_jobs, if_not_exists=True)
    ddl = str(statement.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    conn.execute(ddl.encode())


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


def write_job(conn: PgConn, job: JobRecord) -> None:
    conn.execute(
        "INSERT INTO tcmerge_jobs (job_id, status, started_at, finished_at, tcmerge_version, "
        "inputs, options, counts, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (job.job_id, job.status, job.started_at, job.finished_at, job.tcmerge_version,
         json.dumps(job.inputs), json.dumps(job.options), json.dumps(job.counts), job.error),
    )


def record_failure(ref: DatabaseRef, job: JobRecord) -> bool:
    """Write a failed job in its own transaction (a new session); False if impossible."""
    try:
        with pg.session(ref, role="jobs") as conn:
            ensure_jobs_table(conn)
            write_job(conn, job)
            conn.commit()
    except Exception:  # the target may be the thing that failed
        return False
    return True


_COLUMNS = ("job_id, status, started_at, finished_at, tcmerge_version, inputs, options, "
            "counts, error")


def _from_row(row: tuple[Any, ...]) -> JobRecord:
    def load(text: str | None) -> dict[str, Any]:
        return dict(json.loads(text)) if text else {}

    return JobRecord(job_id=row[0], status=row[1], started_at=row[2], finished_at=row[3],
                     tcmerge_version=row[4], inputs=load(row[5]), options=load(row[6]),
                     counts=load(row[7]), error=row[8])


def jobs_table_exists(conn: PgConn) -> bool:
    return bool(pg.existing_tables(conn, [JOBS_TABLE]))


def list_jobs(conn: PgConn) -> list[JobRecord]:
    if not jobs_table_exists(conn):
        return []
    rows = conn.execute(f"SELECT {_COLUMNS} FROM tcmerge_jobs ORDER BY started_at, job_id")
    return [_from_row(r) for r in rows.fetchall()]


def get_job(conn: PgConn, job_id: str, *, for_update: bool = False) -> JobRecord:
    """A job by id or unique id prefix; ConfigError (exit 2) when unknown."""
    if not jobs_table_exists(conn):
        raise ConfigError(f"no job {job_id!r}: the target has no job history")
    lock = " FOR UPDATE" if for_update else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM tcmerge_jobs WHERE job_id = %s OR job_id LIKE %s "
        f"ORDER BY job_id{lock}",
        (job_id, job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
    ).fetchall()
    exact = [r for r in rows if r[0] == job_id]
    if exact:
        return _from_row(exact[0])
    if len(rows) == 1:
        return _from_row(rows[0])
    if not rows:
        raise ConfigError(f"no job {job_id!r} in the target's job history")
    raise ConfigError(f"job id {job_id!r} is ambiguous ({len(rows)} jobs match)")


def update_job(conn: PgConn, job: JobRecord) -> None:
    conn.execute("UPDATE tcmerge_jobs SET status = %s, counts = %s WHERE job_id = %s",
                 (job.status, json.dumps(job.counts), job.job_id))


