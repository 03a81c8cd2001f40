"""The cluster topology file (TOML): cluster, databases, presence redundancy groups, nodes.

Example::

    [cluster]
    name = "cup"
    domain = "example.com"
    id = "cup"                      # cluster id used in the chat node alias

    [databases.tcdb1]
    url = "postgresql+psycopg://tcuser@db1:5432/tcdb1"
    password_env = "TCDB1_PASSWORD"

    [databases.tcdb2]
    type = "postgresql"             # postgresql | oracle | mssql
    host = "db2"
    port = 5432
    name = "tcdb2"
    user = "tcuser"
    password_env = "TCDB2_PASSWORD"

    [groups.sub1]
    high_availability = true
    mode = "balanced"               # balanced | active-standby
    nodes = ["1A", "1B"]

    [nodes.1A]
    id = 1
    group = "sub1"
    database = "tcdb1"
    services = { text_conference = "stopped" }   # or: text_conference = "stopped"
    users = ["andy"]
    aliases = ["chat.example.com"]

Groups, nodes and databases may also be written as arrays of tables with a
``name`` key (``[[nodes]] name = "1A"``; a database entry then names its
database with ``database = "tcdb2"``). A malformed file is a ConfigError
(exit 2); ``check_topology`` reports the HA rules of reference/ha-model.md as
findings (exit 1 when any is an error).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from sqlalchemy.engine import URL
from tomlkit.exceptions import TOMLKitError

from tcmerge.config import read_secret
from tcmerge.dburl import DatabaseRef, mask_text, parse_database
from tcmerge.errors import ConfigError, TcmergeError
from tcmerge.ha.states import CRITICAL_SERVICES, SERVICE_ALIASES, critical_service
from tcmerge.results import Finding, Report, Severity, error, info, warning

log = logging.getLogger(__name__)

MAX_NODES = 6
MAX_GROUP_NODES = 2
#: "at most 3 PRGs per cluster" (reference/ha-model.md, Topology)
MAX_GROUPS = 3
MODES = ("balanced", "active-standby")
SERVICE_STATES = ("running", "stopped")
#: Service keys a node may carry directly (``text_conference = "stopped"``), or in its
#: ``services`` table: the HA model's critical services, ``router`` for ``xcp_router`` too
SERVICE_KEYS = (*CRITICAL_SERVICES, *SERVICE_ALIASES)
DATABASE_TYPES = {
    "postgresql": ("postgresql+psycopg", 5432),
    "oracle": ("oracle+oracledb", 1521),
    "mssql": ("mssql+pyodbc", 1433),
}
MSSQL_ODBC_DRIVER = "ODBC Driver 18 for SQL Server"
#: State of a service the file does not mention: IM and Presence runs TC on every node.
DEFAULT_SERVICE_STATE = "running"
#: What validation is told of a node whose entry does not mention text_conference.
UNSTATED = "not stated"


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    url: str | None = None
    type: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password_env: str | None = None

    @property
    def dialect(self) -> str:
        if self.url is not None:
            return parse_database(self.url, name=self.name).dialect
        assert self.type is not None
        return self.type

    def ref(self, environ: Mapping[str, str] | None = None) -> DatabaseRef:
        """A DatabaseRef named after the entry; the password comes from ``password_env``."""
        if self.url is not None:
            ref = parse_database(self.url, name=self.name)
        else:
            assert self.type is not None
            drivername, default_port = DATABASE_TYPES[self.type]
            query: dict[str, str] = {}
            database = self.database
            if self.type == "oracle":
                query = {"service_name": self.database or ""}
                database = None
            elif self.type == "mssql":
                query = {"driver": MSSQL_ODBC_DRIVER}
            url = URL.create(drivername, username=self.user, host=self.host,
                             port=self.port or default_port, database=database, query=query)
            ref = DatabaseRef(url=url, name=self.name)
        if self.password_env:
            secret = read_secret(self.password_env, environ)
            if secret:
                ref = ref.with_password(secret)
        return ref


@dataclass(frozen=True)
class GroupSpec:
    name: str
    high_availability: bool
    mode: str
    nodes: tuple[str, ...]
    declared_nodes: bool = True  # False: derived from the nodes' ``group`` keys


@dataclass(frozen=True)
class NodeSpec:
    name: str
    id: int
    group: str | None
    database: str | None
    services: Mapping[str, str] = field(default_factory=dict)
    users: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def text_conference(self) -> str:
        return self.services.get("text_conference", DEFAULT_SERVICE_STATE)


@dataclass(frozen=True)
class Topology:
    cluster_name: str
    domain: str
    cluster_id: str
    persistent_chat: bool
    databases: Mapping[str, DatabaseSpec]
    groups: Mapping[str, GroupSpec]
    nodes: Mapping[str, NodeSpec]
    path: Path | None = None

    # -- names ---------------------------------------------------------------------
    def generated_alias(self, node: str) -> str:
        """``conference-<nodeId>-<clusterId>.<domain>``."""
        return f"conference-{self.node(node).id}-{self.cluster_id}.{self.domain}"

    def aliases(self, node: str) -> tuple[str, ...]:
        """Every chat alias of a node: the generated one first, then the extra ones."""
        return (self.generated_alias(node), *self.node(node).aliases)

    def node(self, name: str) -> NodeSpec:
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(
                f"unknown node {name!r}; the topology has {', '.join(self.nodes) or 'none'}"
            ) from None

    def group(self, name: str) -> GroupSpec:
        try:
            return self.groups[name]
        except KeyError:
            raise ConfigError(
                f"unknown group {name!r}; the topology has {', '.join(self.groups) or 'none'}"
            ) from None

    def user_jid(self, user: str) -> str:
        return user if "@" in user else f"{user}@{self.domain}"

    # -- what validate/run take -------------------------------------------------------
    def database_ref(self, name: str, environ: Mapping[str, str] | None = None) -> DatabaseRef:
        try:
            spec = self.databases[name]
        except KeyError:
            raise ConfigError(
                f"unknown database {mask_text(name)!r}; the topology declares "
                f"{', '.join(self.databases) or 'none'}"
            ) from None
        return spec.ref(environ)

    def declared_name(self, ref: DatabaseRef) -> str | None:
        """The name of the one declared database at the same place as ``ref`` (database
        type, host, port, database or service name; user and password aside), else None."""
        def place(r: DatabaseRef) -> tuple[Any, ...]:
            url = r.url
            port = url.port or DATABASE_TYPES.get(r.dialect, ("", None))[1]
            return (r.dialect, (url.host or "").lower(), port, url.database,
                    url.query.get("service_name"))

        found = []
        for name, spec in self.databases.items():
            try:
                if place(spec.ref({})) == place(ref):
                    found.append(name)
            except ConfigError:
                continue
        return found[0] if len(found) == 1 else None

    def group_nodes(self, group: str) -> tuple[str, ...]:
        return self.group(group).nodes

    def group_sources(self, group: str) -> list[str]:
        """The database names assigned to the group's nodes, in node order, no repeats."""
        sources: list[str] = []
        for node in self.group_nodes(group):
            db = self.node(node).database
            if db is None:
                raise ConfigError(f"node {node} of group {group} has no database assigned")
            if db not in sources:
                sources.append(db)
        return sources

    def stated_text_conference_states(self, group: str) -> dict[str, str]:
        """As the file states them (``UNSTATED`` where it does not): what validation
        checks (the HA model's default does not say that a service runs)."""
        return {n: self.node(n).services.get("text_conference", UNSTATED)
                for n in self.group_nodes(group)}

    def node_of_alias(self, alias: str) -> str | None:
        for name in self.nodes:
            if alias in self.aliases(name):
                return name
        return None


