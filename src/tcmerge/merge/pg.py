"""PostgreSQL sessions for the merge: libpq parameters, read-only sources, errors without secrets.

The engine talks to PostgreSQL through psycopg directly (binary COPY needs the
driver's copy API). Connection parameters go to libpq as keywords, never as one
formatted string, so quotes, backslashes and semicolons in names and passwords
are passed through unchanged and inject nothing.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.adapt import Buffer
from psycopg.pq import Format
from psycopg.types.string import StrBinaryDumper, StrDumper, StrDumperUnknown, TextLoader

from tcmerge.db import server_reason
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.postgresql.adapter import SESSION_OPTIONS as SESSION_OPTIONS
from tcmerge.dialects.postgresql.adapter import SESSION_SETTINGS
from tcmerge.errors import DatabaseError

log = logging.getLogger(__name__)

PgConn = psycopg.Connection[Any]

#: Session settings every merge session uses, so that row texts (hashes, checksums)
#: are computed the same way in every session (TimeZone: a timestamptz column's text,
#: and its cast to timestamp, depend on it).
#: Those the server reports (it shows "ISO, YMD" with a space).
_REPORTED = ("DateStyle", "IntervalStyle", "TimeZone")
#: bytes of COPY data gathered before each write on the receiving side
RELAY_CHUNK = 1 << 16
#: the last message of a binary COPY: a field count of -1
_TRAILER = b"\xff\xff"
#: a binary COPY's header (signature, flags, extension length)
_HEADER_LENGTH = 19


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


class _Text(TextLoader):
    """Text from a SQL_ASCII session (which psycopg hands over as bytes) as str: UTF-8,
    and any other byte as a surrogate (``surrogateescape``), so it goes back unchanged."""

    def load(self, data: Buffer) -> str:
        value = super().load(data)
        return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class _TextBinary(_Text):
    format = Format.BINARY


class _SurrogateDump:
    """A str sent as the bytes it was read from (see ``_Text``)."""

    _encoding: str

    def dump(self, obj: str) -> bytes:
        if "\x00" in obj:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return obj.encode(self._encoding, "surrogateescape")


class _StrBinary(_SurrogateDump, StrBinaryDumper):
    pass


class _StrText(_SurrogateDump, StrDumper):
    pass


class _StrUnknown(_SurrogateDump, StrDumperUnknown):
    pass


def _text_both_ways(conn: PgConn) -> None:
    """Text as str in every client encoding, SQL_ASCII included (a SQL_ASCII target, or a
    source whose session takes a SQL_ASCII target's encoding), bytes kept exactly."""
    for oid in ("text", "varchar", "bpchar", "name", '"char"'):
        conn.adapters.register_loader(oid, _Text)
        conn.adapters.register_loader(oid, _TextBinary)
    conn.adapters.register_loader(0, _Text)  # unknown
    # the last one registered is the default (as psycopg registers its own)
    for dumper in (_StrBinary, _StrText, _StrUnknown):
        conn.adapters.register_dumper(str, dumper)


def sql_text(query: sql.Composable, conn: PgConn) -> str:
    """``query`` as a str to send as a parameter (dblink's queries): in a SQL_ASCII session,
    psycopg's ``as_string`` fails on any byte above 127 (a room name in a literal)."""
    encoding = conn.info.encoding
    return query.as_bytes(conn).decode("utf-8" if encoding == "ascii" else encoding,
                                       "surrogateescape")


def wrap(exc: BaseException, ref: DatabaseRef, doing: str) -> DatabaseError:
    """A DatabaseError with the server's words and no secret."""
    return DatabaseError(f"{doing} {ref.label} failed: {server_reason(exc, ref)}")


def open_session(ref: DatabaseRef, *, role: str, autocommit: bool = False) -> PgConn:
    """Connect to ``ref``; CONNECTION_FAILED (exit 3) without secrets when it fails."""
    # (the PostgreSQL merge's own sessions, COPY relay and dblink; every other command
    # opens its sessions through SQLAlchemy for any dialect)
    params = libpq_params(ref)
    options = params.pop("options", "")
    log.info("connecting to %s (%s session)", ref.label, role)
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
    # a merge runs each statement about once: psycopg would keep the text of every
    # statement (some carry a list of every room, megabytes) to count its uses
    conn.prepare_threshold = None
    _text_both_ways(conn)
    # libpq's PGTZ and PGDATESTYLE (the client's environment) outrank the options
    wrong = [name for name in _REPORTED if (conn.info.parameter_status(name) or "").replace(
        " ", "") != SESSION_SETTINGS[name]]
    if wrong:
        for name in wrong:
            conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(
                sql.Literal(name), sql.Literal(SESSION_SETTINGS[name])))
        if not autocommit:
            conn.commit()
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


