"""Moving source rows into staging tables in the target, without Python touching rows.

Staging tables are TEMP tables of the merge session (``ON COMMIT DROP``): a
killed run leaves nothing behind. Each has the model's columns (as bigint,
integer, timestamp or text) plus ``inp``, the input number (0 is the target,
1.. the sources in the order given), and for key-less tables a row number.

Two PostgreSQL transports fill them:

``copy``    binary ``COPY (SELECT ...) TO STDOUT`` in a read-only source session,
            relayed block by block into ``COPY staging FROM STDIN`` on the target.
            Needs neither dblink nor server-to-server pg_hba lines.
``dblink``  the target server connects to each source (``dblink_connect``: by SCRAM
            pass-through where validation established it, else with the connection
            string as a bind parameter, see ``tcmerge.links``), opens a cursor in a
            read-only repeatable-read transaction and inserts it into staging in
            chunks (``dblink_fetch``); plain ``dblink()`` would materialise everything.

Rows of rooms no other input has go straight into the target's tables (``direct``):
of the message tables also the owner's rows of shared rooms (they keep their ids), of
tc_users and tc_timelog only rows of rooms no other input has rows of. Of every message
row of a shared room the keys table gets (room, msg_id, date): of the owner's rows read
on the source, of the staged rows in the target. A second source session sharing the
staging snapshot (when the source exports snapshots) spools those keys while rows are
copied and computes the checksums while the target analyses.

With ``copy`` each source's rooms are spooled in the background, so that the sources read
them at the same time. Source queries that run beside the target's own work (checksums,
and the proof that a source is unchanged, read once the message rows are in) take turns:
the target is the merge's critical path, and one source query beside it leaves it a core
on a machine shared with the sources.
"""

from __future__ import annotations

import abc
import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql as sa_postgresql

from tcmerge.db import APPLICATION_NAME
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import DatabaseError
from tcmerge.links import PASSTHROUGH, catalog_link_auth, connect_passthrough, dblink_conninfo
from tcmerge.merge import pg
from tcmerge.merge.checksums import (
    RECORD,
    TEXT,
    checksums_query,
    choose_methods,
    proven_unchanged,
    record_blockers_query,
    shape_query,
    snapshot_xmin_query,
    unchanged_query,
)
from tcmerge.merge.pg import PgConn

STAGING_PREFIX = "tcm_s_"
#: (inp, room_jid) of every room each source holds in any of the HOLDING_TABLES.
HOLDERS = "tcm_s_holders"
#: (inp, room_jid) of every room each source has tc_timelog rows of.
TIMELOG_HOLDERS = "tcm_s_timelog_holders"
#: The room column of the room-keyed tables.
ROOM_COLUMN = {"tc_rooms": "room_jid", "tc_users": "room_jid", "tc_msgarchive": "to_jid",
               "tc_messages": "room_jid", "tc_timelog": "room_jid"}
#: A row in one of these makes its input a holder of the room (an owner candidate); a
#: timelog row does not (it records a visit, not the room).
HOLDING_TABLES = ("tc_rooms", "tc_users", "tc_msgarchive", "tc_messages")
#: Tables whose rows of rooms no other input has rows of go straight into the target table.
DIRECT_TABLES = ("tc_msgarchive", "tc_messages", "tc_users", "tc_timelog")
#: Per message table, its date column: with the room and msg_id, what renumbering needs.
DATE_COLUMN = {"tc_msgarchive": "sent_date", "tc_messages": "stamp"}
KEYS_PREFIX = "tcm_s_keys_"
PG_DIALECT = sa_postgresql.dialect()  # type: ignore[no-untyped-call]
#: Tables without a usable key get a row number so work tables can point at rows.
NUMBERED = ("tc_timelog", "jm", "aft_log")
DBLINK_FETCH_ROWS = 10_000
SPOOL_BLOCK = 1 << 20
#: The checksum session works beside the target's analysis: one process, no parallel
#: workers taking cores from it when source and target share a machine.
SIDE_SETTINGS = "SET max_parallel_workers_per_gather = 0"

#: progress(table, input label, rows so far)
Progress = Callable[[str, str, int], None]


def staging_name(table: str) -> str:
    return STAGING_PREFIX + table


def staging_type(column: sa.Column[Any]) -> str:
    """The staging type of a merged column: every value crosses unchanged. Text of any
    kind travels as text; a column of a kind the model does not know (a site's extra
    column) as its type in the target (``schema.merge_tables``)."""
    kind = column.type
    if isinstance(kind, sa.BigInteger):
        return "bigint"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, (sa.TIMESTAMP, sa.DateTime)):
        return "timestamptz" if kind.timezone else "timestamp"
    if isinstance(kind, (sa.String, sa.types.NullType)):
        return "text"
    return str(kind.compile(dialect=PG_DIALECT))


def for_input(table: sa.Table, inp: int) -> sa.Table:
    """The columns of ``table`` input ``inp`` has: a source may lack one the target has
    (``info["absent"]``); its rows get the target's default there (staging has it), or
    NULL."""
    if not any(inp in c.info.get("absent", ()) for c in table.columns):
        return table
    return sa.Table(table.name, sa.MetaData(), *(
        sa.Column(c.name, c.type, nullable=c.nullable, info=c.info) for c in table.columns
        if inp not in c.info.get("absent", ())))


def column_list(table: sa.Table, prefix: str | None = None) -> sql.Composed:
    names = [sql.Identifier(c.name) for c in table.columns]
    if prefix is not None:
        names = [sql.Identifier(prefix, c.name) for c in table.columns]
    return sql.SQL(", ").join(names)


def cast_list(table: sa.Table, prefix: str | None = None,
              exclude: tuple[str, ...] = ()) -> sql.Composed:
    """``col::stagingtype, ...``: what a source (or the target as input 0) is read as."""
    parts = []
    for c in table.columns:
        if c.name in exclude:
            continue
        ident = sql.Identifier(prefix, c.name) if prefix else sql.Identifier(c.name)
        parts.append(sql.SQL("{}::{}").format(ident, sql.SQL(staging_type(c))))
    return sql.SQL(", ").join(parts)


def keys_name(table: str) -> str:
    return KEYS_PREFIX + table


