"""PostgreSQL sessions for the merge: libpq parameters, read-only sources, errors without secrets.

The engine talks to PostgreSQL through psycopg directly (binary COPY needs the
driver's copy API). Connection parameters go to libpq as keywords, never as one
formatted string, so quotes, backslashes and semicolons in names and passwords
are passed through unchanged and inject nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from tcmerge.db import server_reason
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import DatabaseError, UnsupportedDatabaseError

PgConn = psycopg.Connection[Any]

#: Session settings every merge session uses, so that row texts (hashes, checksums)
#: are computed the same way in every session.
SESSION_OPTIONS = "-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3"


def libpq_params(ref: DatabaseRef) -> dict[str, Any]:
    """libpq keyword parameters for a URL; the password stays in memory."""
    url = ref.url
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    return {k: v for k, v in params.items() if v is not None}


def wrap(exc: BaseException, ref: DatabaseRef, doing: str) -> DatabaseError:
    """A DatabaseError with the server's words and no secret."""
    return DatabaseError(f"{doing} {ref.label} failed: {server_reason(exc, ref)}")


def open_session(ref: DatabaseRef, *, role: str, autocommit: bool = False) -> PgConn:
    """Connect to ``ref``; CONNECTION_FAILED (exit 3) without secrets when it fails."""
    if ref.dialect != "postgresql":
        # jobs, verify and restore read the job history through psycopg only
        raise UnsupportedDatabaseError(
            f"{ref.label}: this command supports PostgreSQL targets; on {ref.dialect} the "
            "job record and snapshot tables are written but read back by SQL only")
    params = libpq_params(ref)
    options = params.pop("options", "")
    try:
        conn = psycopg.connect(
            **params,
            options=f"{options} {SESSION_OPTIONS}".strip(),
            application_name=f"tcmerge-{role}",
            autocommit=autocommit,
        )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to {ref.label}: {server_reason(exc, ref)}", code="CONNECTION_FAILED"
        ) from None
    return conn


@contextmanager
def session(ref: DatabaseRef, *, role: str, autocommit: bool = False) -> Iterator[PgConn]:
    conn = open_session(ref, role=role, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()


def begin_read_only(conn: PgConn) -> None:
    """One consistent read-only snapshot for everything read from a source."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


def server_encoding(conn: PgConn) -> str:
    row = conn.execute("SHOW server_encoding").fetchone()
    assert row is not None
    return str(row[0])


def set_client_encoding(conn: PgConn, encoding: str) -> None:
    conn.execute(sql.SQL("SET client_encoding TO {}").format(sql.Literal(encoding)))


def existing_tables(conn: PgConn, names: list[str]) -> set[str]:
    """Which of ``names`` exist as tables visible on the search path."""
    rows = conn.execute(
        "SELECT n FROM unnest(%s::text[]) AS n WHERE to_regclass(quote_ident(n)) IS NOT NULL",
        (names,),
    ).fetchall()
    return {str(r[0]) for r in rows}