# --------------------------------------------------------------------------- loading


def _entries(raw: Any, what: str) -> list[tuple[str, dict[str, Any]]]:
    """Tables keyed by name, or an array of tables with a ``name`` key."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        out = []
        for key, value in raw.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{what}.{key} must be a table")
            out.append((str(key), value))
        return out
    if isinstance(raw, list):
        out = []
        for i, value in enumerate(raw):
            if not isinstance(value, dict) or "name" not in value:
                raise ConfigError(f"{what}[{i}] must be a table with a name")
            out.append((str(value["name"]), {k: v for k, v in value.items() if k != "name"}))
        return out
    raise ConfigError(f"{what} must be tables keyed by name or an array of tables")


def _str(table: Mapping[str, Any], key: str, where: str, *, required: bool = False
         ) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _str_list(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _database(name: str, table: dict[str, Any]) -> DatabaseSpec:
    where = f"databases.{name}"
    _unknown_keys(table, {"url", "type", "host", "port", "name", "database", "user",
                          "password_env"}, where)
    url = _str(table, "url", where)
    if url is not None:
        both = sorted(set(table) & {"type", "host", "port", "name", "database", "user"})
        if both:
            raise ConfigError(f"{where}: give either url or type/host/port/name/user, not "
                              f"both (url and {', '.join(both)})")
        try:
            parsed = parse_database(url, name=name)
        except TcmergeError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        if parsed.url.password:  # never echoes the URL
            raise ConfigError(f"{where}: put no password in a topology URL; use password_env")
        return DatabaseSpec(name, url=url, password_env=_str(table, "password_env", where))
    db_type = (_str(table, "type", where, required=True) or "").lower()
    if db_type in ("postgres", "pg"):
        db_type = "postgresql"
    if db_type not in DATABASE_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(DATABASE_TYPES)}")
    port = table.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ConfigError(f"{where}: port must be a TCP port number")
    return DatabaseSpec(
        name, type=db_type, host=_str(table, "host", where, required=True), port=port,
        database=_str(table, "name", where) or _str(table, "database", where),
        user=_str(table, "user", where), password_env=_str(table, "password_env", where),
    )


def parse_topology(data: Mapping[str, Any], path: Path | None = None) -> Topology:
    """Build a Topology from parsed TOML; structural problems are ConfigErrors."""
    _unknown_keys(data, {"cluster", "databases", "groups", "nodes"}, "topology")
    cluster = data.get("cluster")
    if not isinstance(cluster, dict):
        raise ConfigError("topology: a [cluster] table is required")
    _unknown_keys(cluster, {"name", "domain", "id", "cluster_id", "persistent_chat"}, "cluster")
    domain = _str(cluster, "domain", "cluster", required=True)
    cluster_id = _str(cluster, "id", "cluster") or _str(cluster, "cluster_id", "cluster") \
        or _str(cluster, "name", "cluster")
    if cluster_id is None:
        raise ConfigError("cluster: id (the cluster id used in chat aliases) is required")
    name = _str(cluster, "name", "cluster") or cluster_id
    persistent_chat = cluster.get("persistent_chat", True)
    if not isinstance(persistent_chat, bool):
        raise ConfigError("cluster: persistent_chat must be true or false")

    databases = {n: _database(n, t) for n, t in _entries(data.get("databases"), "databases")}

    nodes: dict[str, NodeSpec] = {}
    for node_name, table in _entries(data.get("nodes"), "nodes"):
        where = f"nodes.{node_name}"
        _unknown_keys(table, {"id", "group", "database", "services", "users", "aliases",
                              *SERVICE_KEYS}, where)
        if node_name in nodes:
            raise ConfigError(f"{where}: declared twice")
        node_id = table.get("id")
        if isinstance(node_id, bool) or not isinstance(node_id, int) or node_id < 0:
            raise ConfigError(f"{where}: id must be a non-negative integer")
        services = table.get("services", {})
        if not isinstance(services, dict):
            raise ConfigError(f"{where}: services must be a table such as "
                              '{ text_conference = "stopped" }')
        # The contract's short form: text_conference = "stopped" on the node itself.
        direct = {k: table[k] for k in SERVICE_KEYS if k in table}
        stated: dict[str, str] = {}
        for key, state in [*services.items(), *direct.items()]:
            # one name per service: the simulation ignored ``router`` (its xcp_router)
            service = critical_service(key)
            if service is None:
                raise ConfigError(f"{where}: unknown service {key!r}; the critical services "
                                  f"are {', '.join(SERVICE_KEYS)}")
            if service in stated:
                raise ConfigError(f"{where}: service {service} is given twice")
            if state not in SERVICE_STATES:
                raise ConfigError(f"{where}: service {key} must be "
                                  f"{' or '.join(SERVICE_STATES)}, not {state!r}")
            stated[service] = state
        services = stated
        nodes[node_name] = NodeSpec(
            name=node_name, id=node_id, group=_str(table, "group", where),
            database=_str(table, "database", where), services=dict(services),
            users=_str_list(table, "users", where), aliases=_str_list(table, "aliases", where),
        )

    groups: dict[str, GroupSpec] = {}
    for group_name, table in _entries(data.get("groups"), "groups"):
        where = f"groups.{group_name}"
        _unknown_keys(table, {"high_availability", "mode", "nodes"}, where)
        if group_name in groups:
            raise ConfigError(f"{where}: declared twice")
        ha = table.get("high_availability", False)
        if not isinstance(ha, bool):
            raise ConfigError(f"{where}: high_availability must be true or false")
        mode = str(table.get("mode", "balanced")).lower().replace("/", "-").replace("_", "-")
        if mode not in MODES:
            raise ConfigError(f"{where}: mode must be one of {', '.join(MODES)}")
        declared = "nodes" in table
        members = _str_list(table, "nodes", where) if declared else tuple(
            n.name for n in nodes.values() if n.group == group_name)
        groups[group_name] = GroupSpec(group_name, ha, mode, members, declared)
    # groups named only by nodes
    for node in nodes.values():
        if node.group is not None and node.group not in groups:
            raise ConfigError(f"nodes.{node.name}: group {node.group!r} is not declared "
                              "under [groups]")
    return Topology(name, domain or "", cluster_id, persistent_chat, databases, groups, nodes,
                    path)


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read and parse a topology file; ConfigError (exit 2) when it cannot be used."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"topology file {file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read topology file {file}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"topology file {file} is not valid TOML: {exc}") from None
    return parse_topology(data, file)


# --------------------------------------------------------------------------- writing


def assign_database(path: str | os.PathLike[str], group: str, database_name: str) -> Path:
    """Assign ``database_name`` to every node of ``group`` in the file at ``path``.

    Only the nodes' ``database`` values change: comments, order and layout stay as the
    administrator wrote them (tomlkit round-trips the file). Written atomically
    (temporary file + rename). The file as it was is first copied to a backup that never
    replaces a file: ``<file>.bak``, or when that exists the first free ``<file>.bak.N``
    (N = 1, 2, ...), so the original survives any number of runs. Returns the backup.
    """
    file = Path(path)
    try:
        original = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read topology file {file}: {exc.strerror}") from None
    try:
        document = tomlkit.parse(original.decode("utf-8"))
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise ConfigError(f"topology file {file} is not valid TOML: {exc}") from None
    topology = parse_topology(document.unwrap(), file)
    topology.database_ref(database_name)  # declared?
    members = set(topology.group_nodes(group))
    raw_nodes = document.get("nodes")
    if isinstance(raw_nodes, Mapping):
        for name, table in raw_nodes.items():
            if name in members:
                table["database"] = database_name
    elif isinstance(raw_nodes, list):
        for table in raw_nodes:
            if table.get("name") in members:
                table["database"] = database_name
    text = tomlkit.dumps(document)
    parse_topology(tomllib.loads(text), file)  # what we write must load again
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        shutil.copystat(file, tmp)
        backup = _new_backup(file, original)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("topology %s: database %s assigned to group %s (previous file kept as %s)",
             file, database_name, group, backup)
    return backup


#: how many numbered backups ``_new_backup`` tries before it gives up
MAX_BACKUPS = 1000


def _new_backup(file: Path, content: bytes) -> Path:
    """``content`` (the file as it was) in a new file beside it: ``F.bak``, else the first
    free ``F.bak.N``. Created exclusively (O_EXCL): an existing file is never replaced."""
    for n in range(MAX_BACKUPS):
        candidate = file.with_name(file.name + (".bak" if n == 0 else f".bak.{n}"))
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            shutil.copystat(file, candidate)  # the original's mode and times
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise ConfigError(f"{file}: {MAX_BACKUPS} backups exist already ({file.name}.bak, "
                      f"{file.name}.bak.1, ...); remove old ones")


# --------------------------------------------------------------------------- checking


@dataclass
class TopologyReport(Report):
    cluster: str = ""
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        record = super().as_dict()
        record.update(cluster=self.cluster, nodes=self.nodes)
        return record


def check_topology(topology: Topology, *, strict: bool = False,
                   environ: Mapping[str, str] | None = None) -> TopologyReport:
    """Check a topology against the HA rules; every broken rule is a finding."""
    f: list[Finding] = []
    t = topology
    if len(t.nodes) > MAX_NODES:
        f.append(error("TOO_MANY_NODES", f"the cluster has {len(t.nodes)} IM and Presence "
                       f"nodes; at most {MAX_NODES} are allowed", count=len(t.nodes)))
    if len(t.groups) > MAX_GROUPS:
        f.append(error("TOO_MANY_GROUPS", f"the cluster has {len(t.groups)} presence redundancy "
                       f"groups; at most {MAX_GROUPS} are allowed", count=len(t.groups)))
    # groups and membership
    membership: dict[str, list[str]] = {n: [] for n in t.nodes}
    for g in t.groups.values():
        if not 1 <= len(g.nodes) <= MAX_GROUP_NODES:
            f.append(error("GROUP_SIZE", f"group {g.name} has {len(g.nodes)} node(s); a "
                           f"presence redundancy group has 1 or {MAX_GROUP_NODES}",
                           details={"group": g.name}))
        if g.high_availability and len(g.nodes) != 2:
            f.append(error("HA_NEEDS_TWO_NODES", f"group {g.name} enables high availability "
                           "but high availability needs two nodes", details={"group": g.name}))
        for n in g.nodes:
            if n not in t.nodes:
                f.append(error("UNKNOWN_NODE", f"group {g.name} lists node {n}, which is not "
                               "declared under [nodes]", details={"group": g.name, "node": n}))
            else:
                membership[n].append(g.name)
        if g.mode == "active-standby" and len(g.nodes) == 2 and g.nodes[1] in t.nodes \
                and t.nodes[g.nodes[1]].users:
            f.append(warning("USERS_ON_STANDBY", f"group {g.name} is active/standby but "
                             f"users are homed on its standby node {g.nodes[1]}",
                             hint="home every user on the first node of the group",
                             details={"group": g.name}))
    for member, groups in membership.items():
        declared = t.nodes[member].group
        if len(groups) != 1 or (declared is not None and declared not in groups):
            where = ", ".join(groups) or "no group"
            f.append(error("NODE_NOT_IN_ONE_GROUP", f"node {member} is in {where}"
                           + (f" but says group = {declared!r}" if declared else "")
                           + "; every node belongs to exactly one presence redundancy group",
                           details={"node": member, "groups": groups}))
    # node ids and aliases
    for node_id, count in Counter(n.id for n in t.nodes.values()).items():
        if count > 1:
            names = [n.name for n in t.nodes.values() if n.id == node_id]
            f.append(error("DUPLICATE_NODE_ID", f"nodes {', '.join(names)} share id {node_id}",
                           details={"nodes": names}))
    owners: dict[str, list[str]] = {}
    for name in t.nodes:
        for i, alias in enumerate(t.aliases(name)):
            if not valid_alias(alias):
                f.append(error("INVALID_ALIAS", f"chat alias {alias!r} of node {name} is not a "
                               "host name: room JIDs (room@alias) cannot use it",
                               hint="the generated alias is conference-<node id>-<cluster id>."
                               "<domain>: fix the cluster id or the domain" if i == 0 else
                               "use labels of letters, digits and hyphens separated by dots",
                               details={"alias": alias, "node": name}))
            owners.setdefault(_alias_key(alias), []).append(name)
    for alias, names in owners.items():
        if len(names) > 1:
            f.append(error("DUPLICATE_ALIAS", f"chat alias {alias} is used "
                           f"{len(names)} times (nodes {', '.join(names)}); aliases must be "
                           "unique in the cluster", details={"alias": alias, "nodes": names}))
        if alias == _alias_key(t.domain):
            f.append(error("ALIAS_EQUALS_DOMAIN", f"chat alias {alias} of node {names[0]} equals "
                           "the domain; an alias may not equal the domain",
                           details={"alias": alias}))
    # users: each is homed on one node
    homes: dict[str, list[str]] = {}
    for node in t.nodes.values():
        for user in node.users:
            homes.setdefault(t.user_jid(user).lower(), []).append(node.name)
    for user, names in homes.items():
        if len(names) > 1:
            f.append(error("USER_HOMED_TWICE", f"user {user} is homed on {', '.join(names)}; "
                           "a user is homed on one node", details={"user": user,
                                                                  "nodes": names}))
    # databases
    for node in t.nodes.values():
        if node.database is not None and node.database not in t.databases:
            f.append(error("UNKNOWN_DATABASE", f"node {node.name} is assigned database "
                           f"{node.database}, which is not declared under [databases]",
                           database=node.database, details={"node": node.name}))
    if t.persistent_chat:
        f.extend(_database_rules(t))
    for db in t.databases.values():
        if db.dialect == "mssql":
            f.append(info("MSSQL_NOT_MERGEABLE", f"database {db.name} is Microsoft SQL "
                          "Server: supported as the external database of an HA group, but not "
                          "for merging", database=db.name,
                          hint="merge on PostgreSQL or Oracle"))
        if db.password_env and read_secret(db.password_env, environ) is None:
            f.append(info("PASSWORD_ENV_UNSET", f"database {db.name}: variable "
                          f"{db.password_env} is not set; libpq's own mechanisms (PGPASSWORD, "
                          ".pgpass) apply", database=db.name))
    for node in t.nodes.values():
        if t.persistent_chat and node.text_conference() != "running":
            f.append(info("TEXT_CONFERENCE_STOPPED", f"Cisco XCP Text Conference Manager is "
                          f"stopped on {node.name}", hint="start it when no merge is under way",
                          details={"node": node.name}))
    nodes = {
        name: {"id": n.id, "group": next(iter(membership[name]), None), "database": n.database,
               "aliases": list(t.aliases(name)), "text_conference": n.text_conference(),
               "users": list(n.users)}
        for name, n in t.nodes.items()
    }
    return TopologyReport(findings=f, strict=strict, cluster=t.cluster_name, nodes=nodes)


_LABEL = re.compile(r"(?!-)[\w-]{1,63}(?<!-)")


def _alias_key(alias: str) -> str:
    """An alias as DNS compares it: case aside, without the root's trailing dot."""
    return alias.lower().removesuffix(".")