def keys_select(table: sa.Table, inp: int | sql.Composable, where: sql.Composable | None,
                source: str | None = None) -> sql.Composed:
    """(inp, room, msg_id, date) of a message table's rows in ``source`` (default: the
    table itself; a staging table carries ``inp``): what the analysis needs of every row
    of a shared room. Equal rows have equal rooms and dates, so only rows whose room and
    date another input also has are compared in full (see core.py)."""
    name = table.name
    query = sql.SQL("SELECT {}::smallint, {}::text, msg_id::bigint, {}::timestamp "
                    "FROM {}").format(
        sql.Literal(inp) if isinstance(inp, int) else inp, sql.Identifier(ROOM_COLUMN[name]),
        sql.Identifier(DATE_COLUMN[name]), sql.Identifier(source or name))
    return query if where is None else query + sql.SQL(" WHERE ") + where


def _shape(*columns: tuple[str, str]) -> tuple[sql.Composed, list[sql.Composable]]:
    """A work table's columns, named once: (its column list, its ``name type`` list)."""
    return (sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
            [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
             for name, kind in columns])


KEYS_COLUMNS, KEYS_TYPES = _shape(("inp", "smallint"), ("room_jid", "text"),
                                  ("msg_id", "bigint"), ("d", "timestamp"))
#: Per input, message table and room: its rows' count and two sums over their hashes
#: (``room_digest_select``), of the rooms whose rows the target may hold already.
ROOM_DIGESTS = "tcm_s_room_digests"
#: The same of only the row at each room's lowest id: a cheap first look that rules out
#: rooms whose first messages differ (a first merge's shared rooms with equal id ranges).
FIRST_ROW_DIGESTS = "tcm_s_first_row_digests"
#: The same of the timelog rows of the rooms whose visits several inputs have.
TIMELOG_DIGESTS = "tcm_s_timelog_digests"
#: ``vs``: the input a digest is compared with (a source's own; the target takes one per
#: source, of the rows where that source's would be, see ``room_digest_select``)
ROOM_DIGEST_COLUMNS, ROOM_DIGEST_TYPES = _shape(
    ("inp", "smallint"), ("tbl", "text"), ("room_jid", "text"), ("n", "bigint"),
    ("h1", "numeric"), ("h2", "numeric"), ("vs", "smallint"))
#: and, in the target only, the shift of the window a target's digest was read in (the
#: first-row probe tries two places per room, see ``rules_pg.settle_candidates``)
DIGEST_TABLE_TYPES = [*ROOM_DIGEST_TYPES, sql.SQL("shift bigint")]
HOLDERS_SHAPES = {HOLDERS: _shape(("inp", "smallint"), ("room_jid", "text"),
                                  ("lo", "bigint"), ("hi", "bigint")),
                  TIMELOG_HOLDERS: _shape(("inp", "smallint"), ("room_jid", "text"))}


def create_staging(conn: PgConn, tables: Iterable[sa.Table]) -> None:
    """TEMP staging tables, dropped at the end of the merge transaction.

    Besides one per table: the holders tables, and per message table a keys table with,
    for every row of a room held by several inputs (whatever path the row takes), its
    room, msg_id and date, read where the row is (a source or the target)."""
    tables = list(tables)
    shapes = [*((name, types) for name, (_, types) in HOLDERS_SHAPES.items()),
              *((name, DIGEST_TABLE_TYPES)
                for name in (ROOM_DIGESTS, FIRST_ROW_DIGESTS, TIMELOG_DIGESTS))]
    for name, types in shapes:
        conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            sql.Identifier(name), sql.SQL(", ").join(types)))
    for table in tables:
        if table.name in DATE_COLUMN:
            conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                sql.Identifier(keys_name(table.name)), sql.SQL(", ").join(KEYS_TYPES)))
        columns: list[sql.Composable] = [sql.SQL("inp smallint NOT NULL")]
        if table.name in NUMBERED:
            columns.append(sql.SQL("rn bigint GENERATED ALWAYS AS IDENTITY"))
        columns += [
            sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(staging_type(c)),
                                      _default(c))
            for c in table.columns
        ]
        conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            sql.Identifier(staging_name(table.name)), sql.SQL(", ").join(columns)))


def _default(column: sa.Column[Any]) -> sql.Composable:
    """A column some source lacks takes the target's default in staging (the source's rows
    are copied without it)."""
    default = column.info.get("default")
    if not column.info.get("absent") or not default:
        return sql.SQL("")
    return sql.SQL(" DEFAULT ") + sql.SQL(default)  # the target's own expression


def source_select(table: sa.Table, inp: int | None,
                  where: sql.Composable | None = None) -> sql.Composed:
    """The source query; ``inp`` None leaves the input column out (direct copies)."""
    query = sql.SQL("SELECT {}{} FROM {}").format(
        sql.SQL("") if inp is None else sql.SQL("{}::smallint, ").format(sql.Literal(inp)),
        cast_list(table), sql.Identifier(table.name))
    if where is not None:
        query = query + sql.SQL(" WHERE ") + where
    return query


def room_indexed_query(table: str) -> sql.Composed:
    """One row, 1 or 0: ``table`` has a valid plain btree index on (room column, msg_id,
    ...), both ascending, the room in its column's collation: its rooms and their id
    ranges can be read by index probes (see ``holders_select``)."""
    return sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM pg_index AS i JOIN pg_attribute AS a "
        "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "JOIN pg_attribute AS b ON b.attrelid = i.indrelid AND b.attnum = i.indkey[1] "
        "JOIN pg_class AS ic ON ic.oid = i.indexrelid JOIN pg_am AS am ON am.oid = ic.relam "
        "WHERE i.indrelid = to_regclass(quote_ident({t})) AND a.attname = {c} "
        "AND b.attname = 'msg_id' AND i.indnkeyatts >= 2 "
        "AND i.indoption[0] = 0 AND i.indoption[1] = 0 "
        "AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL "
        "AND i.indexprs IS NULL AND i.indcollation[0] = a.attcollation)::int").format(
            t=sql.Literal(table), c=sql.Literal(ROOM_COLUMN[table]))


