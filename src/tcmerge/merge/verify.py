"""Re-checking a merge's invariants: after every run (inside its transaction) and on demand.

Checks: every source row accounted for (inserted, duplicate or conflict); the
target's row counts equal the job record; per-room msg_id unique in
tc_msgarchive and tc_messages; next_msg_id above every id of its room; no ban
lost (the target's outcast set equals the one recorded); the sources'
checksums unchanged; everything else in the target (other tables and their rows,
functions, triggers, indexes, grants, comments...) as the fingerprint taken before the
merge recorded it (``catalog_findings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.postgresql.fingerprint import catalog_fingerprint, differences
from tcmerge.errors import DatabaseError
from tcmerge.merge import jobs, pg
from tcmerge.merge.checksums import recorded_methods, table_checksums
from tcmerge.merge.pg import PgConn
from tcmerge.merge.plan import TableCounts
from tcmerge.results import Finding, Report, error, info, warning

KEYS = {"tc_msgarchive": ("to_jid", "msg_id"), "tc_messages": ("room_jid", "msg_id")}

BANS_QUERY = (
    "SELECT count(*), coalesce(sum(hashtextextended(ROW(room_jid::text, real_jid::text)::text, "
    "0)::numeric), 0)::text FROM (SELECT DISTINCT room_jid, real_jid FROM tc_users "
    "WHERE affiliation = 'outcast') AS b"
)


def target_bans(conn: PgConn) -> str:
    row = conn.execute(BANS_QUERY).fetchone()
    assert row is not None
    return f"{row[0]}:{row[1]}"


def _has_unique(conn: PgConn, table: str, columns: tuple[str, ...]) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(quote_ident(%s))"
        " AND i.indisunique AND i.indpred IS NULL AND (SELECT array_agg(a.attname::text "
        "ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey)) = %s::text[])",
        (table, sorted(columns)),
    ).fetchone()
    return bool(row and row[0])


def _room_id_index(conn: PgConn, table: str, room: str) -> bool:
    """True when a btree index on (room column, msg_id, ...) serves max(msg_id) per room."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = to_regclass(quote_ident(%s)) "
        "AND am.amname = 'btree' AND i.indpred IS NULL AND i.indexprs IS NULL "
        "AND i.indnatts >= 2 AND (SELECT a.attname::text FROM pg_attribute a "
        "WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) = %s "
        "AND (SELECT a.attname::text FROM pg_attribute a "
        "WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[1]) = 'msg_id')",
        (table, room),
    ).fetchone()
    return bool(row and row[0])


def _counter_check(conn: PgConn, tables: list[str]) -> sql.Composed:
    """Rooms whose next_msg_id is not above every msg_id of theirs: (count, first rooms).

    With an index on (room, msg_id) the highest id of each room is one index probe;
    otherwise every table is grouped by room."""
    if all(_room_id_index(conn, n, KEYS[n][0]) for n in tables):
        tests = [sql.SQL("r.next_msg_id <= (SELECT max(x.msg_id) FROM {} AS x "
                         "WHERE x.{} = r.room_jid)").format(
                             sql.Identifier(n), sql.Identifier(KEYS[n][0])) for n in tables]
        return sql.SQL("SELECT count(*), (array_agg(r.room_jid::text))[1:5] FROM tc_rooms AS r "
                       "WHERE {}").format(sql.SQL(" OR ").join(tests))
    parts = [sql.SQL("SELECT {} AS room_jid, max(msg_id) AS hi FROM {} GROUP BY 1").format(
        sql.Identifier(KEYS[n][0]), sql.Identifier(n)) for n in tables]
    return sql.SQL(
        "SELECT count(*), (array_agg(r.room_jid::text))[1:5] FROM tc_rooms AS r "
        "JOIN ({}) AS i ON i.room_jid = r.room_jid WHERE r.next_msg_id <= i.hi").format(
            sql.SQL(" UNION ALL ").join(parts))


