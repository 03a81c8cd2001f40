"""Re-checking a merge's invariants: after every run (inside its transaction) and on demand.

Checks: every source row accounted for (inserted, duplicate or conflict); the
target's row counts equal the job record; per-room msg_id unique in
tc_msgarchive and tc_messages; next_msg_id above every id of its room; no ban
lost (the target's outcast set equals the one recorded); the sources'
checksums unchanged; everything else in the target (other objects, and the rows
of other tables where triggers on the merged tables fired) as the fingerprint
taken before the merge recorded it (``catalog_findings``).

The target's checks are written once, as Core statements (``check_statements``), and
run through a ``Runner`` on PostgreSQL and Oracle alike; the dialect adapters add the
catalog shortcuts where they have them (a unique index makes the duplicate count
unnecessary, a (room, msg_id) index lets the counter check probe per room).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tcmerge.db import server_reason, session
from tcmerge.dburl import DatabaseRef, public_url, same_place
from tcmerge.dialects import adapter_for
from tcmerge.dialects.constructs import pair_digest
from tcmerge.dialects.postgresql.fingerprint import differences
from tcmerge.errors import DatabaseError
from tcmerge.merge import jobs
from tcmerge.merge.checksums import recorded_methods
from tcmerge.merge.plan import TableCounts
from tcmerge.results import Finding, Report, error, info, warning
from tcmerge.schema import tc
from tcmerge.sqlexec import Row, Runner, SaRunner

#: the tables with message ids, and the column naming each row's room
KEYS = {"tc_msgarchive": ("to_jid", "msg_id"), "tc_messages": ("room_jid", "msg_id")}
_MODEL = {t.name: t for t in tc.ALL_TABLES}


def bans_statement() -> sa.ClauseElement:
    """(count, digest) of the distinct (room, member) pairs banned in tc_users."""
    users = _MODEL["tc_users"]
    b = sa.select(users.c.room_jid, users.c.real_jid).where(
        users.c.affiliation == "outcast").distinct().subquery("b")
    return sa.select(sa.func.count(), pair_digest(b.c.room_jid, b.c.real_jid)).select_from(b)


def counter_statement(tables: list[str], *, probe: bool) -> sa.Select[Any]:
    """Up to five rooms whose next_msg_id is not above every msg_id of theirs, each once,
    with the number of such rooms. ``probe``: the highest id of each room by an index
    probe per room (an index on (room, msg_id) serves it); otherwise each table grouped
    by room."""
    rooms = _MODEL["tc_rooms"].alias("r")
    if probe:
        tests = []
        for name in tables:
            x = _MODEL[name].alias("x")
            room = x.c[KEYS[name][0]]
            tests.append(rooms.c.next_msg_id <= sa.select(sa.func.max(x.c.msg_id)).where(
                room == rooms.c.room_jid).scalar_subquery())
        query = sa.select(rooms.c.room_jid, sa.func.count().over()).where(sa.or_(*tests))
    else:
        highest = sa.union_all(*(
            sa.select(_MODEL[n].c[KEYS[n][0]].label("room_jid"),
                      sa.func.max(_MODEL[n].c.msg_id).label("hi")).group_by(
                _MODEL[n].c[KEYS[n][0]]) for n in tables)).subquery("h")
        per_room = sa.select(highest.c.room_jid, sa.func.max(highest.c.hi).label("hi")
                             ).group_by(highest.c.room_jid).subquery("i")
        query = sa.select(rooms.c.room_jid, sa.func.count().over()).join(
            per_room, per_room.c.room_jid == rooms.c.room_jid).where(
            rooms.c.next_msg_id <= per_room.c.hi)
    # a literal: the statement reads the same live and in a rendered script
    return query.order_by(rooms.c.room_jid).limit(sa.literal_column("5"))


def check_statements(tables: list[str], *, unique: frozenset[str] = frozenset(),
                     probe: bool = False) -> list[tuple[str, sa.ClauseElement]]:
    """The verification's queries, in the order ``check_target`` runs them, for every
    dialect: row counts, duplicate ids (not for the tables in ``unique``, which a unique
    index guards), counters (see ``counter_statement``), bans."""
    out: list[tuple[str, sa.ClauseElement]] = [
        (f"count:{n}", sa.select(sa.func.count()).select_from(_MODEL[n])) for n in tables]
    for name, (room, msg_id) in KEYS.items():
        if name in tables and name not in unique:
            t = _MODEL[name]
            groups = sa.select(sa.literal(1)).select_from(t).group_by(
                t.c[room], t.c[msg_id]).having(sa.func.count() > 1).subquery("d")
            out.append((f"unique:{name}", sa.select(sa.func.count()).select_from(groups)))
    with_ids = [n for n in KEYS if n in tables]
    if "tc_rooms" in tables and with_ids:
        out.append(("counters", counter_statement(with_ids, probe=probe)))
    if "tc_users" in tables:
        out.append(("bans", bans_statement()))
    return out


def _shortcuts(run: Runner, tables: list[str]) -> tuple[frozenset[str], bool]:
    """Which tables a unique index guards, and whether every id table has a (room, msg_id)
    index: where the dialect can tell."""
    adapter = adapter_for(run.name)
    unique = set()
    for name, key in KEYS.items():
        query = adapter.unique_key_query(name, key) if name in tables else None
        if query is not None and run.scalar(query):
            unique.add(name)
    probes = [adapter.room_id_index_query(n, KEYS[n][0]) for n in KEYS if n in tables]
    probe = bool(probes) and all(q is not None and run.scalar(q) for q in probes)
    return frozenset(unique), probe


def check_target(run: Runner, counts: dict[str, TableCounts], bans_expected: str | None,
                 database: str, *, exact: bool = True) -> list[Finding]:
    """The invariants that only need the target (and the job's counts), for every dialect.

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
    unique, probe = _shortcuts(run, list(counts))
    for what, statement in check_statements(list(counts), unique=unique, probe=probe):
        kind, _, name = what.partition(":")
        rows = run.rows(statement)
        if kind == "count":
            out += _count(name, int(rows[0][0]), counts[name], exact, where)
        elif kind == "unique" and rows and rows[0][0]:
            out.append(error("VERIFY_DUPLICATE_ID",
                             f"{name}: {rows[0][0]} (room, msg_id) pairs occur more than once",
                             table=name, **where))
        elif kind == "counters" and rows:
            out.append(error("VERIFY_COUNTER",
                             f"{rows[0][1]} room(s) have next_msg_id not above every msg_id: "
                             + ", ".join(str(r[0]) for r in rows), table="tc_rooms", **where))
        elif kind == "bans" and bans_expected is not None:
            out += _bans(rows[0], bans_expected, exact, where)
    return out


def _count(name: str, now: int, c: TableCounts, exact: bool,
           where: dict[str, str]) -> list[Finding]:
    expected = c.read[0] + c.inserted
    if now < expected or (exact and now != expected):
        return [error("VERIFY_COUNT_MISMATCH",
                      f"{name} has {now} rows; the job expects {c.read[0]} existing + "
                      f"{c.inserted} inserted = {expected}", table=name, **where)]
    if now != expected:
        return [info("VERIFY_ROWS_ADDED_SINCE",
                     f"{name} has {now - expected} row(s) more than the job left "
                     "(later merges or the TC service)", table=name, **where)]
    return []


def _bans(row: Row, bans_expected: str, exact: bool, where: dict[str, str]) -> list[Finding]:
    now_bans = f"{row[0]}:{row[1]}"
    have, want = int(row[0]), int(bans_expected.split(":")[0])
    # as many bans or fewer, but not the same ones: one the merge kept was lifted
    if now_bans != bans_expected and (exact or have <= want):
        return [error("VERIFY_BAN_LOST",
                      f"the target's bans ({have}) differ from the bans the merge "
                      f"must keep ({want})", table="tc_users", **where)]
    if now_bans != bans_expected:
        return [warning("VERIFY_BANS_CHANGED_SINCE",
                        f"the target has {have - want} more ban(s) than the job left "
                        "(later merges or the TC service): the digest cannot prove "
                        "that none of the job's bans was lifted", table="tc_users", **where)]
    return []


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


def _reading(ref: DatabaseRef, role: str) -> AbstractContextManager[sa.Connection]:
    """A session on ``ref`` whose digests equal the merge's (any dialect)."""
    return session(ref, role, connect_args=adapter_for(ref).digest_connect_args())


def verify_job(target: DatabaseRef, job_id: str,
               sources: Sequence[DatabaseRef] | None = None, *,
               declared: Callable[[str], DatabaseRef | None] | None = None) -> VerifyReport:
    """Re-check a finished job, on a PostgreSQL or an Oracle target. Sources not given
    are the job's: by the name it recorded where ``declared`` (a topology's databases)
    still has that name at the recorded URL, with its password, else by the recorded
    password-less URL (libpq's PGPASSWORD/.pgpass supply passwords); unreachable
    sources give a warning."""
    adapter = adapter_for(target)
    with _reading(target, "verify") as conn:
        try:
            adapter.consistent_read(conn)  # every check sees one moment of the target
            run = SaRunner(conn)
            job = jobs.get_job(run, job_id)
            report = VerifyReport(job_id=job.job_id)
            if job.status != "succeeded":
                report.findings.append(error(
                    "JOB_NOT_VERIFIABLE", f"job {job.job_id} is {job.status}; only a "
                    "succeeded merge has invariants to check", database=target.label))
                return report
            counts = {name: TableCounts.from_dict(name, c)
                      for name, c in job.counts.get("tables", {}).items()}
            report.findings += check_target(run, counts, job.counts.get("bans_expected"),
                                            target.label, exact=False)
            report.checked += ["accounted", "counts", "unique ids", "counters", "bans"]
            report.findings += catalog_findings(conn, job, target.label)
            report.checked.append("catalog")
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"verifying {target.label} failed: "
                                f"{server_reason(exc, target)}") from None
    report.findings += _check_sources(job, sources, declared)
    report.checked.append("source checksums")
    return report