def relay_copy(source: PgConn, out: psycopg.Copy, write: Callable[[bytearray], Any], *,
               every: int = 0, tick: Callable[[int], None] | None = None) -> int:
    """Relay a binary ``COPY ... TO STDOUT`` started on ``source`` (``out``) to ``write``
    in chunks of about RELAY_CHUNK bytes; returns the number of rows.

    The server sends one message per row, and ``out.read()`` hands each over through
    psycopg's generator machinery: about 2.6 s of this process's CPU per million
    tc_msgarchive rows, against 0.9 s when libpq's messages are read here and written
    on in chunks. At the trailer psycopg's own read ends the COPY, so the Copy object
    finishes as usual; a COPY that ends without one (a server error) is ended here.
    ``tick(rows)`` is called every ``every`` rows.
    """
    pgconn = source.pgconn
    waiter = select.poll()
    waiter.register(pgconn.socket, select.POLLIN)
    chunk = bytearray()
    rows = 0
    while True:
        n, data = pgconn.get_copy_data(1)
        if n == 0:  # nothing complete yet: wait for the socket (Ctrl-C still interrupts)
            waiter.poll()
            pgconn.consume_input()
            continue
        if n < 0:
            _end_copy_out(pgconn, waiter, source.info.encoding)
            break
        chunk += data
        trailer = data[-2:] == _TRAILER and (n == 2 or (rows == 0 and n == _HEADER_LENGTH + 2))
        if not trailer:
            rows += 1
            if every and tick is not None and rows % every == 0:
                tick(rows)
        if len(chunk) >= RELAY_CHUNK or trailer:
            write(chunk)
            chunk = bytearray()  # a new one: ``write`` may keep what it was given
        if trailer:
            # psycopg reads the end of the COPY and its result (b"" when all is read)
            while more := out.read():
                write(bytearray(more))
            break
    if chunk:
        write(chunk)
    return rows


def _end_copy_out(pgconn: pq.abc.PGconn, waiter: select.poll, encoding: str) -> None:
    """Read the results that end a COPY; the server's error as psycopg's exception."""
    error = None
    while True:
        while pgconn.is_busy():
            waiter.poll()
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if result.status == pq.ExecStatus.FATAL_ERROR and error is None:
            error = psycopg.errors.error_from_result(result, encoding=encoding)
    if error is not None:
        raise error


def raise_sequences(conn: PgConn, tables: list[str]) -> dict[str, int]:
    """In the merge transaction, after the rows are in: every sequence that feeds a column
    of ``tables`` (a serial or identity column, or one whose default draws from a
    sequence it owns) is set so that its next value is above the column's new maximum.
    Returns {sequence: the maximum it now follows} for those it moved."""
    rows = conn.execute(
        "SELECT n, a.attname::text, pg_get_serial_sequence(quote_ident(n), a.attname) "
        "FROM unnest(%s::text[]) AS n JOIN pg_attribute a "
        "ON a.attrelid = to_regclass(quote_ident(n)) AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE pg_get_serial_sequence(quote_ident(n), a.attname) IS NOT NULL",
        (list(tables),)).fetchall()
    raised: dict[str, int] = {}
    for table, column, sequence in rows:
        top = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column), sql.Identifier(table))).fetchone()
        if top is None or top[0] is None:
            continue
        # the name as the server quotes it (pg_get_serial_sequence): used as it is
        last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.SQL(sequence))).fetchone() or (0, True)
        if (last + 1 if called else last) <= top[0]:
            conn.execute("SELECT setval(%s::regclass, %s, true)", (sequence, top[0]))
            raised[str(sequence)] = int(top[0])
    return raised