def valid_alias(alias: str) -> bool:
    """A host name that can be the domain part of a room JID: dot-separated labels of
    letters, digits, hyphens (and underscores), none empty; one trailing dot allowed."""
    name = alias.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


#: the rules on which database each node uses (``_database_rules``): before a merge the
#: nodes of a group still have their own databases, which is what the merge mends
DATABASE_RULES = frozenset({"NO_DATABASE", "HA_DATABASE_MISMATCH", "DATABASE_PER_NODE",
                            "NODE_WITHOUT_DATABASE", "DATABASE_PER_SUBCLUSTER"})


def structure_errors(topology: Topology) -> list[Finding]:
    """The HA rules ``topology`` breaks that a merge does not mend (its errors outside
    DATABASE_RULES): validate and run refuse such a file rather than write to it."""
    return [f for f in check_topology(topology).findings
            if f.severity is Severity.ERROR and f.code not in DATABASE_RULES]


def _database_rules(t: Topology) -> list[Finding]:
    f: list[Finding] = []
    if not t.databases or all(n.database is None for n in t.nodes.values()):
        f.append(error("NO_DATABASE", "persistent chat is enabled but no node is assigned an "
                       "external database; at least one is needed"))
        return f
    group_of_db: dict[str, set[str]] = {}
    for g in t.groups.values():
        # one entry per listed node (an undeclared one, reported as UNKNOWN_NODE, has None)
        dbs = [t.nodes[n].database if n in t.nodes else None for n in g.nodes]
        for d in dbs:
            if d is not None:
                group_of_db.setdefault(d, set()).add(g.name)
        if g.high_availability and len(g.nodes) == 2:
            if len(set(dbs)) != 1 or dbs[0] is None:
                shown = ", ".join(f"{n}: {d or 'none'}" for n, d in zip(g.nodes, dbs,
                                                                         strict=True))
                f.append(error("HA_DATABASE_MISMATCH", f"HA group {g.name} with persistent chat "
                               f"needs both nodes on the same database ({shown})",
                               hint=f"assign one logical database to both nodes of {g.name}",
                               details={"group": g.name}))
        elif len(g.nodes) == 2 and dbs[0] is not None and dbs[0] == dbs[1]:
            f.append(error("DATABASE_PER_NODE", f"group {g.name} is not HA but both nodes share "
                           f"database {dbs[0]}; without HA each chat node needs its own "
                           "database instance", database=dbs[0], details={"group": g.name}))
        for n, d in zip(g.nodes, dbs, strict=True):
            if d is None and n in t.nodes and not g.high_availability:
                f.append(warning("NODE_WITHOUT_DATABASE", f"node {n} has no external database: "
                                 "it cannot host persistent rooms", details={"node": n}))
    for db, groups in sorted(group_of_db.items()):
        if len(groups) > 1:
            f.append(error("DATABASE_PER_SUBCLUSTER", f"database {db} is assigned to nodes of "
                           f"groups {', '.join(sorted(groups))}; use one database instance per "
                           "subcluster (instances may share a server)", database=db,
                           details={"groups": sorted(groups)}))
    return f
