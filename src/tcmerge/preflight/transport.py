"""Can the target server reach each source itself (dblink / database links)?

PostgreSQL: dblink installed or installable in the target and executable by its
user; for each source, the source's pg_hba.conf rules (when readable) evaluated
for the connection the target server would make. dblink refuses a non-superuser's
connection that used no password: a trust/peer rule is found before the merge meets it.

No source password is ever sent here. Without ``--transport dblink`` everything is
judged from the catalogs (DBLINK_NOT_PROBED says so and what they tell). With it, a
live probe is made only by SCRAM pass-through (PostgreSQL 18: ``dblink_fdw`` server
with ``use_scram_passthrough``, see ``tcmerge.links``); where pass-through is not
possible the merge will put the password in dblink's connection string, and
DBLINK_SENDS_PASSWORD warns before anything is done. The decision per source is in
the report (``transports.dblink.sources[].auth``), which the merge's dblink reader
follows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from tcmerge.db import server_reason
from tcmerge.dialects.postgresql.adapter import DBLINK_FUNCTIONS, DblinkFacts, PostgresAdapter
from tcmerge.links import (
    PASSTHROUGH,
    PASSWORD,
    DblinkProbe,
    PassthroughFacts,
    driver_connection,
    is_socket,
    passthrough_facts,
    probe_passthrough,
    probe_session,
)
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
    probe: DblinkProbe | None = None  # None: no live connection was made
    #: how the merge's dblink connection would log in: PASSTHROUGH, PASSWORD, or None
    #: (not planned: no --transport dblink, or the source cannot be reached)
    auth: str | None = None
    passthrough: str | None = None  # why SCRAM pass-through is not used

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.source, "host": self.host, "port": self.port,
                                  "hba": self.hba, "hba_accepts": self.hba_accepts,
                                  "auth": self.auth, "passthrough": self.passthrough,
                                  "probe": None}
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
    passthrough: PassthroughFacts | None = None
    required: bool = False  # --transport dblink

    @property
    def possible(self) -> bool:
        """dblink can carry the merge: only with --transport dblink, where each source has
        a way to log in. Without it, nothing was tried live (a probe would send the
        password), so the automatic choice never falls on dblink."""
        return (self.required and self.facts is not None and self.facts.usable
                and all(p.auth is not None for p in self.paths)
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
                      "GRANT SELECT ON pg_hba_file_rules TO it)")
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
    """Facts, predictions and (pass-through only) live probes for the dblink transport."""
    result = DblinkResult(required=required)
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
    raw = driver_connection(target.conn)
    passthrough = passthrough_facts(raw)
    result.passthrough = passthrough
    with ExitStack() as stack:
        probes = None
        if required and passthrough.blocker is None:
            try:
                probes = stack.enter_context(probe_session(target.ref))
                # tcmerge's own: not another application's session
                result.remote_pids.setdefault(target.facts.server_identity, set()).add(
                    probes.info.backend_pid)
            except psycopg.Error as exc:
                passthrough = replace(passthrough, failure=(
                    f"a session of its own to the target for the probe failed: "
                    f"{server_reason(exc, target.ref)}"))
        _check_paths(adapter, target, sources, result, raw, probes, passthrough, required)
    if not required and result.paths:
        result.findings.append(_not_probed(result, target))
    return result


def _check_paths(adapter: PostgresAdapter, target: Database, sources: Sequence[Database],
                 result: DblinkResult, raw: psycopg.Connection[Any],
                 probes: psycopg.Connection[Any] | None, passthrough: PassthroughFacts,
                 required: bool) -> None:
    assert result.facts is not None and target.facts is not None
    blocker = passthrough.blocker
    for source in sources:
        if not source.connected:
            continue
        host, port = _server_host(source)
        path = SourcePath(source.label, host, port)
        result.paths.append(path)
        if required and blocker is None and probes is not None:
            # no password crosses: the target server logs in with tcmerge's SCRAM keys
            probe = probe_passthrough(probes, source.ref, result.facts.schema, host=host,
                                      port=port)
            if probe.ok:
                path.probe, path.auth = probe, PASSTHROUGH
                if probe.remote_pid is not None:
                    assert source.facts is not None
                    result.remote_pids.setdefault(source.facts.server_identity, set()).add(
                        probe.remote_pid)
            elif probe.authentication and not (probe.passwordless
                                               and not target.facts.superuser):
                # the source refused these SCRAM keys (another secret, another method)
                path.auth = PASSWORD
                path.passthrough = f"the pass-through login was refused: {probe.reason}"
            else:
                path.probe = probe  # the address or the database: a password would not help
        elif required:
            path.auth, path.passthrough = PASSWORD, blocker
        address = (path.probe.client_address if path.probe is not None else None) \
            or _expected_address(target, host)
        verdict, words = _hba_verdict(adapter, source, target, address)
        path.hba = words
        if verdict is not None and not verdict.uncertain:
            path.hba_accepts = verdict.accepted
        result.findings.extend(_path_findings(path, verdict, source, target, required))
        if path.auth == PASSWORD:
            result.findings.append(_sends_password(path, source, target, passthrough))


def _sends_password(path: SourcePath, source: Database, target: Database,
                    facts: PassthroughFacts) -> Finding:
    """DBLINK_SENDS_PASSWORD: the merge will hand this source's password to the target."""
    if facts.server_version < 180000:
        fix = "a PostgreSQL 18 target offers SCRAM pass-through"
    elif facts.fdw_usage is False:
        fix = f"as a superuser in the target database: {facts.grant_hint()}"
    elif facts.client_auth not in ("scram-sha-256", "md5"):
        fix = ("let tcmerge log in to the target with scram-sha-256 (its pg_hba.conf line "
               "for tcmerge's connection)")
    else:
        fix = (f"give {source.ref.url.username or 'the source user'} on the source the same "
               f"SCRAM secret as {facts.user} on the target (as a superuser on the source: "
               "ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...' with the target's verifier from "
               "pg_authid), and a scram-sha-256 line in the source's pg_hba.conf")
    return warning(
        "DBLINK_SENDS_PASSWORD",
        "with --transport dblink the merge sends this source's password to the target "
        f"server {target.label}: dblink_connect gets it in its connection string (a bind "
        "parameter), and a target server that logs statements with their parameters "
        "(log_statement = 'all') writes it to its log. SCRAM pass-through is not used: "
        f"{path.passthrough}. Validation itself sends no password (its only live dblink "
        "attempt is by pass-through)",
        database=source.label,
        hint=f"{fix}; or use --transport copy, which sends no password to any server",
        details=path.as_dict())


