"""Can the target server reach each source itself (dblink / database links)?

PostgreSQL: dblink installed or installable in the target and executable by its
user; for each source, the source's pg_hba.conf rules (when readable) evaluated
for the connection the target server really makes, and a live probe that opens a
dblink connection and closes it. dblink refuses a non-superuser's connection
that used no password: a trust/peer rule is found before the merge meets it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tcmerge.dialects.postgresql.adapter import DBLINK_FUNCTIONS, DblinkFacts, PostgresAdapter
from tcmerge.links import DblinkProbe, is_socket, probe_dblink
from tcmerge.preflight.context import Database
from tcmerge.preflight.hba import (
    PASSWORDLESS_METHODS,
    HbaConnection,
    HbaRule,
    HbaVerdict,
    evaluate,
    role_tokens,
)
from tcmerge.results import Finding, Severity, error, info, warning


@dataclass
class SourcePath:
    """The server-to-source path for one source."""

    source: str
    host: str | None = None
    port: str | None = None
    hba: str | None = None  # what the rules say, in words
    hba_accepts: bool | None = None  # None: rules unreadable or undecidable
    probe: DblinkProbe | None = None

    @property
    def ok(self) -> bool:
        return self.probe is not None and self.probe.ok

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.source, "host": self.host, "port": self.port,
                                  "hba": self.hba, "hba_accepts": self.hba_accepts}
        if self.probe is not None:
            record["probe"] = {"ok": self.probe.ok, "code": self.probe.code,
                               "reason": self.probe.reason,
                               "address": self.probe.client_address,
                               "read_only": self.probe.read_only}
        return record


@dataclass
class DblinkResult:
    facts: DblinkFacts | None = None
    paths: list[SourcePath] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    remote_pids: dict[str, set[int]] = field(default_factory=dict)  # server identity -> pids

    @property
    def possible(self) -> bool:
        return (self.facts is not None and self.facts.usable
                and all(p.ok for p in self.paths)
                and not any(f.severity is Severity.ERROR for f in self.findings))


def _server_host(source: Database) -> tuple[str | None, str | None]:
    """Where the target server should connect to reach ``source``.

    A Unix-socket directory in the URL is a path on tcmerge's machine: the target
    server reaches such a source over TCP at the address it listens on.
    """
    url = source.ref.url
    port = str(url.port or url.query.get("port") or "") or None
    host = url.query.get("host", url.host)
    if isinstance(host, tuple):
        host = host[0] if host else None  # several hosts: the first
    if not is_socket(host):
        return host, port
    assert source.facts is not None
    listen = [a.strip() for a in str(source.facts.details.get("listen_addresses", "")).split(",")]
    specific = [a for a in listen if a and a not in ("*", "0.0.0.0", "::")]
    if specific:
        return specific[0], str(source.facts.details.get("port") or port or "")
    return host, port


def _expected_address(target: Database, host: str | None) -> str | None:
    """The address a source sees the target server's connection come from, as best known."""
    if host is None or host.startswith("/"):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
    except ValueError:
        if host == "localhost":
            return "127.0.0.1"
    assert target.facts is not None
    addr = target.facts.details.get("server_address")
    return str(addr).split("/")[0] if addr else None


def _hba_verdict(adapter: PostgresAdapter, source: Database, target: Database,
                 address: str | None) -> tuple[HbaVerdict | None, str]:
    assert source.conn is not None and source.facts is not None
    rows = adapter.hba_rows(source.conn)
    if rows is None:
        return None, ("pg_hba.conf rules are not readable by this user (a superuser may "
                      "GRANT SELECT ON pg_hba_file_rules TO it); relying on the live probe")
    rules = [HbaRule.from_row(r) for r in rows]
    user = source.ref.url.username or source.facts.user
    database = source.ref.url.database or source.facts.database
    roles = adapter.role_memberships(source.conn, user, role_tokens(rules, database))
    conn = HbaConnection(database=database, user=user, address=address,
                         ssl=bool(source.facts.details.get("ssl")), roles=frozenset(roles))
    verdict = evaluate(rules, conn)
    return verdict, f"for {conn.describe()}: {verdict.describe()}"


