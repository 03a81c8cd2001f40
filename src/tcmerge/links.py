"""The one place that creates, tests and always removes server-to-server links.

PostgreSQL: dblink connections opened from the target's session to a source.
Each has a unique name; the source session is forced read-only
(``default_transaction_read_only``) and announces itself as ``tcmerge``. The
connection is closed in ``finally``, after errors too. Two ways to log in:

- SCRAM pass-through (PostgreSQL 18 targets, ``connect_passthrough``): a foreign
  server of ``dblink_fdw`` with ``use_scram_passthrough`` and a user mapping without
  password, both made under unique names in a savepoint that is rolled back as soon
  as ``dblink_connect`` has its connection (nothing remains in the target, after
  failures too). No password crosses: the target server authenticates to the source
  with the SCRAM keys of tcmerge's own SCRAM login. It needs USAGE on ``dblink_fdw``,
  a SCRAM-authenticated session, and a source user whose SCRAM secret is identical to
  the target user's (same salt and iterations, not merely the same password).
- the password in a libpq connection string (``dblink_conninfo``), a bind parameter,
  never inside SQL text; a server that logs statements with their parameters may still
  log it. Used only with ``--transport dblink`` where pass-through is not possible,
  after validation's DBLINK_SENDS_PASSWORD warning; ``libpq_password`` is called only
  then.

Which of the two a source gets is validation's decision, carried in its report
(``transports.dblink.sources[].auth``) to the merge's dblink reader; without one,
``catalog_link_auth`` decides from the target's catalogs.

Oracle: database links made by the target's user to a source schema.
``plan_oracle_link`` gives one link's statements (create, probe, close, drop): a
private link when the user may create one, a public link only when it must; unique
names; the password a bind variable. The Oracle merge (``merge/oracle_merge.py``)
runs them before its transaction and drops the links afterwards, after failures too.
The statements are constructs compiled for the Oracle dialect
(``tcmerge.dialects.oracle.ddl``); LOB columns move by INSERT ... SELECT over the
link (ORA-22992 forbids selecting them directly).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tcmerge.db import APPLICATION_NAME, libpq_params, server_reason
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.oracle.adapter import link_kind
from tcmerge.dialects.oracle.ddl import (
    CreateDatabaseLink,
    DropDatabaseLink,
    check_link_password,
    probe_link,
)
from tcmerge.dialects.postgresql.adapter import quote
from tcmerge.errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
#: SQLSTATE dblink raises when a non-superuser's connection used no password
PASSWORD_REQUIRED = "2F003"
_HBA_HOST = re.compile(r'host "([^"]+)"')


def new_link_name(prefix: str = "tcmerge") -> str:
    """A unique link name (fits Oracle's 30-character limit before 12.2)."""
    return f"{prefix}_{os.getpid() % 100000}_{secrets.token_hex(4)}"


# -- PostgreSQL dblink -----------------------------------------------------------------------
def is_socket(host: str | None) -> bool:
    return host is None or host.startswith("/")


SERVER_SIDE_PARAMETERS = frozenset({
    "sslmode", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "target_session_attrs", "gssencmode", "channel_binding",
    "require_auth", "sslnegotiation", "tcp_user_timeout",
})


def libpq_password(ref: DatabaseRef) -> str | None:
    """The password libpq itself finds for ``ref`` (PGPASSWORD, the password file) when
    the URL has none: dblink needs it in its connection string, because the target
    server cannot read this machine's environment or files. None when libpq finds none
    or the source cannot be reached (dblink then says why it cannot connect)."""
    try:
        with psycopg.connect(**{"connect_timeout": "10", **libpq_params(ref)},
                             application_name=APPLICATION_NAME) as conn:
            return conn.info.password or None
    except psycopg.Error:
        return None


def _link_params(ref: DatabaseRef, *, host: str | None, port: int | str | None,
                 application_name: str, options: str) -> dict[str, str]:
    """libpq settings for the target server to reach ``ref``, without user and password."""
    url = ref.url
    # Only settings that mean the same on the server: file paths (sslrootcert, passfile...)
    # name files on tcmerge's machine, not on the target server.
    params: dict[str, Any] = {
        key: value for key, value in url.query.items()
        if isinstance(value, str) and key in SERVER_SIDE_PARAMETERS
    }
    # a host (a socket directory, say) given as a URL parameter counts as the URL's host
    query_host = url.query.get("host")
    if isinstance(query_host, tuple):
        query_host = query_host[0] if query_host else None
    params.update(
        host=host or query_host or url.host,
        port=port or url.port or url.query.get("port"),
        dbname=url.database,
        application_name=application_name,
        options=f"{READ_ONLY_OPTIONS} {options}".strip(),
    )
    params.setdefault("connect_timeout", "10")
    return {k: str(v) for k, v in params.items() if v is not None}


def dblink_conninfo(ref: DatabaseRef, *, host: str | None = None,
                    port: int | str | None = None, application_name: str = APPLICATION_NAME,
                    options: str = "") -> str:
    """libpq connection string for the target server to reach ``ref`` (read-only, named;
    ``options`` adds session settings), password included: only for ``--transport
    dblink`` where SCRAM pass-through is not possible.

    Contains the password: pass it only as a bind parameter.
    """
    url = ref.url
    password = url.password if url.password is not None else libpq_password(ref)
    params = _link_params(ref, host=host, port=port, application_name=application_name,
                          options=options)
    if url.username is not None:
        params["user"] = url.username
    if password is not None:
        params["password"] = password
    return make_conninfo(**params)


# -- SCRAM pass-through (PostgreSQL 18) ---------------------------------------------------
PASSTHROUGH = "scram-passthrough"
PASSWORD = "password"
#: libpq settings dblink sets itself for pass-through (a server option would conflict)
_NOT_SERVER_OPTIONS = frozenset({"require_auth", "channel_binding"})


@dataclass(frozen=True)
class PassthroughFacts:
    """What the target's catalogs say about SCRAM pass-through for dblink."""

    server_version: int
    user: str
    fdw_usage: bool | None  # USAGE on dblink_fdw; None: no such wrapper
    client_auth: str | None  # how this session authenticated (system_user), None: unknown
    failure: str | None = None  # something else that stopped it before any probe

    @property
    def blocker(self) -> str | None:
        """Why pass-through cannot be used, or None when it can be tried."""
        if self.failure is not None:
            return self.failure
        if self.server_version < 180000:
            return (f"the target server runs PostgreSQL {self.server_version // 10000}; "
                    "dblink's SCRAM pass-through needs PostgreSQL 18")
        if self.fdw_usage is None:
            return "the target has no foreign-data wrapper dblink_fdw"
        if not self.fdw_usage:
            return (f"{self.user} has no USAGE on the foreign-data wrapper dblink_fdw "
                    "(needed to create the foreign server)")
        if self.client_auth not in ("scram-sha-256", "md5"):
            how = self.client_auth or "no password (trust, peer, or similar)"
            return (f"tcmerge's session to the target authenticated with {how}, and "
                    "pass-through needs a session that authenticated with scram-sha-256")
        return None

    def grant_hint(self) -> str:
        return f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {quote(self.user)};"


def _str(value: Any) -> str:
    """A text value as str (a SQL_ASCII session returns bytes)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def passthrough_facts(conn: psycopg.Connection[Any]) -> PassthroughFacts:
    """Pass-through facts from the catalogs of ``conn``'s server (no connection made)."""
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, current_user::text, "
        "(SELECT has_foreign_data_wrapper_privilege(w.oid, 'USAGE') "
        " FROM pg_catalog.pg_foreign_data_wrapper w WHERE w.fdwname = 'dblink_fdw')"
    ).fetchone()
    assert row is not None
    version, user, usage = int(row[0]), _str(row[1]), row[2]
    auth = None
    if version >= 160000:  # system_user: the method and identity of the login
        auth_row = conn.execute("SELECT split_part(system_user, ':', 1)").fetchone()
        auth = None if auth_row is None or not auth_row[0] else _str(auth_row[0])
    return PassthroughFacts(version, user, None if usage is None else bool(usage), auth)