def holders_select(inp: int, tables: Iterable[str],
                   indexed: Iterable[str] = ()) -> sql.Composed:
    """Every room an input holds in any room-keyed table: (inp, room_jid, lo, hi), where
    lo and hi are the room's lowest and highest msg_id in the message tables (NULL when
    it has none there): the ids its rows keep when it owns the room (core.py).

    Tables in ``indexed`` (see ``room_indexed_query``) are read by a skip scan of that
    index (a recursive query: per room one probe for the next room and its lowest id,
    one for its highest) instead of a scan of every row."""
    skip = set(indexed)
    parts: list[sql.Composable] = []
    for t in tables:
        if t not in HOLDING_TABLES:
            continue
        col, tab = sql.Identifier(ROOM_COLUMN[t]), sql.Identifier(t)
        if t not in DATE_COLUMN:
            parts.append(sql.SQL("SELECT {}::text, NULL::bigint, NULL::bigint "
                                 "FROM {}").format(col, tab))
        elif t in skip:
            parts.append(sql.SQL(
                "SELECT j::text, lo::bigint, (SELECT max(msg_id) FROM {t} WHERE {c} = s.j)::bigint "
                "FROM (WITH RECURSIVE r(j, lo) AS ("
                "(SELECT {c}, msg_id FROM {t} WHERE {c} IS NOT NULL ORDER BY {c}, msg_id "
                "LIMIT 1) UNION ALL SELECT n.{c}, n.msg_id FROM r CROSS JOIN LATERAL "
                "(SELECT {c}, msg_id FROM {t} WHERE {c} > r.j ORDER BY {c}, msg_id LIMIT 1) "
                "AS n) SELECT j, lo FROM r) AS s").format(c=col, t=tab))
        else:
            parts.append(sql.SQL("SELECT {c}::text, min(msg_id)::bigint, max(msg_id)::bigint "
                                 "FROM {t} GROUP BY {c}").format(c=col, t=tab))
    if not parts:  # --tables ma or mft alone: jm and aft_log have no rooms
        parts.append(sql.SQL("SELECT NULL::text, NULL::bigint, NULL::bigint WHERE false"))
    return sql.SQL("SELECT {}::smallint, room_jid, min(lo), max(hi) FROM ({}) "
                   "AS h (room_jid, lo, hi) GROUP BY room_jid").format(
        sql.Literal(inp), sql.SQL(" UNION ALL ").join(parts))


#: How ``room_digest_select`` reads a room: every row (its ``windows`` a relation of
#: rooms, or LISTED: an array of them), the row at its window's lowest id alone, or the
#: rows of its window.
ROOM, LISTED, FIRST_ROW, WINDOW = "room", "listed", "first row", "window"


def listed_windows(rooms: str, lows: str | None = None) -> sql.Composed:
    """Rooms and lowest ids given as PostgreSQL array texts (as ``array_agg(...)::text``
    writes them: one value each, however many rooms), for a server that has no table
    of them (a source): with ``lows`` the windows relation (``tcm_room``, ``tcm_lo``,
    ``tcm_hi``) of a FIRST_ROW read, else the array of rooms of a LISTED read (``=
    ANY`` of a constant array, which the server hashes; a semi-join with it was planned
    as a search per row, measured 30 times slower)."""
    if lows is None:
        return sql.SQL("{}::text[]").format(sql.Literal(rooms))
    return sql.SQL("(SELECT r, l, l FROM unnest({}::text[], {}::bigint[]) AS u (r, l)) "
                   "AS w (tcm_room, tcm_lo, tcm_hi)").format(sql.Literal(rooms),
                                                             sql.Literal(lows))


def room_digest_select(table: sa.Table, inp: int, windows: sql.Composable,
                       method: str = TEXT, read: str = ROOM,
                       vs: int | None = None, *, shifted: bool = False) -> sql.Composed:
    """Per room of the ``windows`` relation (``tcm_room``, and for FIRST_ROW and WINDOW
    ``tcm_lo`` and ``tcm_hi``): (inp, table, room, rows, two sums over its rows, ``vs``),
    the row ``ROOM_DIGESTS`` holds: of a 64-bit hash of each row (msg_id left out), and
    of a product of that hash's two halves. Two inputs with equal digests of a room hold
    rows equal in every column but msg_id, as many of each: a changed row goes unseen
    only if its hash is the old one's (one chance in 2^64, as for the table checksums),
    and several changes would have to cancel out in both sums, the second not linear in
    the first. (One hash per row: a second, seeded differently, cost as much again.)
    Each row is hashed as its columns cast to their staging types: by the types' own
    hash functions (``RECORD``, PostgreSQL 14+, as the checksums' record method; ten
    times cheaper), or its text, which is the same in every tcmerge session
    (``pg.SESSION_OPTIONS``) of servers of one encoding.

    ``read``: every row of each room (ROOM, LISTED), the row at its lowest id
    (FIRST_ROW), or the rows with ids in its window (WINDOW). ``vs``: the input the
    digests are compared with (default ``inp``). ``shifted`` (FIRST_ROW, the target's
    probe): ``windows`` has a column ``tcm_shift``, several windows a room; a digest per
    window, with its shift last (the digest tables' ``shift``)."""
    if shifted and read != FIRST_ROW:
        raise ValueError("only the first-row probe reads several windows a room")
    room = sql.Identifier(ROOM_COLUMN[table.name])
    if read == FIRST_ROW:
        # one row per room: a join the planner makes of key lookups (a semi-join would
        # read every row)
        rows = sql.SQL("{w} JOIN {t} ON {room} = w.tcm_room AND msg_id = w.tcm_lo")
    elif read == WINDOW:
        # per room its window of ids (most of the table: one scan)
        rows = sql.SQL("{t} WHERE EXISTS (SELECT FROM {w} WHERE w.tcm_room = {room} "
                       "AND msg_id BETWEEN w.tcm_lo AND w.tcm_hi)")
    elif read == LISTED:
        rows = sql.SQL("{t} WHERE {room} = ANY({w})")
    else:
        rows = sql.SQL("{t} WHERE {room} IN (SELECT w.tcm_room FROM {w})")
    hashed = sql.SQL("hash_record_extended({}, 0)" if method == RECORD
                     else "hashtextextended({}::text, 0)").format(
        sql.SQL("ROW({})").format(cast_list(table, exclude=("msg_id",))))
    # the halves' product: (h >> 32) in [-2^31, 2^31), h & 0xffffffff in [0, 2^32).
    # OFFSET 0 keeps the subquery whole: merged into the outer query, the hash would be
    # computed once per use (measured: twice the time)
    shift = sql.SQL(", shift" if shifted else "")
    return sql.SQL(
        "SELECT {inp}::smallint, {tbl}::text, room::text, count(*)::bigint, "
        "sum(h)::numeric, sum((h >> 32) * (h & 4294967295))::numeric, {vs}::smallint{shift} "
        "FROM (SELECT {room} AS room, {hashed} AS h{w_shift} FROM {rows} OFFSET 0) AS s "
        "GROUP BY room{shift}").format(
            inp=sql.Literal(inp), tbl=sql.Literal(table.name), room=room, hashed=hashed,
            rows=rows.format(t=sql.Identifier(table.name), room=room, w=windows),
            vs=sql.Literal(inp if vs is None else vs), shift=shift,
            w_shift=sql.SQL(", w.tcm_shift AS shift" if shifted else ""))


