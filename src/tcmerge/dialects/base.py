"""The adapter interface: capabilities as class-level data, behaviour as hook methods.

An adapter gathers facts from one live connection (server, privileges, sessions,
sizes) and builds the dialect's statements. It returns plain data and findings;
it never prints and never changes anything on the server.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa

from tcmerge.results import Finding
from tcmerge.sqlexec import Runner


@dataclass(frozen=True)
class ServerFacts:
    """What a server says about itself and the session tcmerge opened on it."""

    dialect: str
    version: str
    version_num: int
    encoding: str
    database: str
    user: str
    superuser: bool
    #: identifies the server instance (not its address): two URLs reaching one server agree
    server_identity: str
    #: the server identity plus the database: equal when the same database is reached twice
    database_identity: str
    backend_pid: int | None
    schema: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dialect": self.dialect,
            "server_version": self.version,
            "encoding": self.encoding,
            "database": self.database,
            "user": self.user,
            "superuser": self.superuser,
            "schema": self.schema,
            **self.details,
        }


@dataclass(frozen=True)
class Session:
    """Another session connected to a database (not one of tcmerge's)."""

    pid: int | None
    user: str | None
    application: str | None
    address: str | None
    state: str | None

    def describe(self) -> str:
        app = self.application if self.application is not None else "(not visible)"
        addr = self.address if self.address is not None else "local socket or not visible"
        return f"pid {self.pid} user {self.user or '?'} application {app!r} from {addr}"


@dataclass(frozen=True)
class Feeder:
    """Something in the target that feeds or changes a merged table's rows on insert."""

    kind: str  # "trigger", "rule", "identity always", "identity", "sequence"
    table: str
    name: str  # the trigger, rule or sequence; the column for identities
    column: str | None = None
    detail: str = ""  # the trigger's function and events, the sequence's column
    #: how to switch it off around a merge, in the dialect's own words ("" : the default)
    remedy: str = ""


class DialectAdapter(abc.ABC):
    """Generic behaviour; subclasses declare their capabilities and override hooks."""

    #: the SQLAlchemy backend name this adapter serves
    name: ClassVar[str] = ""
    #: the server can open connections to other databases itself (dblink, database links)
    supports_server_links: ClassVar[bool] = False
    #: PostgreSQL's dblink extension in particular
    supports_dblink: ClassVar[bool] = False
    #: binary COPY relay through the client (COPY TO STDOUT -> COPY FROM STDIN)
    supports_copy: ClassVar[bool] = False
    #: DDL runs inside a transaction and rolls back with it
    transactional_ddl: ClassVar[bool] = False
    #: longest identifier the server accepts (staging tables, link names)
    max_identifier_length: ClassVar[int] = 30
    #: the server reports free space / quota for the target
    reports_free_space: ClassVar[bool] = False
    #: merge transports this dialect offers, in order of preference
    transports: ClassVar[tuple[str, ...]] = ()
    #: "module:Class" of the merge's steps on this dialect (a ``DialectMerge``, imported
    #: when used)
    merge_impl: ClassVar[str] = ""

    # -- sessions -------------------------------------------------------------------------
    def connect_args(self, *, read_only: bool) -> dict[str, Any]:
        """Driver keyword arguments for tcmerge's own sessions."""
        return {}

    def begin_session(self, conn: sa.Connection, *, read_only: bool) -> None:
        """Called once on a fresh connection (e.g. make the transaction read-only)."""
        return None

    def engine_connect_args(self, application_name: str) -> dict[str, Any]:
        """Driver keyword arguments of every engine tcmerge makes (``db.create_engine``)."""
        return {}

    def bound_lock_waits(self, conn: sa.Connection, milliseconds: int) -> None:
        """Make the current transaction's lock waits fail after ``milliseconds`` where the
        server can (the HA room service: a stuck takeover fails instead of hanging)."""
        return None

    # -- facts ----------------------------------------------------------------------------
    @abc.abstractmethod
    def server_facts(self, conn: sa.Connection) -> ServerFacts:
        """Version, encoding, identity and the session's user."""

    @abc.abstractmethod
    def privilege_findings(self, conn: sa.Connection, facts: ServerFacts, *, database: str,
                           tables: list[str], target: bool) -> list[Finding]:
        """PRIVILEGE_MISSING findings, each with the exact statement that grants it."""

    def missing_table(self, conn: sa.Connection, facts: ServerFacts,
                      finding: Finding) -> Finding:
        """A SCHEMA_MISSING_TABLE finding, told better where the dialect can say where the
        table is (PostgreSQL: in a schema off the session's search_path)."""
        return finding

    def feeders(self, conn: sa.Connection, tables: list[str]) -> list[Feeder]:
        """What the database itself does to the merged tables' rows on insert: triggers
        and rules that fire, identity columns, sequences feeding a column (empty where
        the dialect does not tell yet)."""
        return []

    def restore_findings(self, conn: sa.Connection, facts: ServerFacts, *, database: str,
                         tables: list[str]) -> list[Finding]:
        """Warnings when the target's user could merge but not ``tcmerge restore``."""
        return []

    def merge_in_progress(self, conn: sa.Connection) -> bool | None:
        """Whether another tcmerge run holds this target's merge lock (None: cannot tell)."""
        return None

    # -- tcmerge's own tables (job history) ---------------------------------------------------
    @abc.abstractmethod
    def table_visible(self, name: str) -> sa.Executable:
        """One row, one value: true (or non-zero) when table ``name`` is visible to the
        session without a schema (PostgreSQL: on the search path)."""

    @abc.abstractmethod
    def create_if_absent(self, table: sa.Table) -> sa.Executable:
        """CREATE TABLE ``table`` unless it exists."""

    # -- verification's shortcuts (None: the dialect has none, the full check runs) -----------
    def unique_key_query(self, table: str, columns: tuple[str, ...]) -> sa.Executable | None:
        """One value, true when a unique index on exactly ``columns`` guards ``table``
        (then duplicates cannot exist and are not counted)."""
        return None

    def room_id_index_query(self, table: str, room: str) -> sa.Executable | None:
        """One value, true when an index on (``room``, msg_id) serves each room's highest
        id by a probe (the counter check then probes per room instead of grouping)."""
        return None

    #: the one-merge lock can be held by a session of its own for a whole command
    #: (``tcmerge.lock``); otherwise the dialect's merge takes it in its transaction
    session_merge_lock: ClassVar[bool] = False

    def try_merge_lock(self, conn: sa.Connection, *, exclusive: bool) -> bool:
        """Take the target's one-merge lock for the session (exclusive: run and restore;
        shared: validate); False at once when another session's lock conflicts. Ends the
        transaction: the lock outlives it, nothing else is held."""
        raise NotImplementedError

    def merge_lock_holders(self, conn: sa.Connection) -> set[str]:
        """How other sessions hold the one-merge lock: ``"exclusive"``, ``"shared"``."""
        return set()

    @abc.abstractmethod
    def other_sessions(self, conn: sa.Connection, exclude: set[int]) -> list[Session] | None:
        """Other sessions on the same database; None when the server does not tell."""

    @abc.abstractmethod
    def table_bytes(self, conn: sa.Connection, tables: list[str]) -> dict[str, int]:
        """Bytes each present table occupies (with its indexes and LOBs where known)."""

    def free_bytes(self, conn: sa.Connection) -> int | None:
        """Bytes the session's user can still add on the server, when the server tells."""
        return None

    @abc.abstractmethod
    def checksum_statement(self, table: sa.Table) -> sa.TextClause:
        """One row (row count, digest) over a table's rows, independent of row order."""

    @abc.abstractmethod
    def digest_statement(self, table: str, method: str) -> sa.Executable:
        """``checksum_statement`` by the method a stored digest was made with (a job's
        checksums are recomputed the way they were taken)."""

    def digest_connect_args(self) -> dict[str, Any]:
        """Driver arguments of a session whose digests equal the merge's."""
        return {}

    @abc.abstractmethod
    def consistent_read(self, conn: sa.Connection) -> None:
        """Make the connection's new transaction one read-only snapshot (its first
        statement)."""

    def digest_session(self, run: Runner) -> None:
        """In the current transaction: the settings under which digests equal the
        merge's (``digest_statement``)."""
        return None

    def catalog_fingerprint(self, conn: sa.Connection, merged: list[str], *,
                            rows: bool | None = None) -> dict[str, Any] | None:
        """The fingerprint of everything in the target outside the tables ``merged``
        (None: the dialect keeps none yet); ``rows``: also the rows of the other tables
        (None: where triggers on the merged tables fire on the merge's inserts)."""
        return None

    # -- restore -------------------------------------------------------------------------------
    @abc.abstractmethod
    def lock_for_restore(self, run: Runner) -> bool:
        """The target's one-merge lock, for the current transaction (False at once when
        a merge or another restore holds it)."""

    def tables_without_delete(self, run: Runner, tables: list[str]) -> list[str]:
        """Which of ``tables`` the session's user may not DELETE from, where the server
        tells (restore needs it; a merge does not)."""
        return []

    @abc.abstractmethod
    def missing_rows(self, run: Runner, before: str, table: str,
                     ignore: tuple[str, ...]) -> int:
        """How many rows of table ``before`` (counted as a multiset, columns ``ignore``
        left out) ``table`` no longer holds."""

    # -- the rows one transaction wrote (a merge's inserts, found again by restore) --------
    # Where row versions carry the id of the transaction that wrote them, a merge need not
    # copy a table to be undone: restore deletes the rows of its transaction.
    def snapshot_tables(self, tables: list[str]) -> list[str]:
        """Which of the merged ``tables`` a merge copies for restore (the others' rows
        are found by its transaction id)."""
        return list(tables)

    def transaction_id(self, run: Runner) -> int:
        """The current transaction's id, never reused (PostgreSQL: with its epoch)."""
        raise NotImplementedError

    def transactions_since(self, run: Runner, xid: int) -> int:
        """How many transaction ids were handed out since ``xid``."""
        raise NotImplementedError

    def transaction_rows(self, table: str, xid: int) -> sa.Executable:
        """One row: how many rows of ``table`` transaction ``xid`` wrote (and that no
        later one changed)."""
        raise NotImplementedError

    def digest_without_transaction(self, table: str, method: str, xid: int) -> sa.Executable:
        """``digest_statement`` over the rows of ``table`` that transaction ``xid`` did not
        write."""
        raise NotImplementedError

    def delete_transaction_rows(self, table: str, xid: int, *, later: bool) -> sa.Executable:
        """Delete the rows transaction ``xid`` wrote; ``later``: also those written after
        it."""
        raise NotImplementedError

    # -- encodings ----------------------------------------------------------------------------
    def encoding_scan_codec(self, source: ServerFacts, target: ServerFacts) -> str | None:
        """The Python codec a source's bytes must decode with to be valid in the target,
        when the server does not guarantee it (e.g. a SQL_ASCII source); else None."""
        return None

    def stored_codec(self, source: ServerFacts) -> str | None:
        """The Python codec of the bytes ``raw_bytes`` gives on ``source`` (None: bytes
        the server does not check, to be decoded with the target's codec)."""
        return None

    def conversion_problem(self, conn: sa.Connection, source: ServerFacts,
                           target: ServerFacts) -> str | None:
        """Why the source's server cannot convert its text to the target's encoding
        (the server's words), or None when it can."""
        return None

    def raw_bytes(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A text value as the bytes stored (for the few rows reported)."""
        return expr

    def has_high_bytes(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """True for values holding a byte >= 0x80 (evaluated in the server)."""
        raise NotImplementedError