def check_dblink(adapter: PostgresAdapter, target: Database, sources: Sequence[Database],
                 *, required: bool) -> DblinkResult:
    """Facts, predictions and live probes for the dblink transport."""
    result = DblinkResult()
    make = error if required else warning
    assert target.conn is not None and target.facts is not None
    facts = adapter.dblink_facts(target.conn, target.facts)
    result.facts = facts
    user = target.facts.user
    grants = ", ".join(f"FUNCTION {facts.function(s.split('(')[0])}({s.split('(', 1)[1]}"
                       for s in DBLINK_FUNCTIONS[:2])
    if not facts.installed:
        how = ("the user may create it" if facts.can_create else
               "a superuser must install it" if facts.available else
               "the server has no dblink files (install the contrib package)")
        result.findings.append(make(
            "DBLINK_UNAVAILABLE",
            f"the dblink extension is not installed in the target ({how}); the server-to-"
            "server transport cannot be checked or used",
            database=target.label,
            hint=f"as a superuser in the target database: CREATE EXTENSION dblink; "
                 f"GRANT EXECUTE ON {grants} TO {user};"
                 + ("" if required else " (or use --transport copy, which needs no dblink)")))
        return result
    if facts.missing_execute:
        functions = ", ".join(f"FUNCTION {facts.function(s.split('(')[0])}({s.split('(', 1)[1]}"
                              for s in facts.missing_execute)
        result.findings.append(make(
            "PRIVILEGE_MISSING",
            f"{user} may not execute {', '.join(facts.missing_execute)} in the target",
            database=target.label, hint=f"GRANT EXECUTE ON {functions} TO {user};",
            details={"functions": list(facts.missing_execute)}))
        return result
    for source in sources:
        if not source.connected:
            continue
        host, port = _server_host(source)
        path = SourcePath(source.label, host, port)
        result.paths.append(path)
        probe = probe_dblink(target.conn, source.ref, facts, host=host, port=port)
        path.probe = probe
        if probe.ok and probe.remote_pid is not None:
            assert source.facts is not None
            result.remote_pids.setdefault(source.facts.server_identity, set()).add(
                probe.remote_pid)
        address = probe.client_address or _expected_address(target, host)
        verdict, words = _hba_verdict(adapter, source, target, address)
        path.hba = words
        if verdict is not None and not verdict.uncertain:
            path.hba_accepts = verdict.accepted
        result.findings.extend(_path_findings(path, verdict, source, target, required))
    return result


def _path_findings(path: SourcePath, verdict: HbaVerdict | None, source: Database,
                   target: Database, required: bool) -> list[Finding]:
    make = error if required else warning
    assert target.facts is not None and path.probe is not None
    probe = path.probe
    findings: list[Finding] = []
    alt = "" if required else " The binary COPY transport through tcmerge does not need this."
    user = source.ref.url.username or "USER"
    dbname = source.ref.url.database or "DB"
    address = probe.client_address or "TARGET-SERVER-ADDRESS"
    hba_line = f"host {dbname} {user} {address}/32 scram-sha-256"
    rejected = verdict is not None and not verdict.uncertain and (
        verdict.rule is None or verdict.rule.method == "reject")
    if probe.ok:
        # the live connection worked: the rules' prediction cannot block it
        make = info
    if rejected:
        assert verdict is not None
        findings.append(make(
            "HBA_REJECTS",
            f"the source's pg_hba.conf refuses the target server: {path.hba}.{alt}",
            database=source.label,
            hint=f"on the source server, before line "
                 f"{verdict.rule.line_number if verdict.rule else 'the end'}, add: {hba_line}; "
                 "then SELECT pg_reload_conf()",
            details=path.as_dict()))
    elif (verdict is not None and verdict.method in PASSWORDLESS_METHODS
          and not target.facts.superuser):
        findings.append(make(
            "DBLINK_UNAVAILABLE",
            f"{path.hba}: that method asks no password, and dblink refuses a connection "
            f"without password for the non-superuser {target.facts.user}.{alt}",
            database=source.label,
            hint=f"on the source server use a password method for this line, e.g. {hba_line}",
            details=path.as_dict()))
    if probe.ok:
        if probe.read_only is False:
            findings.append(error("DBLINK_UNAVAILABLE",
                                  "the dblink session on the source is not read-only",
                                  database=source.label, details=path.as_dict()))
        return findings
    if any(f.code == probe.code for f in findings) or (
            probe.code == "DBLINK_UNAVAILABLE" and findings):
        return findings
    hints = {
        "HBA_REJECTS": f"on the source server add a pg_hba.conf line such as: {hba_line}",
        "DBLINK_UNAVAILABLE": "give the source user a password and use a password method "
                              f"(scram-sha-256) in the source's pg_hba.conf: {hba_line}",
        "CONNECTION_FAILED": "check the source's user, password and database name",
    }
    if source.ref.url.password is None:
        # PGPASSWORD / .pgpass live on tcmerge's machine: the target server cannot use them
        hints["DBLINK_UNAVAILABLE"] = hints["CONNECTION_FAILED"] = (
            "the source's password comes from tcmerge's side (PGPASSWORD or .pgpass), which "
            "the target server cannot read: put the password in the source URL, or use "
            "--transport copy")
    code = probe.code or "DBLINK_UNAVAILABLE"
    findings.append(make(
        "HBA_REJECTS" if code == "HBA_REJECTS" else "DBLINK_UNAVAILABLE",
        f"the target server could not open a dblink connection to the source: "
        f"{probe.reason}.{alt}",
        database=source.label, hint=hints.get(code, hints["DBLINK_UNAVAILABLE"]),
        details=path.as_dict()))
    return findings


def probe_info(result: DblinkResult) -> list[Finding]:
    """Info findings for the paths that work (where the connection came from)."""
    return [info("DBLINK_OK", f"the target server reached the source by dblink from "
                 f"{p.probe.client_address or 'the local socket'} (read-only session)",
                 database=p.source)
            for p in result.paths if p.probe is not None and p.probe.ok]