def room_digest_queries(tables: Iterable[sa.Table], inp: int, windows: sql.Composable,
                        method: str, read: str = ROOM, vs: int | None = None, *,
                        shifted: bool = False) -> list[tuple[str, sql.Composed]]:
    """(destination, query) of ``room_digest_select`` per table: FIRST_ROW reads go to
    FIRST_ROW_DIGESTS, timelog rows to TIMELOG_DIGESTS, the others to ROOM_DIGESTS."""
    def dest(table: sa.Table) -> str:
        if table.name == "tc_timelog":
            return TIMELOG_DIGESTS
        return FIRST_ROW_DIGESTS if read == FIRST_ROW else ROOM_DIGESTS
    return [(dest(t), room_digest_select(t, inp, windows, method, read, vs, shifted=shifted))
            for t in tables]


def in_rooms(table: str, rooms: list[str], *, negate: bool = False) -> sql.Composed:
    """``room column = ANY(<array literal>)``: the list travels as one quoted value.

    A row without a room (where a live table allows it) counts as in every list: such
    rows are never sent down the path of rooms held by one input."""
    room = sql.Identifier(ROOM_COLUMN[table])
    test = sql.SQL("{} = ANY({}::text[])").format(room, sql.Literal(rooms))
    if negate:
        return sql.SQL("({} IS NOT NULL AND NOT ({}))").format(room, test)
    return sql.SQL("({} IS NULL OR {})").format(room, test)


def except_rooms(table: str, rooms: str) -> sql.Composed:
    """Every row but those of ``rooms`` (an array text, as ``array_agg(...)::text``
    writes it), a row without a room included."""
    room = sql.Identifier(ROOM_COLUMN[table])
    return sql.SQL("({} IS NULL OR NOT ({} = ANY({}::text[])))").format(
        room, room, sql.Literal(rooms))


def _typed(table: sa.Table) -> list[sql.Composable]:
    return [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(staging_type(c)))
            for c in table.columns]


def staging_insert_columns(table: sa.Table) -> sql.Composed:
    return sql.SQL("inp, {}").format(column_list(table))