def check_target(conn: PgConn, counts: dict[str, TableCounts], bans_expected: str | None,
                 database: str, *, exact: bool = True) -> list[Finding]:
    """The invariants that only need the target (and the job's counts).

    ``exact``: inside the merge the row counts must equal the job's; later (``verify
    JOB``), other merges and the TC service itself may have added rows, so only fewer
    rows than the job left is an error.
    """
    out: list[Finding] = []
    where = {"database": database}
    for name, c in counts.items():
        if not c.accounted:
            out.append(error("VERIFY_UNACCOUNTED",
                             f"{name}: {c.source_rows} source rows read but {c.inserted} "
                             f"inserted + {c.duplicates} duplicates + {c.conflicts} conflicts",
                             table=name, **where))
        now = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(name))).fetchone()[0])  # type: ignore[index]
        expected = c.read[0] + c.inserted
        if now < expected or (exact and now != expected):
            out.append(error("VERIFY_COUNT_MISMATCH",
                             f"{name} has {now} rows; the job expects {c.read[0]} existing + "
                             f"{c.inserted} inserted = {expected}", table=name, **where))
        elif now != expected:
            out.append(info("VERIFY_ROWS_ADDED_SINCE",
                            f"{name} has {now - expected} row(s) more than the job left "
                            "(later merges or the TC service)", table=name, **where))
    for name, key in KEYS.items():
        if name in counts and not _has_unique(conn, name, key):
            dup = conn.execute(sql.SQL(
                "SELECT count(*) FROM (SELECT 1 FROM {} GROUP BY {}, {} HAVING count(*) > 1) "
                "AS d").format(sql.Identifier(name), *map(sql.Identifier, key))).fetchone()
            if dup and dup[0]:
                out.append(error("VERIFY_DUPLICATE_ID",
                                 f"{name}: {dup[0]} (room, msg_id) pairs occur more than once",
                                 table=name, **where))
    if "tc_rooms" in counts:
        with_ids = [n for n in KEYS if n in counts]
        if with_ids:
            bad = conn.execute(_counter_check(conn, with_ids)).fetchone()
            if bad and bad[0]:
                out.append(error("VERIFY_COUNTER",
                                 f"{bad[0]} room(s) have next_msg_id not above every msg_id: "
                                 + ", ".join(bad[1] or []), table="tc_rooms", **where))
    if bans_expected is not None and "tc_users" in counts:
        now_bans = target_bans(conn)
        have, want = int(now_bans.split(":")[0]), int(bans_expected.split(":")[0])
        # as many bans or fewer, but not the same ones: one the merge kept was lifted
        if now_bans != bans_expected and (exact or have <= want):
            out.append(error("VERIFY_BAN_LOST",
                             f"the target's bans ({have}) differ from the bans the merge "
                             f"must keep ({want})", table="tc_users", **where))
        elif now_bans != bans_expected:
            out.append(warning("VERIFY_BANS_CHANGED_SINCE",
                               f"the target has {have - want} more ban(s) than the job left "
                               "(later merges or the TC service): the digest cannot prove "
                               "that none of the job's bans was lifted", table="tc_users",
                               **where))
    return out


def compare_checksums(label: str, before: dict[str, str], after: dict[str, str]) -> list[Finding]:
    changed = sorted(t for t in before if after.get(t) != before[t])
    if not changed:
        return []
    return [error("VERIFY_SOURCE_CHANGED",
                  f"source changed during or after the merge: {', '.join(changed)}",
                  database=label, details={"tables": changed})]


@dataclass
class VerifyReport(Report):
    job_id: str = ""
    checked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        record = super().as_dict()
        record["job_id"] = self.job_id
        record["checked"] = list(self.checked)
        return record


def verify_job(target: DatabaseRef, job_id: str,
               sources: Sequence[DatabaseRef] | None = None) -> VerifyReport:
    """Re-check a finished job. Sources default to the job's password-less URLs (libpq's
    PGPASSWORD/.pgpass supply passwords); unreachable sources give a warning."""
    with pg.session(target, role="verify") as conn:
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            job = jobs.get_job(conn, job_id)
            report = VerifyReport(job_id=job.job_id)
            if job.status != "succeeded":
                report.findings.append(error(
                    "JOB_NOT_VERIFIABLE", f"job {job.job_id} is {job.status}; only a "
                    "succeeded merge has invariants to check", database=target.label))
                return report
            counts = {name: TableCounts.from_dict(name, c)
                      for name, c in job.counts.get("tables", {}).items()}
            report.findings += check_target(conn, counts, job.counts.get("bans_expected"),
                                            target.label, exact=False)
            report.checked += ["accounted", "counts", "unique ids", "counters", "bans"]
            report.findings += catalog_findings(conn, job, target.label)
            report.checked.append("catalog")
        except psycopg.Error as exc:
            raise pg.wrap(exc, target, "verifying") from None
    report.findings += _check_sources(job, sources)
    report.checked.append("source checksums")
    return report