def source_checksums(ref: DatabaseRef, recorded: dict[str, str]) -> dict[str, str]:
    """``ref``'s checksums of the tables of ``recorded``, by the methods that made those
    values, in one read-only snapshot (any dialect)."""
    adapter = adapter_for(ref)
    with _reading(ref, "verify") as conn:
        adapter.consistent_read(conn)
        run = SaRunner(conn)
        now = {}
        for table, method in recorded_methods(recorded).items():
            row = run.rows(adapter.digest_statement(table, method))[0]
            now[table] = f"{row[0]}:{row[1]}"
        return now


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


def catalog_findings(conn: sa.Connection, job: jobs.JobRecord,
                     database: str) -> list[Finding]:
    """VERIFY_CATALOG_CHANGED per kind of object outside the merged tables that differs
    from the fingerprint the merge took before its first write (see MERGE_KINDS for
    which are errors)."""
    before: dict[str, Any] | None = job.counts.get("catalog_fingerprint")
    where = {"database": database}
    if not before:
        return [info("VERIFY_CATALOG_UNCHECKED",
                     f"job {job.job_id} recorded no fingerprint of the rest of the target "
                     "(made by an older tcmerge): objects outside the merged "
                     "tables were not compared", **where)]
    now = adapter_for(conn.dialect.name).catalog_fingerprint(
        conn, list(before.get("merged", [])), rows="rows" in before.get("kinds", {}))
    if now is None:
        return [info("VERIFY_CATALOG_UNCHECKED", "this database type keeps no fingerprint "
                     "of the objects outside the merged tables", **where)]
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


