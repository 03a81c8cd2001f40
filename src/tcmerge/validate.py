"""``validate``: preflight plus the data checks, changing nothing anywhere.

``validate(request, data_checks=...)`` runs every preflight check first
(connections, identity, schema, privileges, pg_hba and dblink, services,
sessions, values, encodings, space). The data-conflict analysis that needs
both sides' rows (ROOM_CONFLICT, MSG_ID_COLLISION, ...) belongs to the merge
engine, which stages the data inside a transaction and rolls it back; it is
passed in as ``data_checks`` and runs only when nothing blocks connectivity or
schema. ``choose_transport`` turns the report into the transport the merge uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

from tcmerge.dialects import adapter_class
from tcmerge.errors import ConfigError
from tcmerge.lock import target_lock
from tcmerge.preflight import BLOCKS_DATA_CHECKS, PreflightResult, run_preflight
from tcmerge.request import MergeRequest
from tcmerge.results import Finding, Report, Severity, info

log = logging.getLogger(__name__)

#: the merge engine's analysis: (request, report so far) -> more findings
DataChecks = Callable[[MergeRequest, "ValidationReport"], list[Finding]]


@dataclass
class ValidationReport(Report):
    """Findings plus the facts the merge needs. ``ok`` is False when a finding blocks."""

    job_id: str | None = None
    dialect: str = ""
    databases: list[dict[str, Any]] = field(default_factory=list)
    transports: dict[str, dict[str, Any]] = field(default_factory=dict)
    requested_transport: str | None = None
    data_checked: bool = False
    #: the tables as the merge moves them (the inputs' live columns; not in the JSON)
    merge_tables: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def transport(self) -> str | None:
        """The transport the merge would use (None when none is possible)."""
        try:
            return choose_transport(self, self.requested_transport)
        except ConfigError:
            return None

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def as_dict(self) -> dict[str, Any]:
        record = super().as_dict()
        record.update(
            job_id=self.job_id,
            dialect=self.dialect,
            databases=self.databases,
            transports=self.transports,
            transport=self.transport,
            data_checked=self.data_checked,
        )
        return record


def choose_transport(report: ValidationReport, requested: str | None) -> str:
    """``"dblink"`` or ``"copy"``: the requested one, else the first possible.

    PostgreSQL prefers the binary COPY relay (faster, and it needs neither dblink
    nor server-to-server pg_hba rules); Oracle has only its database links
    (reported as ``"dblink"``). Raises ConfigError when the requested transport is
    not offered by the dialect or nothing is possible.
    """
    offered = report.transports
    if requested is not None:
        if requested not in offered:
            raise ConfigError(f"--transport {requested} is not available for "
                              f"{report.dialect or 'this database type'}")
        return requested
    for name in ("copy", "dblink"):
        if offered.get(name, {}).get("possible"):
            return name
    raise ConfigError("no transport can reach every source: see the validation findings")


def _database_facts(result: PreflightResult) -> list[dict[str, Any]]:
    facts = []
    for db in result.databases:
        record: dict[str, Any] = {"database": db.label, "role": db.title,
                                  "connected": db.connected}
        if db.facts is not None:
            record.update(db.facts.as_dict())
            record["database"] = db.label
            record["database_name"] = db.facts.database
        if db.same_as is not None:
            record["same_as"] = db.same_as.title
        record["tables"] = sorted(db.live)
        facts.append(record)
    return facts


def validate(request: MergeRequest, *, data_checks: DataChecks | None = None,
             locked: bool = False) -> ValidationReport:
    """Validate a merge request; nothing is written anywhere.

    Holds the target's one-merge lock shared throughout (see ``tcmerge.lock``), unless
    ``locked``: the caller (run) holds it already. Raises UnsupportedDatabaseError /
    MixedDatabaseTypesError (exit 2) before any connection for MS SQL or mixed inputs.
    """
    dialect = request.check_dialects()
    log.info("validating: target %s, sources %s", request.target.label,
             ", ".join(ref.label for ref in request.sources))
    if request.transport is not None and request.transport not in adapter_class(
            dialect).transports:
        raise ConfigError(f"--transport {request.transport} is not available for "
                          f"{dialect} databases")
    if locked:
        return _validate(request, data_checks, locked=True)
    with target_lock(request.target, exclusive=False) as lock:
        if lock.refusal is not None:
            # nothing else is asked of any server: it could wait on the merge's locks
            return ValidationReport(findings=[lock.refusal], strict=request.strict,
                                    dialect=dialect, requested_transport=request.transport)
        return _validate(request, data_checks, locked=lock.held)


def _validate(request: MergeRequest, data_checks: DataChecks | None,
              *, locked: bool) -> ValidationReport:
    with ExitStack() as stack:
        log.info("preflight: connectivity, identities, schema, privileges, transports, "
                 "space, sessions")
        result = run_preflight(request, stack, locked=locked)
        for db in result.databases:
            if db.conn is not None:
                db.conn.rollback()
    findings = list(result.findings)
    if request.topology is not None:
        from tcmerge.topology import load_topology, structure_errors

        # the file run writes the merged target into: refused while it breaks HA rules
        findings += structure_errors(load_topology(request.topology))
    report = ValidationReport(
        findings=findings,
        strict=request.strict,
        dialect=result.dialect,
        databases=_database_facts(result),
        transports={name: t.as_dict() for name, t in result.transports.items()},
        requested_transport=request.transport,
        merge_tables=result.merge_tables,
    )
    if data_checks is not None:
        if result.blocks_data_checks():
            codes = sorted({f.code for f in result.findings
                            if f.severity is Severity.ERROR and f.code in BLOCKS_DATA_CHECKS})
            report.findings.append(info(
                "DATA_NOT_CHECKED",
                "the merge's data analysis (room conflicts, id collisions) was skipped "
                f"because of {', '.join(codes)}"))
        else:
            log.info("data analysis: rooms, ids and values of every input")
            report.findings.extend(data_checks(analysis_request(request, report), report))
            report.data_checked = True
    log.info("validation %s: %d finding(s); transport %s",
             "passed" if report.ok else "failed", len(report.findings),
             report.transport or "none possible")
    return report


def analysis_request(request: MergeRequest, report: ValidationReport) -> MergeRequest:
    """The request the data analysis stages with: by the COPY relay where dblink would
    hand the source passwords to the target server (DBLINK_SENDS_PASSWORD), since
    validation sends none, and neither does run before its question; the merge itself
    reads through dblink as requested."""
    if request.transport != "dblink" or "DBLINK_SENDS_PASSWORD" not in report.codes() \
            or not report.transports.get("copy", {}).get("possible"):
        return request
    report.findings.append(info(
        "DBLINK_NOT_PROBED",
        "the data analysis read the sources by the COPY relay: through dblink it would "
        "already send their passwords to the target server (DBLINK_SENDS_PASSWORD); the "
        "merge itself reads through dblink"))
    return replace(request, transport="copy")
