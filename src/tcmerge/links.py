"""The one place that creates, tests and always removes server-to-server links.

PostgreSQL: dblink connections opened from the target's session to a source.
Each has a unique name; its connection string (password included) travels as a
bind parameter, never inside SQL text; the source session is forced read-only
(``default_transaction_read_only``) and announces itself as ``tcmerge``. The
connection is closed in ``finally``, after errors too.

Oracle: database links made by the target's user to a source schema.
``plan_oracle_link`` gives one link's statements (create, probe, close, drop): a
private link when the user may create one, a public link only when it must; unique
names; the password a bind variable. The Oracle merge (``merge/oracle_engine.py``)
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
from tcmerge.dialects.postgresql.adapter import DblinkFacts
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


def dblink_conninfo(ref: DatabaseRef, *, host: str | None = None,
                    port: int | str | None = None, application_name: str = APPLICATION_NAME,
                    options: str = "") -> str:
    """libpq connection string for the target server to reach ``ref`` (read-only, named;
    ``options`` adds session settings). Validation's probes and the merge's dblink
    transport both connect with it.

    Contains the password: pass it only as a bind parameter.
    """
    url = ref.url
    password = url.password if url.password is not None else libpq_password(ref)
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
        user=url.username,
        password=password,
        application_name=application_name,
        options=f"{READ_ONLY_OPTIONS} {options}".strip(),
    )
    params.setdefault("connect_timeout", "10")
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def _call(dblink: DblinkFacts, function: str, args: str) -> sa.TextClause:
    return sa.text(f"SELECT {dblink.function(function)}({args})")


def _open_names(conn: sa.Connection, dblink: DblinkFacts) -> list[str]:
    names = conn.execute(_call(dblink, "dblink_get_connections", "")).scalar()
    return list(names or [])


def _disconnect(conn: sa.Connection, dblink: DblinkFacts, name: str) -> None:
    if name in _open_names(conn, dblink):
        conn.execute(_call(dblink, "dblink_disconnect", ":name"), {"name": name})


@contextmanager
def dblink_connection(conn: sa.Connection, ref: DatabaseRef, dblink: DblinkFacts, *,
                      host: str | None = None, port: int | str | None = None) -> Iterator[str]:
    """Open a named dblink connection from ``conn``'s server to ``ref``; yield its name.

    The connection is always closed afterwards. A failure to connect raises
    ``sa.exc.DBAPIError`` from the server (the caller classifies it with
    ``classify_dblink_error``); ``conn``'s transaction stays usable.
    """
    name = new_link_name()
    conninfo = dblink_conninfo(ref, host=host, port=port)
    with conn.begin_nested():
        conn.execute(_call(dblink, "dblink_connect", ":name, :conninfo"),
                     {"name": name, "conninfo": conninfo})
    try:
        yield name
    finally:
        try:
            _disconnect(conn, dblink, name)
        except sa.exc.DBAPIError:
            # the caller's statement failed and aborted the transaction: the dblink
            # connection belongs to the session and survives the rollback
            conn.rollback()
            _disconnect(conn, dblink, name)


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


def classify_dblink_error(exc: sa.exc.DBAPIError, ref: DatabaseRef) -> DblinkProbe:
    """Turn dblink's error into a probe result; the message has no secret."""
    orig = exc.orig
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
    return DblinkProbe(False, client_address=address, code=code, reason=reason,
                       sqlstate=sqlstate)


def probe_dblink(conn: sa.Connection, ref: DatabaseRef, dblink: DblinkFacts, *,
                 host: str | None = None, port: int | str | None = None) -> DblinkProbe:
    """Connect from the target server to ``ref`` with dblink, look, and disconnect."""
    try:
        with dblink_connection(conn, ref, dblink, host=host, port=port) as name:
            row = conn.execute(sa.text(
                f"SELECT * FROM {dblink.function('dblink')}(:name, "
                "'SELECT pg_backend_pid(), host(inet_client_addr()), "
                "current_setting(''transaction_read_only'')') "
                "AS t(pid integer, addr text, ro text)"), {"name": name}).one()
    except sa.exc.DBAPIError as exc:
        return classify_dblink_error(exc, ref)
    return DblinkProbe(True, remote_pid=int(row[0]), client_address=row[1],
                       read_only=row[2] == "on")


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
