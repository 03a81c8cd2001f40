"""Preflight: every check that needs no merge. Read-only everywhere; nothing is changed.

``run_preflight`` connects to every database named (sources forced read-only,
the target too: validation writes nothing), then checks identity, schema,
privileges, the server-to-source path, services, other sessions, data values
and encodings, and space. It returns findings and the facts the merge engine
needs (server versions, encodings, which transports are possible).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from tcmerge.dialects import adapter_for
from tcmerge.dialects.base import DialectAdapter, Session
from tcmerge.dialects.oracle.adapter import OracleAdapter, link_kind
from tcmerge.dialects.postgresql.adapter import PostgresAdapter
from tcmerge.lock import in_progress
from tcmerge.preflight import data
from tcmerge.preflight.context import Database, open_database
from tcmerge.preflight.schema import merge_tables, schema_findings
from tcmerge.preflight.transport import DblinkResult, check_dblink, probe_info
from tcmerge.request import MergeRequest
from tcmerge.results import Finding, Severity, error, info, warning
from tcmerge.topology import UNSTATED

#: error codes after which the data checks are not run (they would meet missing objects)
BLOCKS_DATA_CHECKS = frozenset({
    "CONNECTION_FAILED", "SCHEMA_MISSING_TABLE", "SCHEMA_MISSING_COLUMN",
    "SCHEMA_TYPE_MISMATCH", "SCHEMA_EXTRA_COLUMN", "PRIVILEGE_MISSING", "DUPLICATE_SOURCE",
    "NOTHING_TO_MERGE",
})
RUNNING_STATES = frozenset({"running", "started", "active", "up"})


@dataclass
class Transport:
    possible: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"possible": self.possible, "reason": self.reason, **self.details}


@dataclass
class PreflightResult:
    dialect: str
    databases: list[Database]
    findings: list[Finding] = field(default_factory=list)
    transports: dict[str, Transport] = field(default_factory=dict)
    dblink: DblinkResult | None = None
    #: the tables as this merge moves them (``schema.merge_tables``): the live columns
    merge_tables: tuple[sa.Table, ...] = ()

    @property
    def target(self) -> Database:
        return self.databases[0]

    @property
    def sources(self) -> list[Database]:
        return self.databases[1:]

    def blocks_data_checks(self) -> bool:
        return any(f.severity is Severity.ERROR and f.code in BLOCKS_DATA_CHECKS
                   for f in self.findings)


def run_preflight(request: MergeRequest, stack: ExitStack, *,
                  locked: bool = False) -> PreflightResult:
    """All preflight checks; connections stay open on ``stack`` for later checks.

    ``locked``: the caller holds the target's one-merge lock (``tcmerge.lock``), so no
    other tcmerge command is at work there; otherwise the lock is looked at first."""
    dialect = request.check_dialects()
    adapter = adapter_for(dialect)
    databases = [Database(request.target, "target")] + [
        Database(ref, "source", index=i) for i, ref in enumerate(request.sources)]
    result = PreflightResult(dialect, databases)
    findings = result.findings
    for db in databases:
        failure = open_database(stack, adapter, db)
        if failure is not None:
            findings.append(failure)
    # first: a running merge may hold its tables' exclusive locks (indexes.py), and
    # every later check that reads them would wait until it ends
    in_progress = [] if locked else _merge_lock(adapter, result)
    if in_progress:
        findings.extend(in_progress)
        return result
    findings.extend(_identities(databases))
    findings.extend(_services(request))
    findings.extend(schema_findings(adapter, databases, request.tables))
    if result.target.connected:
        result.merge_tables = merge_tables(request.tables, databases)
    findings.extend(_privileges(adapter, databases))
    if request.snapshot and result.target.connected:
        target = result.target
        assert target.conn is not None and target.facts is not None
        findings.extend(adapter.restore_findings(target.conn, target.facts,
                                                 database=target.label,
                                                 tables=sorted(target.live)))
    findings.extend(_feeders(adapter, request, result))
    _transports(adapter, request, result)
    _data(adapter, request, result)
    findings.extend(_space(adapter, request, result))
    findings.extend(_sessions(adapter, result))
    return result


def _identities(databases: list[Database]) -> list[Finding]:
    """Repeated inputs, by server identity (one rule: each database is one input).

    A source that is the target is "merge the others into it" (TARGET_IS_SOURCE, info),
    once; any database named again is DUPLICATE_SOURCE; a merge whose only input is the
    target has nothing to merge (NOTHING_TO_MERGE). Both errors block before anything
    is written."""
    findings: list[Finding] = []
    seen: dict[str, Database] = {}
    target_named = False
    for db in databases:
        if not db.connected:
            continue
        assert db.facts is not None
        first = seen.get(db.facts.database_identity)
        if first is None:
            seen[db.facts.database_identity] = db
            continue
        db.same_as = first
        if first.role == "target" and not target_named:
            target_named = True
            findings.append(info(
                "TARGET_IS_SOURCE",
                f"{db.title} ({db.label}) is the target database itself: the other sources "
                "are merged into it and its rows stay as they are",
                database=db.label))
        else:
            findings.append(error(
                "DUPLICATE_SOURCE",
                f"{db.title} ({db.label}) is the same database as {first.title} "
                f"({first.label}), named already",
                database=db.label, hint="name each database once"))
    sources = [db for db in databases if db.role == "source"]
    if sources and all(db.connected for db in databases) and all(
            db.same_as is not None and db.same_as.role == "target" for db in sources):
        target = databases[0]
        findings.append(error(
            "NOTHING_TO_MERGE",
            f"the only source is the target itself ({target.label}): there is nothing to "
            "merge into it; nothing was written",
            database=target.label,
            hint="name the other node's database as a --source (the target may be one of "
                 "the sources, beside the others)"))
    return findings


def _services(request: MergeRequest) -> list[Finding]:
    running = sorted(node for node, state in request.services.items()
                     if str(state).lower() in RUNNING_STATES)
    unstated = sorted(node for node, state in request.services.items() if state == UNSTATED)
    group = f" of group {request.group}" if request.group else ""
    stop = ("stop the Text Conference service on every node of the group "
            "(Cisco Unified Serviceability > Control Center - Feature Services) and set "
            "text_conference = \"stopped\" in the topology")
    findings = []
    if running:
        findings.append(error(
            "SERVICE_RUNNING",
            f"the Cisco XCP Text Conference Manager runs on {', '.join(running)}{group}",
            hint=stop, details={"nodes": running}))
    if unstated:
        # the sessions check (ACTIVE_SESSIONS) still sees a service using the databases
        findings.append(warning(
            "SERVICE_STATE_UNKNOWN",
            f"the topology does not say whether the Text Conference service is stopped on "
            f"{', '.join(unstated)}{group}", hint=stop, details={"nodes": unstated}))
    return findings


def _privileges(adapter: DialectAdapter, databases: list[Database]) -> list[Finding]:
    findings: list[Finding] = []
    done: set[str] = set()
    for db in databases:
        if not db.connected:
            continue
        assert db.conn is not None and db.facts is not None
        key = f"{db.facts.database_identity}:{db.role}"
        if key in done:
            continue
        done.add(key)
        findings.extend(adapter.privilege_findings(
            db.conn, db.facts, database=db.label, tables=sorted(db.live),
            target=db.role == "target"))
    return findings


def _other_sources(result: PreflightResult) -> list[Database]:
    """Sources that are not the target itself (and not repeated)."""
    return [db for db in result.sources if db.connected and db.same_as is None]


def _transports(adapter: DialectAdapter, request: MergeRequest,
                result: PreflightResult) -> None:
    target = result.target
    sources = _other_sources(result)
    every_connected = all(db.connected for db in result.databases)
    if adapter.supports_copy:
        result.transports["copy"] = Transport(
            every_connected,
            None if every_connected else "tcmerge cannot connect to every database")
    if not target.connected:
        result.transports["dblink"] = Transport(False, "the target is not reachable")
        return
    if isinstance(adapter, PostgresAdapter):
        if request.transport == "copy":
            # not probed: the probe hands each source's password to the target server
            result.transports["dblink"] = Transport(False, "not checked (--transport copy)")
            return
        dblink = check_dblink(adapter, target, sources, required=request.transport == "dblink")
        copy_possible = result.transports.get("copy", Transport(False, None)).possible
        if request.transport is None and copy_possible:
            # the merge will use the COPY relay: dblink problems only inform
            dblink.findings = [replace(f, severity=Severity.INFO)
                               if f.severity is Severity.WARNING else f
                               for f in dblink.findings]
        result.findings.extend(dblink.findings)
        result.findings.extend(probe_info(dblink))
        result.transports["dblink"] = Transport(
            dblink.possible,
            None if dblink.possible else "; ".join(
                f.message for f in dblink.findings if f.code != "DBLINK_OK")[:500] or None,
            {"installed": dblink.facts.installed if dblink.facts else False,
             "sources": [p.as_dict() for p in dblink.paths]})
        result.dblink = dblink
    elif isinstance(adapter, OracleAdapter):
        assert target.conn is not None
        kind = link_kind(adapter.session_privileges(target.conn))
        result.transports["dblink"] = Transport(
            kind is not None, None if kind else "no privilege to create a database link",
            {"link": kind})


def _feeders(adapter: DialectAdapter, request: MergeRequest,
             result: PreflightResult) -> list[Finding]:
    """What the target does by itself to the merged tables' rows: triggers and rules that
    would fire on the merge's writes (TRIGGER_ON_MERGED_TABLE, an error unless
    --allow-triggers), identity columns that refuse the kept ids (IDENTITY_ALWAYS), and
    sequences feeding a column, which the merge raises above the new maximum."""
    target = result.target
    if not target.connected or not target.live:
        return []
    assert target.conn is not None
    out: list[Finding] = []
    for f in adapter.feeders(target.conn, sorted(target.live)):
        if f.kind in ("trigger", "rule"):
            make = warning if request.allow_triggers else error
            out.append(make(
                "TRIGGER_ON_MERGED_TABLE",
                f"{f.kind} {f.name} on {f.table} ({f.detail}) would fire on every row the "
                "merge writes" + (" (--allow-triggers)" if request.allow_triggers else ""),
                database=target.label, table=f.table,
                hint=(f.remedy or f"ALTER TABLE {f.table} DISABLE {f.kind.upper()} {f.name}; "
                      "merge; then ENABLE it again") + " (or --allow-triggers to let it fire)",
                details={"kind": f.kind, "name": f.name, "detail": f.detail}))
        elif f.kind == "identity always":
            out.append(error(
                "IDENTITY_ALWAYS",
                f"{f.table}.{f.column} is GENERATED ALWAYS AS IDENTITY: the merge keeps and "
                "renumbers ids itself and cannot write them into it",
                database=target.label, table=f.table,
                hint=f.remedy or f"ALTER TABLE {f.table} ALTER COLUMN {f.column} SET "
                     "GENERATED BY DEFAULT (the sequence is raised above the merged ids)"))
        elif f.kind == "sequence":
            out.append(info(
                "SEQUENCE_RAISED",
                f"sequence {f.name} feeds {f.table}.{f.column}: the merge sets it above the "
                "column's new maximum, in its transaction",
                database=target.label, table=f.table,
                details={"sequence": f.name, "column": f.column}))
        elif f.kind == "identity":
            # a sequence the merge cannot raise in its transaction (Oracle: DDL commits)
            out.append(warning(
                "SEQUENCE_NOT_RAISED",
                f"{f.table}.{f.column} is an identity column ({f.name}): after the merge its "
                "next value may be one the merge wrote; raise it by hand",
                database=target.label, table=f.table, hint=f.remedy or None,
                details={"sequence": f.name, "column": f.column}))
    return out


def _data(adapter: DialectAdapter, request: MergeRequest, result: PreflightResult) -> None:
    target = result.target
    for source in _other_sources(result):
        if source is target:
            continue
        result.findings.extend(data.invalid_values(adapter, source, request.tables))
        result.findings.extend(data.duplicate_keys(adapter, source, request.tables))
        if target.connected:
            result.findings.extend(data.invalid_encoding(adapter, source, target,
                                                         request.tables))


def _space(adapter: DialectAdapter, request: MergeRequest,
           result: PreflightResult) -> list[Finding]:
    target = result.target
    if not target.connected:
        return []
    assert target.conn is not None
    names = [t.name for t in request.tables]
    incoming = 0
    for source in _other_sources(result):
        assert source.conn is not None
        incoming += sum(adapter.table_bytes(source.conn, names).values())
    snapshot = sum(adapter.table_bytes(target.conn, adapter.snapshot_tables(names)).values()
                   ) if request.snapshot else 0
    needed = incoming + snapshot
    free = adapter.free_bytes(target.conn)
    details = {"incoming_bytes": incoming, "snapshot_bytes": snapshot, "needed_bytes": needed,
               "free_bytes": free}
    if free is not None and needed > free:
        return [error("SPACE_LOW",
                      f"the merge needs about {_size(needed)} in the target, which can hold "
                      f"{_size(free)} more", database=target.label,
                      hint="raise the user's quota or add space to its tablespace",
                      details=details)]
    where = "" if free is None else f" of {_size(free)} available"
    return [info("SPACE_ESTIMATE",
                 f"the merge adds at most about {_size(incoming)} to the target"
                 + (f" and its snapshot {_size(snapshot)}" if snapshot else "") + where
                 + ("" if free is not None else
                    "; the server does not report free disk space, make sure it is there"),
                 database=target.label, details=details)]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


#: A session must still be there after this many looks, this far apart, to count: a
#: client that has just closed its connection leaves a backend that exits a moment later.
SESSION_LOOKS = 3
SESSION_LOOK_INTERVAL = 0.2


def _lasting_sessions(adapter: DialectAdapter, conn: sa.Connection,
                      exclude: set[int]) -> list[Session] | None:
    sessions = adapter.other_sessions(conn, exclude)
    for _ in range(SESSION_LOOKS - 1):
        if not sessions:
            break
        time.sleep(SESSION_LOOK_INTERVAL)
        again = adapter.other_sessions(conn, exclude)
        if again is None:
            break
        still = {s.pid for s in again}
        sessions = [s for s in sessions if s.pid in still]
    return sessions


def _merge_lock(adapter: DialectAdapter, result: PreflightResult) -> list[Finding]:
    """MERGE_IN_PROGRESS: another tcmerge merge or restore holds the target's lock."""
    target = result.target
    if not target.connected or target.conn is None:
        return []
    if adapter.merge_in_progress(target.conn):
        return [in_progress(target.ref, adapter.merge_lock_holders(target.conn))]
    return []