def _not_probed(result: DblinkResult, target: Database) -> Finding:
    """DBLINK_NOT_PROBED: what the catalogs tell about dblink, and why no live probe."""
    assert result.passthrough is not None
    refused = sorted({f.database or "" for f in result.findings
                      if f.code in ("HBA_REJECTS", "DBLINK_UNAVAILABLE")})
    if refused:
        verdict = f"the catalogs say it cannot reach {', '.join(refused)}"
    else:
        readable = [p for p in result.paths if p.hba_accepts is not None]
        verdict = ("as far as the catalogs tell it would work (dblink installed, EXECUTE "
                   "granted" + (", the sources' pg_hba.conf rules accept the target server"
                                if readable and len(readable) == len(result.paths) else
                                "; the sources' pg_hba.conf rules are not all readable or "
                                "decisive")
                   + ")")
    blocker = result.passthrough.blocker
    login = ("SCRAM pass-through where the source user's SCRAM secret equals the target "
             "user's (no password sent), else with the source password in its connection "
             "string" if blocker is None else
             f"the source password in its connection string ({blocker})")
    return info(
        "DBLINK_NOT_PROBED",
        f"dblink from the target server to the sources: {verdict}. No live dblink "
        "connection was made, because it would send the source's password to the target "
        f"server, where a server that logs statements could record it. With --transport "
        f"dblink it would log in by {login}",
        database=target.label,
        details={"passthrough": blocker, "sources": [p.as_dict() for p in result.paths]})


def _path_findings(path: SourcePath, verdict: HbaVerdict | None, source: Database,
                   target: Database, required: bool) -> list[Finding]:
    make = error if required else warning
    assert target.facts is not None
    probe = path.probe
    findings: list[Finding] = []
    alt = "" if required else " The binary COPY transport through tcmerge does not need this."
    user = source.ref.url.username or "USER"
    dbname = source.ref.url.database or "DB"
    address = (probe.client_address if probe is not None else None) or \
        _expected_address(target, path.host) or "TARGET-SERVER-ADDRESS"
    hba_line = f"host {dbname} {user} {address}/32 scram-sha-256"
    rejected = verdict is not None and not verdict.uncertain and (
        verdict.rule is None or verdict.rule.method == "reject")
    if probe is not None and probe.ok:
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
    if probe is None:
        return findings  # judged from the catalogs only
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
        "CONNECTION_FAILED": "check the source's user and database name",
    }
    code = probe.code or "DBLINK_UNAVAILABLE"
    if probe.passwordless:
        findings.append(make(
            "DBLINK_UNAVAILABLE",
            "the source's pg_hba.conf asks the target server for no password (trust or "
            "similar): SCRAM pass-through cannot log in there, and dblink refuses a "
            f"connection without password for the non-superuser {target.facts.user}.{alt}",
            database=source.label, hint=hints["DBLINK_UNAVAILABLE"], details=path.as_dict()))
        return findings
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
                 f"{p.probe.client_address or 'the local socket'} (read-only session; "
                 "SCRAM pass-through, no password sent)",
                 database=p.source)
            for p in result.paths if p.probe is not None and p.probe.ok]