def passthrough_statements(server: str, ref: DatabaseRef, *, host: str | None = None,
                           port: int | str | None = None,
                           application_name: str = APPLICATION_NAME,
                           options: str = "") -> tuple[sql.Composed, sql.Composed]:
    """CREATE SERVER (dblink_fdw, use_scram_passthrough) and CREATE USER MAPPING FOR
    CURRENT_USER (the source's user name, no password) for ``ref``."""
    params = {k: v for k, v in _link_params(ref, host=host, port=port,
                                            application_name=application_name,
                                            options=options).items()
              if k not in _NOT_SERVER_OPTIONS}
    params["use_scram_passthrough"] = "true"

    def listed(values: dict[str, str]) -> sql.Composed:
        return sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(v))
                                  for k, v in values.items())

    create = sql.SQL("CREATE SERVER {} FOREIGN DATA WRAPPER {} OPTIONS ({})").format(
        sql.Identifier(server), sql.Identifier("dblink_fdw"), listed(params))
    mapping = sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER {}").format(
        sql.Identifier(server))
    if ref.url.username:
        mapping += sql.SQL(" OPTIONS ({})").format(listed({"user": ref.url.username}))
    return create, mapping


def connect_passthrough(conn: psycopg.Connection[Any], schema: str | None, name: str,
                        ref: DatabaseRef, *, host: str | None = None,
                        port: int | str | None = None,
                        application_name: str = APPLICATION_NAME, options: str = "") -> None:
    """Open the named dblink connection ``name`` to ``ref`` by SCRAM pass-through.

    ``conn`` must be in a transaction. The foreign server and user mapping exist only
    inside a savepoint that is rolled back once ``dblink_connect`` returns or fails: the
    connection (session-wide) stays, the objects never remain. Raises psycopg.Error.
    """
    server = new_link_name("tcmerge_srv")
    create, mapping = passthrough_statements(server, ref, host=host, port=port,
                                             application_name=application_name,
                                             options=options)
    function = (sql.Identifier(schema, "dblink_connect") if schema
                else sql.Identifier("dblink_connect"))
    conn.execute("SAVEPOINT tcmerge_link")
    try:
        conn.execute(create)
        conn.execute(mapping)
        conn.execute(sql.SQL("SELECT {}(%s, %s)").format(function), (name, server))
    finally:
        conn.execute("ROLLBACK TO SAVEPOINT tcmerge_link")
        conn.execute("RELEASE SAVEPOINT tcmerge_link")