class SourceReader(abc.ABC):
    """One source, read in one read-only repeatable-read snapshot."""

    def __init__(self, ref: DatabaseRef, inp: int, target: PgConn,
                 turn: threading.Lock | None = None, link_auth: str | None = None) -> None:
        self.ref = ref
        self.inp = inp
        self.target = target
        #: how a server-to-server link to this source logs in, as validation decided it
        #: (dblink: pass-through or the password; None: decided from the catalogs)
        self.link_auth = link_auth
        #: taken by source work that runs beside the target's (see CopySource._background)
        self.turn = turn or threading.Lock()
        #: the tables whose checksums are taken (None: none), and the result
        self.sum_tables: list[str] | None = None
        self.sum_methods: dict[str, str] = {}
        self.sums: dict[str, str] | None = None

    @abc.abstractmethod
    def open(self) -> None: ...

    def checksums(self, tables: Iterable[str]) -> dict[str, str]:
        """Checksums in the staging snapshot (before ``finish``) or a new one (after); by
        the methods of the staging snapshot's checksums when those are taken."""
        tables = list(tables)
        try:
            rows = self.text_rows(checksums_query(self.methods(tables)), 3)
        except psycopg.Error as exc:
            raise self._fail(exc, "reading checksums of") from None
        return self._sums(rows, tables)

    def methods(self, tables: list[str]) -> dict[str, str]:
        """The digest method per table (see checksums.py), chosen once per source."""
        missing = [t for t in tables if t not in self.sum_methods]
        if missing:
            try:
                version = int(self.text_rows(
                    sql.SQL("SELECT current_setting('server_version_num')"), 1)[0][0])
                blocked = [r[0] for r in self.text_rows(record_blockers_query(missing), 1)] \
                    if version >= 140000 else []
            except psycopg.Error as exc:
                raise self._fail(exc, "reading the columns of") from None
            self.sum_methods.update(choose_methods(version, missing, blocked))
        return {t: self.sum_methods[t] for t in tables}

    @abc.abstractmethod
    def text_rows(self, query: sql.Composed | sql.SQL, width: int) -> list[tuple[str, ...]]:
        """Run one statement on the source; its rows, ``width`` text columns each."""

    def estimated_rows(self, table: str) -> int:
        """The source planner's row count of ``table`` (0 when never analysed)."""
        try:
            rows = self.text_rows(sql.SQL(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                "WHERE oid = to_regclass(quote_ident({}))").format(sql.Literal(table)), 1)
        except psycopg.Error as exc:
            raise self._fail(exc, "reading the statistics of") from None
        return int(rows[0][0]) if rows else 0

    def prepare_checksums(self, tables: Iterable[str]) -> None:
        """Right after ``open``: make the staging snapshot's checksums computable later.

        Transports that can share the snapshot with a second source session open it
        here; ``send_checksums`` starts the computation there, so that it runs while
        the target analyses (one busy core) rather than beside the staging. Otherwise
        ``finish`` computes them in the staging session before ending the snapshot."""
        self.sum_tables = list(tables)
        self.methods(self.sum_tables)

    def send_checksums(self) -> None:  # noqa: B027 - nothing to start without a side session
        """Start computing the staging snapshot's checksums: after ``finish``, or before the
        staging when the source has little left to stage (its rooms settled)."""

    def staged_checksums(self) -> dict[str, str]:
        """The checksums of the staging snapshot (after ``send_checksums``)."""
        if self.sums is None:
            raise DatabaseError(f"no checksums were taken of {self.ref.label}")
        return self.sums

    def _sums_in_snapshot(self) -> None:
        """In ``finish``, before the snapshot ends: the checksums, when no second session
        holds the snapshot."""
        if self.sum_tables is not None and self.sums is None and not self.has_side():
            self.sums = self.checksums(self.sum_tables)

    def has_side(self) -> bool:
        return False

    @staticmethod
    def _sums(rows: list[tuple[str, ...]], tables: Iterable[str]) -> dict[str, str]:
        """``checksums_query`` rows as ``{table: "count:digest"}``, in ``tables`` order."""
        found = {r[0]: f"{r[1]}:{r[2]}" for r in rows}
        return {t: found[t] for t in tables}

    def mark(self, tables: Iterable[str]) -> tuple[str, dict[str, str]]:
        """In the staging snapshot: its xmin and each table's shape (see checksums.py)."""
        try:
            xmin = self.text_rows(snapshot_xmin_query(), 1)[0][0]
            shapes = {t: (self.text_rows(shape_query(t), 1) or [("",)])[0][0] or ""
                      for t in tables}
        except psycopg.Error as exc:
            raise self._fail(exc, "reading the snapshot of") from None
        return xmin, shapes

    def check_unchanged(self, tables: Iterable[str], xmin: str) -> None:  # noqa: B027
        """After ``finish``: start reading what ``unchanged_since`` compares, where the
        transport can do it in the background (otherwise ``unchanged_since`` reads it)."""

    def unchanged_since(self, before: dict[str, str], xmin: str,
                        shapes: dict[str, str]) -> bool:
        """After ``finish``: True when the source provably holds exactly the rows whose
        checksums ``before`` are (taken in the snapshot of ``xmin``); False when that
        cannot be proven this cheap way (then compare full checksums)."""
        return proven_unchanged(before, xmin, shapes, self._unchanged_rows(before, xmin))

    def _unchanged_rows(self, tables: Iterable[str], xmin: str) -> dict[str, tuple[str, ...]]:
        try:
            return {t: self.text_rows(unchanged_query(t, xmin), 3)[0] for t in tables}
        except psycopg.Error as exc:
            raise self._fail(exc, "reading") from None

    @abc.abstractmethod
    def relay(self, select: sql.Composed, dest: str, columns: sql.Composable,
              types: list[sql.Composable], what: str, progress: Progress | None) -> int:
        """Move the rows of ``select`` (on the source) into ``dest`` (on the target)."""

    def stage(self, table: sa.Table, progress: Progress | None,
              where: sql.Composable | None = None) -> int:
        """Copy the rows of ``table`` into its staging table; return the row count."""
        table = for_input(table, self.inp)
        return self.relay(source_select(table, self.inp, where), staging_name(table.name),
                          staging_insert_columns(table),
                          [sql.SQL("inp smallint"), *_typed(table)], table.name, progress)

    def direct(self, table: sa.Table, where: sql.Composable, progress: Progress | None) -> int:
        """Copy the rows of ``table`` matching ``where`` straight into the target's table
        (a column the source lacks takes the target's default there)."""
        table = for_input(table, self.inp)
        return self.relay(source_select(table, None, where), table.name, column_list(table),
                          _typed(table), table.name, progress)

    def stage_keys(self, table: sa.Table, where: sql.Composable) -> int:
        """The keys (see ``create_staging``) of the rows of ``table`` matching ``where``."""
        return self.relay(keys_select(table, self.inp, where),
                          keys_name(table.name), KEYS_COLUMNS, KEYS_TYPES, table.name, None)

    def load_keys(self) -> None:  # noqa: B027 - keys went straight to the target
        """After staging: keys read in the background are put into the target."""

    def stage_room_digests(self, queries: Iterable[tuple[str, sql.Composed]]) -> None:
        """Into each destination the rows of its query (``room_digest_queries`` of this
        source), read in the staging snapshot; a transport may read them in the
        background, so they are in the target once ``load_room_digests`` returns."""
        for dest, query in queries:
            self.relay(query, dest, ROOM_DIGEST_COLUMNS, ROOM_DIGEST_TYPES, "rooms", None)

    def load_room_digests(self) -> None:  # noqa: B027 - the digests went straight in
        """After ``stage_room_digests``: digests read in the background are put into the
        target."""

    def holders_queries(self, tables: Iterable[str]
                        ) -> list[tuple[str, sql.Composable, sql.Composed]]:
        """(table, its columns, query on the source): the rooms this source holds
        (HOLDERS), and those it has timelog rows of (TIMELOG_HOLDERS)."""
        tables = list(tables)
        holding = [t for t in tables if t in HOLDING_TABLES]
        try:
            # tc_rooms and tc_users hold a row or a few per room: a plain scan is cheaper
            indexed = [t for t in holding if t in DATE_COLUMN
                       if self.text_rows(room_indexed_query(t), 1)[0][0] == "1"]
        except psycopg.Error as exc:
            raise self._fail(exc, "reading the indexes of") from None
        queries: list[tuple[str, sql.Composable, sql.Composed]] = [
            (HOLDERS, HOLDERS_SHAPES[HOLDERS][0], holders_select(self.inp, holding, indexed))]
        if "tc_timelog" in tables:
            queries.append((TIMELOG_HOLDERS, HOLDERS_SHAPES[TIMELOG_HOLDERS][0], sql.SQL(
                "SELECT DISTINCT {}::smallint, {}::text FROM {}").format(
                sql.Literal(self.inp), sql.Identifier(ROOM_COLUMN["tc_timelog"]),
                sql.Identifier("tc_timelog"))))
        return queries

    def stage_holders(self, tables: Iterable[str]) -> None:
        """Into HOLDERS and TIMELOG_HOLDERS: the rooms this source holds (see
        ``holders_queries``); a transport may read them in the background, so they are
        in the target once ``load_holders`` returns."""
        for dest, columns, query in self.holders_queries(tables):
            self.relay(query, dest, columns, HOLDERS_SHAPES[dest][1], "rooms", None)

    def load_holders(self) -> None:  # noqa: B027 - the rooms went straight to the target
        """After ``stage_holders`` of every source: rooms read in the background are put
        into the target."""

    @abc.abstractmethod
    def finish(self) -> None:
        """End the staging snapshot (the session stays open for later checksums)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def _fail(self, exc: BaseException, doing: str) -> DatabaseError:
        return pg.wrap(exc, self.ref, doing)


class CopySource(SourceReader):
    """The binary COPY relay through this process."""

    name = "copy"

    def __init__(self, ref: DatabaseRef, inp: int, target: PgConn,
                 turn: threading.Lock | None = None, link_auth: str | None = None) -> None:
        super().__init__(ref, inp, target, turn, link_auth)
        self.conn: PgConn | None = None
        #: the second session sharing the staging snapshot: keys while rows are copied,
        #: then the checksums while the target analyses
        self.side: PgConn | None = None
        #: work in the background (one at a time): its thread, session and result
        self.work: threading.Thread | None = None
        self.work_conn: PgConn | None = None
        self.work_result: Any = None
        self.stopping = False
        #: rows spooled in the background: (table, columns, temporary file)
        self.spools: list[tuple[str, sql.Composable, IO[bytes]]] = []
        self.unchanged_started = False
        self.sums_sent = False

    def prepare_checksums(self, tables: Iterable[str]) -> None:
        super().prepare_checksums(tables)
        assert self.conn is not None
        try:
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error:
            # no exported snapshots here: ``finish`` computes them in this session
            try:
                self.conn.execute("ROLLBACK")
                pg.begin_read_only(self.conn)
            except psycopg.Error as exc:
                raise self._fail(exc, "opening") from None
            return
        assert row is not None
        self.side = pg.open_session(self.ref, role="source", autocommit=True)
        try:
            self.side.execute(SIDE_SETTINGS)
            # like the staging session: what it sends is in the target's encoding
            pg.set_client_encoding(self.side, pg.server_encoding(self.target))
            pg.begin_read_only(self.side)
            self.side.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                sql.Literal(str(row[0]))))
        except psycopg.Error as exc:
            raise self._fail(exc, "opening") from None

    def has_side(self) -> bool:
        return self.side is not None

    def send_checksums(self) -> None:
        if self.side is None or self.sums is not None or self.sums_sent:
            return
        self._wait("reading keys of")  # the side session does one thing at a time
        tables = list(self.sum_tables or [])
        query = checksums_query(self.methods(tables))

        def checksums(side: PgConn) -> None:
            # kept by the work itself: whichever wait joins it, the result stays
            self.sums = self._sums(_text_rows(side, query, 3), tables)

        self._background(self.side, checksums, queued=True)
        self.sums_sent = True

    def staged_checksums(self) -> dict[str, str]:
        if self.sums_sent:
            self._wait("reading checksums of")
            self.sums_sent = False
            self._close_side()
        return super().staged_checksums()

    def stage_keys(self, table: sa.Table, where: sql.Composable) -> int:
        """With a side session: the keys are spooled to a temporary file by it while this
        session moves rows (``load_keys`` puts them into the target); once it computes
        the checksums, read by this session."""
        if self.side is None or self.sums_sent:
            return super().stage_keys(table, where)
        self._wait("reading keys of")  # one statement at a time in the side session
        self._spool(self.side, [(keys_name(table.name), KEYS_COLUMNS,
                                 keys_select(table, self.inp, where))])
        return 0

    def load_keys(self) -> None:
        self._load_spools("keys")

    def stage_holders(self, tables: Iterable[str]) -> None:
        """Spooled in the background: the next source's holders are read meanwhile."""
        self._spool(self._session(), self.holders_queries(tables))

    def load_holders(self) -> None:
        self._load_spools("rooms")

    def stage_room_digests(self, queries: Iterable[tuple[str, sql.Composed]]) -> None:
        """Spooled in the background: the target computes its own digests meanwhile.
        Several sources take turns: the target's digests, one input after the other,
        are the longest path, and a second source beside them only slowed it (a merge
        run again into an empty target, two sources of 1,000,000 rows: the target's
        first input took 2.0 s beside both sources, its second 1.0 s alone)."""
        self._spool(self._session(), [(dest, ROOM_DIGEST_COLUMNS, query)
                                      for dest, query in queries], queued=True)

    def load_room_digests(self) -> None:
        self._load_spools("rooms")

    def check_unchanged(self, tables: Iterable[str], xmin: str) -> None:
        queries = [(t, unchanged_query(t, xmin)) for t in tables]
        self._background(self._session(), lambda conn: {
            t: _text_rows(conn, q, 3)[0] for t, q in queries}, queued=True)
        self.unchanged_started = True

    def _unchanged_rows(self, tables: Iterable[str], xmin: str) -> dict[str, tuple[str, ...]]:
        if not self.unchanged_started:
            return super()._unchanged_rows(tables, xmin)
        self.unchanged_started = False
        rows: dict[str, tuple[str, ...]] = self._wait("reading")
        return rows

    def _session(self) -> PgConn:
        """The staging session, free: no background work is using it."""
        assert self.conn is not None and self.work_conn is not self.conn
        return self.conn

    def _spool(self, conn: PgConn,
               queries: Sequence[tuple[str, sql.Composable, sql.Composable]], *,
               queued: bool = False) -> None:
        """In the background: each query's rows into a temporary file, for its table
        (``_load_spools`` puts them into the target); ``queued``: see ``_background``."""
        if not queries:
            return  # nothing to spool: no work started, none for _load_spools to wait on
        files = []
        for dest, columns, _query in queries:
            spool = tempfile.TemporaryFile(prefix="tcmerge-spool-")  # noqa: SIM115 - closed by _load_spools or close
            self.spools.append((dest, columns, spool))
            files.append(spool)

        def spool_rows(conn: PgConn) -> None:
            for (_dest, _columns, query), spool in zip(queries, files, strict=True):
                with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(
                        query)) as out:
                    pg.relay_copy(conn, out, spool.write)

        self._background(conn, spool_rows, queued=queued)

    def _load_spools(self, what: str) -> None:
        if not self.spools:
            return  # nothing spooled: what may run is other work (the checksums), its own
        self._wait(f"reading {what} of")
        spools, self.spools = self.spools, []
        for dest, columns, spool in spools:
            with spool:
                spool.seek(0)
                copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                    sql.Identifier(dest), columns)
                try:
                    with self.target.cursor().copy(copy_in) as into:
                        while block := spool.read(SPOOL_BLOCK):
                            into.write(block)
                except psycopg.Error as exc:
                    raise pg.wrap(exc, self.ref, f"writing {what} of") from None

    def _background(self, conn: PgConn, work: Callable[[PgConn], Any], *,
                    queued: bool = False) -> None:
        """Run ``work(conn)`` in a thread; ``_wait`` gives its result. ``queued`` work runs
        beside the target's own work: it takes its turn (shared by the merge's readers),
        so that one such source query at a time competes with the target for a core."""
        assert self.work is None
        self.stopping = False

        def run() -> None:
            try:
                with self.turn if queued else contextlib.nullcontext():
                    if self.stopping:
                        raise DatabaseError("stopped before it started")
                    self.work_result = work(conn)
            except BaseException as exc:  # handed to the merge's thread
                self.work_result = exc

        self.work_conn = conn
        self.work = threading.Thread(target=run, name=f"tcmerge-source-{self.inp}",
                                     daemon=True)
        self.work.start()

    def _wait(self, doing: str) -> Any:
        """The result of the background work (None when nothing runs); its error as a
        DatabaseError."""
        if self.work is None:
            return None
        self.work.join()
        self.work = self.work_conn = None
        result, self.work_result = self.work_result, None
        if isinstance(result, BaseException):
            raise self._fail(result, doing) from None
        return result

    def _stop(self) -> None:
        """Cancel the background work, if any, and wait for its thread."""
        if self.work is None:
            return
        self.stopping = True
        if self.work_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.work_conn.cancel()
        self.work.join()
        self.work = self.work_conn = self.work_result = None

    def _close_side(self) -> None:
        side, self.side = self.side, None
        if side is None:
            return
        if self.work_conn is side:
            self._stop()
        side.close()

    def open(self) -> None:
        self.conn = pg.open_session(self.ref, role="source", autocommit=True)
        try:
            # rows arrive already in the target's encoding; the target converts nothing
            pg.set_client_encoding(self.conn, pg.server_encoding(self.target))
            pg.begin_read_only(self.conn)
        except psycopg.Error as exc:
            raise self._fail(exc, "opening") from None

    def text_rows(self, query: sql.Composed | sql.SQL, width: int) -> list[tuple[str, ...]]:
        return _text_rows(self._session(), query, width)

    def relay(self, select: sql.Composed, dest: str, columns: sql.Composable,
              types: list[sql.Composable], what: str, progress: Progress | None) -> int:
        conn = self._session()
        copy_out = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(select)
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(dest), columns)
        tcur = self.target.cursor()
        tick = None if progress is None else (
            lambda rows: progress(what, self.ref.label, rows))
        try:
            with conn.cursor().copy(copy_out) as out, tcur.copy(copy_in) as into:
                pg.relay_copy(conn, out, into.write, every=20_000, tick=tick)
        except psycopg.Error as exc:
            if conn.broken or conn.closed or not self.target.broken:
                raise self._fail(exc, f"reading {what} from") from None
            raise pg.wrap(exc, self.ref, "writing rows of") from None
        rows = max(tcur.rowcount, 0)
        if progress is not None:
            progress(what, self.ref.label, rows)
        return rows

    def finish(self) -> None:
        assert self.conn is not None
        self._sums_in_snapshot()
        try:
            self.conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise self._fail(exc, "reading") from None

    def close(self) -> None:
        self._stop()
        self._close_side()
        for _dest, _columns, spool in self.spools:
            spool.close()
        self.spools = []
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _text_rows(conn: PgConn, query: sql.Composed | sql.SQL,
               width: int) -> list[tuple[str, ...]]:
    """The rows of ``query``, ``width`` columns each as text ('' for NULL)."""
    return [tuple("" if v is None else str(v) for v in row[:width])
            for row in conn.execute(query).fetchall()]


