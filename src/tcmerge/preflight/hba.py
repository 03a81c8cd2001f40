"""pg_hba.conf rules evaluated as PostgreSQL does (pure: no connection needed).

PostgreSQL takes the first rule whose connection type, database, user and
address match, and uses its method; ``reject`` or no matching rule refuses the
connection. Supported: local/host/hostssl/hostnossl/hostgssenc/hostnogssenc;
database lists with all, sameuser, samerole/samegroup, replication and regular
expressions (``/...``); user lists with all, ``+role`` and regular expressions;
addresses as CIDR, address + netmask, all, samehost/samenet (loopback only) and
host names (not resolved: the verdict says it is uncertain and the live probe decides).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PASSWORD_METHODS = frozenset({"password", "md5", "scram-sha-256"})
#: methods that ask the client for no password (dblink refuses them for non-superusers)
PASSWORDLESS_METHODS = frozenset({"trust", "peer", "ident", "cert"})


@dataclass(frozen=True)
class HbaRule:
    line_number: int
    type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    address: str | None
    netmask: str | None
    method: str
    error: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HbaRule:
        """A row of pg_hba_file_rules."""
        return cls(
            line_number=int(row["line_number"]),
            type=str(row["type"] or ""),
            databases=tuple(str(d) for d in row["database"] or ()),
            users=tuple(str(u) for u in row["user_name"] or ()),
            address=row["address"],
            netmask=row["netmask"],
            method=str(row["auth_method"] or ""),
            error=row.get("error"),
        )

    @classmethod
    def parse(cls, line: str, line_number: int = 0) -> HbaRule:
        """One pg_hba.conf line (for tests and for files read directly)."""
        tokens = line.split("#", 1)[0].split()
        kind, databases, users = tokens[0], tokens[1].split(","), tokens[2].split(",")
        rest = tokens[3:]
        address = netmask = None
        if kind != "local":
            address, rest = rest[0], rest[1:]
            if "/" in address:
                net = ipaddress.ip_network(address, strict=False)
                address, netmask = str(net.network_address), str(net.netmask)
            elif rest and _is_ip(rest[0]) and _is_ip(address):
                netmask, rest = rest[0], rest[1:]
        return cls(line_number, kind, tuple(databases), tuple(users), address, netmask,
                   rest[0])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HbaConnection:
    """A connection as the server sees it."""

    database: str
    user: str
    address: str | None  # None: a Unix-socket ("local") connection
    ssl: bool = False
    gss: bool = False
    #: roles the user is a member of (for +role and samerole); the user itself is implied
    roles: frozenset[str] = frozenset()

    def describe(self) -> str:
        where = f"host {self.address}" if self.address else "the local socket"
        return f"user {self.user} to database {self.database} from {where}"


@dataclass(frozen=True)
class HbaVerdict:
    rule: HbaRule | None
    #: rules skipped because they could not be evaluated here (host names, samenet)
    uncertain: tuple[HbaRule, ...] = field(default=())

    @property
    def accepted(self) -> bool:
        return self.rule is not None and self.rule.method != "reject"

    @property
    def method(self) -> str | None:
        return self.rule.method if self.rule else None

    @property
    def asks_password(self) -> bool:
        return self.method in PASSWORD_METHODS

    def describe(self) -> str:
        if self.rule is None:
            return "no pg_hba.conf rule matches"
        return f"pg_hba.conf line {self.rule.line_number} ({self.rule.type} ... " \
               f"{self.rule.method}) matches"


def _regex(token: str, value: str) -> bool:
    try:
        return re.search(token[1:], value) is not None
    except re.error:
        return False


def _match_database(tokens: Sequence[str], conn: HbaConnection) -> bool:
    for token in tokens:
        if token == "all" or (token == "sameuser" and conn.database == conn.user):
            return True
        if token in ("samerole", "samegroup") and (
                conn.database in conn.roles or conn.database == conn.user):
            return True
        if token == "replication":
            continue  # tcmerge never opens replication connections
        if token.startswith("/") and _regex(token, conn.database):
            return True
        if token == conn.database:
            return True
    return False


def _match_user(tokens: Sequence[str], conn: HbaConnection) -> bool:
    for token in tokens:
        if token == "all" or token == conn.user:
            return True
        if token.startswith("+") and (token[1:] in conn.roles or token[1:] == conn.user):
            return True
        if token.startswith("/") and _regex(token, conn.user):
            return True
    return False


def _match_address(rule: HbaRule, address: str) -> bool | None:
    """True/False, or None when it cannot be decided here."""
    if rule.address in (None, "all"):
        return True
    client = ipaddress.ip_address(address)
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
        client = client.ipv4_mapped
    if rule.address in ("samehost", "samenet"):
        return True if client.is_loopback else None
    if not _is_ip(rule.address):
        return None  # a host name: PostgreSQL resolves it; the probe decides
    try:
        prefix = (bin(int(ipaddress.ip_address(rule.netmask))).count("1")
                  if rule.netmask else None)
        network = ipaddress.ip_network(
            f"{rule.address}/{prefix}" if prefix is not None else rule.address, strict=False)
    except ValueError:
        return None
    return client.version == network.version and client in network


def evaluate(rules: Iterable[HbaRule], conn: HbaConnection) -> HbaVerdict:
    """The rule PostgreSQL would use for ``conn`` (first match wins)."""
    uncertain: list[HbaRule] = []
    for rule in rules:
        if rule.error:
            continue
        if conn.address is None:
            if rule.type != "local":
                continue
        else:
            if rule.type == "local":
                continue
            if rule.type == "hostssl" and not conn.ssl:
                continue
            if rule.type == "hostnossl" and conn.ssl:
                continue
            if rule.type == "hostgssenc" and not conn.gss:
                continue
            if rule.type == "hostnogssenc" and conn.gss:
                continue
        if not _match_database(rule.databases, conn) or not _match_user(rule.users, conn):
            continue
        if conn.address is not None:
            matched = _match_address(rule, conn.address)
            if matched is None:
                uncertain.append(rule)
                continue
            if not matched:
                continue
        return HbaVerdict(rule, tuple(uncertain))
    return HbaVerdict(None, tuple(uncertain))


def role_tokens(rules: Iterable[HbaRule], database: str) -> set[str]:
    """Role names the rules test membership of (+role users; samerole: the database's)."""
    names: set[str] = set()
    for rule in rules:
        names.update(u[1:] for u in rule.users if u.startswith("+"))
        if any(d in ("samerole", "samegroup") for d in rule.databases):
            names.add(database)
    return names