def _sessions(adapter: DialectAdapter, result: PreflightResult) -> list[Finding]:
    """ACTIVE_SESSIONS: others connected to a source or the target (not tcmerge's own)."""
    own: dict[str, set[int]] = {}
    for db in result.databases:
        if db.connected and db.facts is not None and db.facts.backend_pid is not None:
            own.setdefault(db.facts.server_identity, set()).add(db.facts.backend_pid)
    if result.dblink is not None:
        for identity, pids in result.dblink.remote_pids.items():
            own.setdefault(identity, set()).update(pids)
    findings: list[Finding] = []
    for db in result.databases:
        if not db.connected or db.same_as is not None:
            continue
        assert db.conn is not None and db.facts is not None
        sessions = _lasting_sessions(adapter, db.conn,
                                     own.get(db.facts.server_identity, set()))
        if sessions is None:
            findings.append(info("ACTIVE_SESSIONS",
                                 "the server does not show other sessions to this user; "
                                 "make sure no application uses the database",
                                 database=db.label))
            continue
        if not sessions:
            continue
        apps = sorted({s.application or "(not visible)" for s in sessions})
        addrs = sorted({s.address or "local socket" for s in sessions})
        # An error, as Cisco's validation fails while the TC service is connected:
        # a session writing during the merge would break "fully merged or unchanged".
        findings.append(error(
            "ACTIVE_SESSIONS",
            f"{len(sessions)} other session(s) connected to the {db.title}: applications "
            f"{', '.join(repr(a) for a in apps)} from {', '.join(addrs)}",
            database=db.label, count=len(sessions),
            hint="stop the Text Conference service and other clients before merging",
            details={"sessions": [s.describe() for s in sessions]}))
    return findings


__all__ = ["PreflightResult", "Transport", "run_preflight"]