def dblink_schema(conn: PgConn) -> str | None:
    """The schema holding the dblink extension in the target, or None when not installed."""
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'dblink'"
    ).fetchone()
    return None if row is None else str(row[0])


def dblink_connect(conn: PgConn, schema: str, name: str, ref: DatabaseRef,
                   auth: str | None = None) -> None:
    """Open the named dblink connection from the target server to ``ref``.

    By SCRAM pass-through where validation established that it works (a foreign server
    and user mapping that live only in a rolled-back savepoint; no password crosses),
    else with the password in the connection string, which validation announced
    (DBLINK_SENDS_PASSWORD): a bind parameter, never part of SQL text, of this
    process's arguments, or of an error message. ``auth``: validation's decision
    (``links.PASSTHROUGH`` or ``links.PASSWORD``); None: the target's catalogs decide.
    """
    application_name = f"{APPLICATION_NAME}-dblink"
    try:
        if (auth or catalog_link_auth(conn)) == PASSTHROUGH:
            connect_passthrough(conn, schema, name, ref, application_name=application_name,
                                options=pg.SESSION_OPTIONS)
            return
        info = dblink_conninfo(ref, application_name=application_name,
                               options=pg.SESSION_OPTIONS)
        conn.execute(sql.SQL("SELECT {}.dblink_connect(%s, %s)").format(
            sql.Identifier(schema)), (name, info))
    except psycopg.Error as exc:
        raise pg.wrap(exc, ref, "dblink connection from the target to") from None