#: Kinds the merge's own statements create, drop or rebuild: it sets aside and rebuilds
#: the merged tables' indexes and their key constraints (indexes.py), creates snapshot,
#: job and staging tables, and dblink_fdw servers with user mappings (links.py). A
#: difference there may be the merge's doing: an error. The merge issues no statement
#: that changes the other kinds (rows of other tables, functions, triggers, grants,
#: comments...): a difference there was made by someone else after the merge (the TC
#: service, IM and Presence, an administrator), which verify, run long after, cannot
#: tell from a merge defect: a warning (``--strict`` blocks). When the target had
#: enabled triggers or rules on the merged tables, they fired on the merge's inserts and
#: could change anything: every kind is then an error.
MERGE_KINDS = frozenset({"tables", "indexes", "constraints", "foreign servers"})
_SHOWN = 5


def _some(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more"
                                        if len(names) > _SHOWN else "")


def catalog_findings(conn: PgConn, job: jobs.JobRecord, database: str) -> list[Finding]:
    """VERIFY_CATALOG_CHANGED per kind of object outside the merged tables that differs
    from the fingerprint the merge took before its first write (see MERGE_KINDS for
    which are errors)."""
    before: dict[str, Any] | None = job.counts.get("catalog_fingerprint")
    where = {"database": database}
    if not before:
        return [info("VERIFY_CATALOG_UNCHECKED",
                     f"job {job.job_id} recorded no fingerprint of the rest of the target "
                     "(made by an older tcmerge, or on Oracle): objects outside the merged "
                     "tables were not compared", **where)]
    now = catalog_fingerprint(conn, list(before.get("merged", [])))
    found = differences(before, now)
    if not found:
        return [info("VERIFY_CATALOG_UNCHANGED",
                     "every object outside the merged tables (tables and their rows, views, "
                     "sequences, functions, triggers, indexes, constraints, grants, "
                     "comments, extensions) is as it was before the merge", **where)]
    fires = bool(before.get("fires_on_merge"))
    out: list[Finding] = []
    for kind, objects in found.items():
        merge_could = fires or kind in MERGE_KINDS
        what = "; ".join(f"{len(names)} {how}: {_some(names)}"
                         for how, names in objects.items() if names)
        if merge_could:
            hint = ("triggers or rules on the merged tables fired on the merge's inserts"
                    if fires and kind not in MERGE_KINDS else
                    "the merge sets aside and rebuilds the merged tables' indexes and key "
                    "constraints and creates helper tables and links")
            hint += ("; if this was changed on purpose after the merge, it is expected, "
                     "otherwise compare with the target's backup")
        else:
            hint = ("the merge changes none of these: something else changed them after "
                    "it (the Text Conference service, other IM and Presence services, an "
                    "administrator); check that this was intended")
        out.append((error if merge_could else warning)(
            "VERIFY_CATALOG_CHANGED",
            f"{kind} outside the merged tables changed since the merge: {what}",
            hint=hint, details={"kind": kind, **objects}, **where))
    return out


def _check_sources(job: jobs.JobRecord,
                   given: Sequence[DatabaseRef] | None) -> list[Finding]:
    recorded: list[dict[str, Any]] = list(job.inputs.get("sources", []))
    before: list[dict[str, str]] = list(job.counts.get("source_checksums", []))
    out: list[Finding] = []
    for i, entry in enumerate(recorded):
        if given and i < len(given):
            ref = given[i]
        else:
            ref = DatabaseRef(make_url(entry["url"]), name=entry.get("name"))
        label = entry.get("label", ref.label)
        if i >= len(before):
            continue
        try:
            with pg.session(ref, role="verify") as conn:
                pg.begin_read_only(conn)
                now = table_checksums(conn, list(before[i]),
                                      recorded_methods(before[i]))
        except (DatabaseError, psycopg.Error) as exc:
            reason = exc.message if isinstance(exc, DatabaseError) else pg.wrap(
                exc, ref, "reading").message
            out.append(warning("VERIFY_SOURCE_UNCHECKED",
                               f"could not read source {label} to compare its checksums: "
                               f"{reason}", database=label,
                               hint="give the sources again with --source (passwords)"))
            continue
        found = compare_checksums(label, before[i], now)
        out += found or [info("VERIFY_SOURCE_UNCHANGED", "source checksums unchanged",
                              database=label)]
    return out