def _check_sources(job: jobs.JobRecord, given: Sequence[DatabaseRef] | None,
                   declared: Callable[[str], DatabaseRef | None] | None) -> list[Finding]:
    recorded: list[dict[str, Any]] = list(job.inputs.get("sources", []))
    before: list[dict[str, str]] = list(job.counts.get("source_checksums", []))
    target = job.inputs.get("target", {}).get("url")
    out: list[Finding] = []
    for i, entry in enumerate(recorded):
        named = declared(entry["name"]) if declared and entry.get("name") else None
        if given and i < len(given):
            ref = given[i]
        elif named is not None and public_url(named) == entry["url"]:
            ref = named  # the topology's database, its password from there
        else:
            ref = DatabaseRef(make_url(entry["url"]), name=entry.get("name"))
        label = entry.get("label", ref.label)
        if i >= len(before):
            continue
        # the target named among the sources ("merge DB1 into DB2"): the merge wrote into
        # it, so its rows are not the ones it had; the target's checks above cover it
        # (jobs recorded before the mark: the same URL as the target's)
        if entry.get("is_target") or (target and same_place(make_url(entry["url"]),
                                                            make_url(target))):
            out.append(info("VERIFY_SOURCE_IS_TARGET",
                            "this source is the target itself: the merge wrote into it, and "
                            "it is checked as the target", database=label))
            continue
        try:
            now = source_checksums(ref, before[i])
        except (DatabaseError, sa.exc.DBAPIError) as exc:
            reason = exc.message if isinstance(exc, DatabaseError) else server_reason(exc, ref)
            out.append(warning("VERIFY_SOURCE_UNCHECKED",
                               f"could not read source {label} to compare its checksums: "
                               f"{reason}", database=label,
                               hint="give the sources again with --source (passwords)"))
            continue
        found = compare_checksums(label, before[i], now)
        out += found or [info("VERIFY_SOURCE_UNCHANGED", "source checksums unchanged",
                              database=label)]
    return out