class DblinkSource(SourceReader):
    """The target server pulls the rows itself through a dblink cursor."""

    name = "dblink"

    def __init__(self, ref: DatabaseRef, inp: int, target: PgConn,
                 turn: threading.Lock | None = None, link_auth: str | None = None) -> None:
        super().__init__(ref, inp, target, turn, link_auth)
        self.link = f"tcmerge_src_{inp}"
        self.schema = ""
        self.connected = False
        self.in_snapshot = False
        #: the second link computing the staging snapshot's checksums (dblink_send_query)
        self.side = f"tcmerge_sum_{inp}"
        self.side_connected = False
        self.side_sent = False

    def _fn(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def _exec(self, statement: str) -> None:
        self.target.execute(sql.SQL("SELECT {}(%s, %s)").format(self._fn("dblink_exec")),
                            (self.link, statement))

    def open(self) -> None:
        schema = dblink_schema(self.target)
        if schema is None:
            raise DatabaseError("the dblink extension is not installed in the target "
                                "(CREATE EXTENSION dblink), or use --transport copy",
                                code="DBLINK_UNAVAILABLE")
        self.schema = schema
        dblink_connect(self.target, schema, self.link, self.ref, self.link_auth)
        self.connected = True
        try:
            self._exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except psycopg.Error as exc:
            raise self._fail(exc, "opening") from None
        self.in_snapshot = True

    def prepare_checksums(self, tables: Iterable[str]) -> None:
        super().prepare_checksums(tables)
        self.target.execute("SAVEPOINT tcmerge_checksums")
        try:
            snapshot = self.text_rows(sql.SQL("SELECT pg_export_snapshot()"), 1)[0][0]
        except psycopg.Error:
            # no exported snapshots here: ``finish`` computes them through the staging link
            self.target.execute("ROLLBACK TO SAVEPOINT tcmerge_checksums")
            try:
                self._exec("ROLLBACK")
                self._exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            except psycopg.Error as exc:
                raise self._fail(exc, "opening") from None
            return
        self.target.execute("RELEASE SAVEPOINT tcmerge_checksums")
        dblink_connect(self.target, self.schema, self.side, self.ref, self.link_auth)
        self.side_connected = True
        try:
            for statement in (SIDE_SETTINGS, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                              pg.sql_text(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                                  sql.Literal(snapshot)), self.target)):
                self.target.execute(sql.SQL("SELECT {}(%s, %s)").format(
                    self._fn("dblink_exec")), (self.side, statement))
        except psycopg.Error as exc:
            raise self._fail(exc, "opening") from None

    def has_side(self) -> bool:
        return self.side_connected

    def send_checksums(self) -> None:
        if not self.side_connected or self.side_sent or self.sums is not None:
            return
        try:
            # asynchronous: the source computes while the target works on
            self.target.execute(sql.SQL("SELECT {}(%s, %s)").format(
                self._fn("dblink_send_query")),
                (self.side, pg.sql_text(checksums_query(self.methods(self.sum_tables or [])),
                             self.target)))
        except psycopg.Error as exc:
            raise self._fail(exc, "reading checksums of") from None
        self.side_sent = True

    def staged_checksums(self) -> dict[str, str]:
        if not self.side_sent:
            return super().staged_checksums()
        get = sql.SQL("SELECT * FROM {}(%s) AS t(t text, n text, h text)").format(
            self._fn("dblink_get_result"))
        try:
            rows = self.target.execute(get, (self.side,)).fetchall()
            self.target.execute(get, (self.side,)).fetchall()  # the end of the results
            self.side_sent = False
        except psycopg.Error as exc:
            raise self._fail(exc, "reading checksums of") from None
        self._close_side()
        self.sums = self._sums([tuple(str(v) for v in r) for r in rows],
                               self.sum_tables or ())
        return self.sums

    def _close_side(self) -> None:
        if self.side_connected and not self.target.broken and not self.target.closed:
            with contextlib.suppress(psycopg.Error):
                self.target.execute(sql.SQL("SELECT {}(%s)").format(
                    self._fn("dblink_disconnect")), (self.side,))
        self.side_connected = False

    def text_rows(self, query: sql.Composed | sql.SQL, width: int) -> list[tuple[str, ...]]:
        columns = sql.SQL(", ").join(sql.SQL("c{} text").format(sql.SQL(str(i)))
                                     for i in range(width))
        rows = self.target.execute(sql.SQL("SELECT * FROM {}(%s, %s) AS t({})").format(
            self._fn("dblink"), columns), (self.link, pg.sql_text(query, self.target))).fetchall()
        return [tuple("" if v is None else str(v) for v in row) for row in rows]

    def relay(self, select: sql.Composed, dest: str, columns: sql.Composable,
              types: list[sql.Composable], what: str, progress: Progress | None) -> int:
        cursor = f"tcmerge_{dest}"
        query = pg.sql_text(select, self.target)
        fetch = sql.SQL("INSERT INTO {} ({}) SELECT * FROM {}(%s, %s, %s) AS t({})").format(
            sql.Identifier(dest), columns, self._fn("dblink_fetch"), sql.SQL(", ").join(types))
        total = 0
        try:
            self.target.execute(sql.SQL("SELECT {}(%s, %s, %s)").format(
                self._fn("dblink_open")), (self.link, cursor, query))
            while True:
                cur = self.target.execute(fetch, (self.link, cursor, DBLINK_FETCH_ROWS))
                if cur.rowcount <= 0:
                    break
                total += cur.rowcount
                if progress is not None:
                    progress(what, self.ref.label, total)
            self.target.execute(sql.SQL("SELECT {}(%s, %s)").format(
                self._fn("dblink_close")), (self.link, cursor))
        except psycopg.Error as exc:
            raise self._fail(exc, f"reading {what} through dblink from") from None
        return total

    def finish(self) -> None:
        if self.in_snapshot:
            self._sums_in_snapshot()
            try:
                self._exec("COMMIT")
            except psycopg.Error as exc:
                raise self._fail(exc, "reading") from None
            self.in_snapshot = False

    def close(self) -> None:
        self._close_side()
        if self.connected and not self.target.broken and not self.target.closed:
            # inside the merge transaction; a failed transaction drops the link with the
            # session anyway
            with contextlib.suppress(psycopg.Error):
                self.target.execute(sql.SQL("SELECT {}(%s)").format(
                    self._fn("dblink_disconnect")), (self.link,))
        self.connected = False


TRANSPORTS: dict[str, type[SourceReader]] = {"copy": CopySource, "dblink": DblinkSource}


_BINARY_TYPES = {"bigint": ("bigint",), "integer": ("integer",),
                 "timestamp": ("timestamp without time zone",),
                 "timestamptz": ("timestamp with time zone",),
                 "text": ("text", "character varying", "character")}


def direct_compatible(conn: PgConn, table: sa.Table) -> bool:
    """True when binary rows of the staging types load into the target's live table as is
    (otherwise its rows go through staging and INSERT ... SELECT, which casts)."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(quote_ident(%s)) AND a.attnum > 0 "
        "AND NOT a.attisdropped", (table.name,)).fetchall()
    live = {str(name): str(kind) for name, kind in rows}
    return all(live.get(c.name) in _BINARY_TYPES.get(staging_type(c), ())
               for c in table.columns)
