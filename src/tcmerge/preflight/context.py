"""The databases of one validation: connections (read-only), facts, live schemas."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import sqlalchemy as sa

from tcmerge.db import connect
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.base import DialectAdapter, ServerFacts
from tcmerge.errors import DatabaseError
from tcmerge.results import Finding, error
from tcmerge.schema.compare import LiveTable


@dataclass
class Database:
    """One database named in the request (the target, or source number ``index``)."""

    ref: DatabaseRef
    role: str  # "target" or "source"
    index: int | None = None  # position among the sources (0-based)
    conn: sa.Connection | None = None
    facts: ServerFacts | None = None
    live: dict[str, LiveTable] = field(default_factory=dict)
    #: the same database as an earlier entry (same server identity and database)
    same_as: Database | None = None

    @property
    def label(self) -> str:
        return self.ref.label

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.facts is not None

    @property
    def title(self) -> str:
        return "target" if self.role == "target" else f"source {(self.index or 0) + 1}"


def _hint_for(reason: str) -> str:
    text = reason.lower()
    if "no password supplied" in text:
        # the server asked for a password and libpq found none for this host and user
        return ("give the password in the URL, PGPASSWORD, the topology's password_env or "
                "a password file line whose host is written as in the URL (libpq does not "
                "take localhost for 127.0.0.1)")
    if "password authentication failed" in text or ("password" in text and "fail" in text):
        return "check the user name and password in the URL (or PGPASSWORD / .pgpass)"
    if "does not exist" in text:
        return "check the database name; create the database or fix the URL"
    if "pg_hba.conf" in text:
        return ("add a pg_hba.conf line on that server for this user, database and the "
                "address tcmerge connects from, e.g. host DB USER ADDRESS/32 scram-sha-256")
    if "refused" in text or "timeout" in text or "timed out" in text or "resolve" in text:
        return "check host and port, that the server runs and that listen_addresses covers them"
    return "check the URL, the server and the user's rights"


def open_database(stack: ExitStack, adapter: DialectAdapter, db: Database) -> Finding | None:
    """Connect read-only and read the server facts; a CONNECTION_FAILED finding on failure."""
    try:
        conn = stack.enter_context(connect(
            db.ref, connect_args=adapter.connect_args(read_only=True), hide_parameters=True,
            poolclass=sa.pool.NullPool))
        adapter.begin_session(conn, read_only=True)
        facts = adapter.server_facts(conn)
    except DatabaseError as exc:
        return error("CONNECTION_FAILED", exc.message, database=db.label,
                     hint=_hint_for(exc.message))
    except sa.exc.DBAPIError as exc:
        from tcmerge.db import server_reason

        reason = server_reason(exc, db.ref)
        return error("CONNECTION_FAILED", f"cannot use {db.label}: {reason}",
                     database=db.label, hint=_hint_for(reason))
    db.conn, db.facts = conn, facts
    return None