def catalog_link_auth(conn: psycopg.Connection[Any]) -> str:
    """How a dblink connection from ``conn``'s server logs in when no validation decided
    it: pass-through where the catalogs offer it, else the password."""
    return PASSTHROUGH if passthrough_facts(conn).blocker is None else PASSWORD


def driver_connection(conn: sa.Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy connection (same session, same
    transaction)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


@dataclass(frozen=True)
class DblinkProbe:
    """What one live dblink connection attempt from the target to a source found."""

    ok: bool
    remote_pid: int | None = None
    client_address: str | None = None  # the address the source saw the target come from
    read_only: bool | None = None
    code: str | None = None  # HBA_REJECTS, DBLINK_UNAVAILABLE, CONNECTION_FAILED
    reason: str | None = None
    sqlstate: str | None = None
    #: the source refused the login itself (wrong password or SCRAM secret, or a method
    #: that pass-through cannot serve), not the address or the database
    authentication: bool = False
    #: the source asked for no password at all (trust): pass-through cannot serve it, and
    #: dblink refuses such a connection for a non-superuser
    passwordless: bool = False


def classify_dblink_error(exc: sa.exc.DBAPIError | psycopg.Error,
                          ref: DatabaseRef) -> DblinkProbe:
    """Turn dblink's error into a probe result; the message has no secret."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    detail = " ".join(filter(None, [
        getattr(diag, "message_primary", None), getattr(diag, "message_detail", None)]))
    reason = server_reason(exc, ref)
    text = f"{reason} {detail}"
    address = None
    if sqlstate == PASSWORD_REQUIRED:
        code = "DBLINK_UNAVAILABLE"
    elif "pg_hba.conf" in text:
        code = "HBA_REJECTS"
        match = _HBA_HOST.search(text)
        address = match.group(1) if match else None
    elif "password authentication failed" in text or "does not exist" in text:
        code = "CONNECTION_FAILED"
    else:
        code = "DBLINK_UNAVAILABLE"
    authentication = sqlstate == PASSWORD_REQUIRED or any(
        words in text for words in ("password authentication failed",
                                    "authentication method requirement"))
    passwordless = "did not complete authentication" in text
    return DblinkProbe(False, client_address=address, code=code, reason=reason,
                       sqlstate=sqlstate, authentication=authentication,
                       passwordless=passwordless)


_PROBE_QUERY = ("SELECT pg_backend_pid(), host(inet_client_addr()), "
                "current_setting('transaction_read_only')")


@contextmanager
def probe_session(ref: DatabaseRef) -> Iterator[psycopg.Connection[Any]]:
    """A session of its own to the target for pass-through probes (validation's own is
    read-only, and CREATE SERVER writes): everything done in it is rolled back, and it is
    closed afterwards. Raises psycopg.Error when it cannot connect."""
    conn = psycopg.connect(**{"connect_timeout": "10", **libpq_params(ref)},
                           application_name=APPLICATION_NAME)
    try:
        yield conn
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()


def probe_passthrough(conn: psycopg.Connection[Any], ref: DatabaseRef, schema: str | None,
                      *, host: str | None = None,
                      port: int | str | None = None) -> DblinkProbe:
    """Connect from ``conn``'s server to ``ref`` with dblink by SCRAM pass-through, look,
    and disconnect; no password crosses. ``conn`` is a ``probe_session``."""
    name = new_link_name()

    def function(fn: str) -> sql.Identifier:
        return sql.Identifier(schema, fn) if schema else sql.Identifier(fn)

    try:
        connect_passthrough(conn, schema, name, ref, host=host, port=port)
    except psycopg.Error as exc:
        conn.rollback()
        return classify_dblink_error(exc, ref)
    try:
        row = conn.execute(sql.SQL(
            "SELECT * FROM {}(%s, %s) AS t(pid integer, addr text, ro text)").format(
                function("dblink")), (name, _PROBE_QUERY)).fetchone()
    except psycopg.Error as exc:
        conn.rollback()  # the dblink connection belongs to the session: it stays
        return classify_dblink_error(exc, ref)
    finally:
        with conn.transaction():
            conn.execute(sql.SQL("SELECT {}(%s)").format(function("dblink_disconnect")),
                         (name,))
    assert row is not None
    return DblinkProbe(True, remote_pid=int(row[0]),
                       client_address=None if row[1] is None else _str(row[1]),
                       read_only=_str(row[2]) == "on")


# -- Oracle database links --------------------------------------------------------------------
def oracle_connect_descriptor(ref: DatabaseRef) -> str:
    """What the link's USING names: the database tcmerge itself connects to for ``ref``.

    ``?service_name=X``: EZConnect ``//host:port/X``. A database part (``host:1521/ORCL``)
    is a SID to SQLAlchemy's Oracle dialect (``makedsn(sid=...)``), not a service name, so
    the link names it as a SID too (EZConnect has no SID form)."""
    url = ref.url
    service = url.query.get("service_name")
    port = url.port or 1521
    if url.host and isinstance(service, str) and service:
        return f"//{url.host}:{port}/{service}"
    if url.host and url.database:
        return (f"(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST={url.host})(PORT={port}))"
                f"(CONNECT_DATA=(SID={url.database})))")
    raise ConfigError(f"{ref.label}: an Oracle source needs a host and a service_name or SID")


def oracle_link_user(ref: DatabaseRef) -> str:
    """The source's user name as Oracle stores it: a user name is case-insensitive when
    tcmerge connects (the server folds it to upper case unless it is double-quoted), while
    the link's ``CONNECT TO "name"`` is quoted and exact."""
    name = ref.url.username or ""
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        return name[1:-1]
    return name.upper()


@dataclass(frozen=True)
class OracleLinkPlan:
    """The statements for one database link: create, probe, drop."""

    name: str
    public: bool
    create: CreateDatabaseLink
    probe: sa.Select[Any]
    close: sa.TextClause
    drop: DropDatabaseLink


def plan_oracle_link(ref: DatabaseRef, privileges: set[str] | frozenset[str],
                     name: str | None = None) -> OracleLinkPlan:
    """Which link to make for ``ref``: private when allowed, public only when it must."""
    kind = link_kind(privileges)
    if kind is None:
        raise DatabaseError(
            "the target user may create no database link (needs CREATE DATABASE LINK, or "
            "CREATE and DROP PUBLIC DATABASE LINK)", code="PRIVILEGE_MISSING")
    if not ref.url.username:
        raise ConfigError(f"{ref.label}: an Oracle source needs a user name")
    check_link_password(ref.url.password or "")
    name = (name or new_link_name("TCM")).upper()
    public = kind == "public"
    return OracleLinkPlan(
        name=name,
        public=public,
        create=CreateDatabaseLink(name, oracle_link_user(ref), oracle_connect_descriptor(ref),
                                  public=public),
        probe=probe_link(name),
        close=sa.text(f"ALTER SESSION CLOSE DATABASE LINK {name}"),
        drop=DropDatabaseLink(name, public=public),
    )
