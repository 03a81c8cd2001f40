"""The merge rules on PostgreSQL: ``tcmerge.merge.core``'s, over what the COPY relay and
dblink leave in the target.

The rules are core's statements, compiled for PostgreSQL (work tables are TEMP tables,
made inside the merge transaction and analysed once filled). What differs is where the
rows are, which the transports decide (``transport.DIRECT_TABLES``): rows of rooms held
by one input are copied straight into the target's table, and of the message tables the
owner's rows of shared rooms too (they keep their ids); only the rest is staged. So:

* a room's holders come from the holders table the transports fill before any row moves
  (``tcm_s_holders``: per input its rooms and their id ranges), not from the rows;
* the message tables' keys (room, msg_id and date of every row of a shared room, from
  every input) are in the keys tables the transports fill (the owner's rows' read on the
  sources while copying, the target's own before any write, the staged rows' joined
  here); the rows in the target's table of a shared room are its owner's (the target's
  own, or copied straight in), the others staged;
* the row hash is taken as exact (128 bits: md5 of the row's injective text, or on 14+
  two seeded hashes of its values by type where the columns allow): no
  column-by-column check;
* counts add the rows copied straight in (``direct``);
* rooms whose every message a source has the target holds already (a merge run again:
  the target's rows where the first merge left them, under the source's ids or
  renumbered to the top of its range, with equal digests in every message table,
  ``settle``), and rooms whose visits a source has exactly as the target
  (``settle_timelog``), are not moved at all: their rows count as duplicates (core's
  ``settled``), and the target's rows of a room settled for every other holder are not
  compared.

Everything runs in the caller's transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from tcmerge.dialects.constructs import UpdateFrom
from tcmerge.merge.checksums import RECORD, methods_for
from tcmerge.merge.core import MESSAGES, MergeRules, Names
from tcmerge.merge.pg import PgConn
from tcmerge.merge.transport import (
    DATE_COLUMN,
    FIRST_ROW,
    HOLDING_TABLES,
    ROOM,
    ROOM_COLUMN,
    ROOM_DIGESTS,
    TIMELOG_DIGESTS,
    WINDOW,
    holders_select,
    keys_name,
    keys_select,
    room_digest_queries,
    room_indexed_query,
    staging_name,
    staging_type,
)
from tcmerge.sqlexec import PsycopgRunner

#: the keys tables (``transport.create_staging``) are the rules' ``arch_k`` and ``msg_k``
_KEYS = {f"{work}_k": keys_name(name) for name, (work, *_rest) in MESSAGES.items()}
NAMES = Names(staging=staging_name, work=lambda name: _KEYS.get(name, f"tcm_w_{name}"))
_STAGING_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "bigint": sa.BigInteger(), "integer": sa.Integer(), "timestamp": sa.TIMESTAMP(),
    "timestamptz": sa.TIMESTAMP(timezone=True), "text": sa.Text()}


def _holders_table(table: str) -> str:
    """Where each input's rooms of ``table`` are: its visits' own (a visit does not make
    a holder), else the holders table."""
    return "tcm_s_timelog_holders" if table == "tc_timelog" else "tcm_s_holders"


#: where a table's settled rooms are (``settle``, ``settle_timelog``), by input
SETTLED_IN = {"tc_msgarchive": "tcm_w_settled", "tc_messages": "tcm_w_settled",
              "tc_timelog": "tcm_w_visits"}
HOLDERS = sa.table("tcm_s_holders", sa.column("inp"), sa.column("room_jid"),
                   sa.column("lo"), sa.column("hi"))


def _q(text: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(text).format(**parts)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


class PgRules(MergeRules):
    """Analyse and apply the merge of what the transports moved (one session)."""

    creates_work_in_transaction = True
    hash_is_exact = True

    def __init__(self, conn: PgConn, tables: tuple[sa.Table, ...], inputs: list[str]) -> None:
        # the row hash by the values' types where the server and the columns allow it
        # (checksums.py's record method), before the rules' queries are built
        by_type = {t for t, m in methods_for(conn, [t.name for t in tables]).items()
                   if m == RECORD}
        super().__init__(PsycopgRunner(conn), tables, inputs, NAMES, hashed_by_type=by_type)
        self.conn = conn

    # -- helpers ---------------------------------------------------------------------------
    def _x(self, query: sql.Composed | sql.SQL) -> int:
        return int(self.conn.execute(query).rowcount)

    def _one(self, query: sql.Composed | sql.SQL) -> Any:
        row = self.conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    def _work(self, name: str, query: sql.Composed | sql.SQL) -> None:
        """A helper table of this dialect's own (not one of the rules' work tables)."""
        self._x(_q("CREATE TEMP TABLE {n} ON COMMIT DROP AS {q}", n=_ident(name), q=query))
        self._x(_q("ANALYZE {n}", n=_ident(name)))

    def _filled(self, name: str) -> None:
        self._x(_q("ANALYZE {n}", n=_ident(self.names.work(name))))

    # -- owners, and what the transports need to know before rows move -----------------------
    def _holder_rows(self) -> list[sa.Select[Any]]:
        # the holders table has per input and room the lowest and highest msg_id
        return [sa.select(HOLDERS.c.inp, HOLDERS.c.room_jid, HOLDERS.c.lo.label("msg_id")),
                sa.select(HOLDERS.c.inp, HOLDERS.c.room_jid, HOLDERS.c.hi)]

    def target_holders(self) -> None:
        """The target's rooms into the holders table, read in place by the sources'
        query (while the sources read theirs)."""
        holding = [n for n in HOLDING_TABLES if n in self.tables]
        indexed = [n for n in holding if n in DATE_COLUMN
                   and self._one(room_indexed_query(n)) == 1]
        self._x(_q("INSERT INTO tcm_s_holders {q}", q=holders_select(0, holding, indexed)))

    def rooms_owners(self) -> None:
        """The room work table (owner, holders, the owner's id range per room), from the
        holders table: every input's rooms (``target_holders`` and the sources', filled
        before any row is moved)."""
        super().rooms_owners()
        for name, columns in (("tcm_w_settled", "inp smallint, room_jid text"),
                              ("tcm_w_windows", "inp smallint, room_jid text, lo bigint, "
                                                "hi bigint, shift bigint"),
                              ("tcm_w_visits", "inp smallint, room_jid text")):
            self._x(_q("CREATE TEMP TABLE {n} ({c}) ON COMMIT DROP", n=_ident(name),
                       c=sql.SQL(columns)))
        if "tc_timelog" in self.tables:
            # timelog rows do not make a holder: their own sharing decides their path
            self._work("tcm_w_timelog_room", sql.SQL(
                "SELECT room_jid FROM (SELECT DISTINCT 0 AS inp, room_jid::text AS room_jid "
                "FROM tc_timelog UNION ALL SELECT inp, room_jid FROM tcm_s_timelog_holders) "
                "AS h WHERE room_jid IS NOT NULL GROUP BY room_jid "
                "HAVING count(DISTINCT inp) > 1"))

    # -- rooms whose rows the target holds already ------------------------------------------
    # The candidates stay in the target (``tcm_w_windows``, ``tcm_w_visits``): a source
    # gets their list as one array text (``room_lists``), not a Python object per room.
    def settle_candidates(self, inp: int) -> int:
        """Into ``tcm_w_windows``: the rooms input ``inp`` has messages of, each with the
        places in the target's id range its ids may have been given by a first merge (a
        window: the source's ids shifted): candidates for ``settle``. A merge run again
        holds them so: a room the source alone had, or owned, keeps its ids (shift 0);
        one renumbered after the owner's rows (rule 3) has them at the top of the
        target's range (the shift that puts the source's highest id on the target's).
        The first-row probe keeps one place a room (``keep_equal``, ``per_window``).
        Returns how many windows."""
        return self._x(sql.SQL(
            "INSERT INTO tcm_w_windows SELECT DISTINCT s.inp, s.room_jid, s.lo, s.hi, g.shift "
            "FROM tcm_s_holders AS s JOIN tcm_s_holders AS t "
            "ON t.inp = 0 AND t.room_jid = s.room_jid "
            "CROSS JOIN LATERAL (VALUES (t.hi - s.hi), (0)) AS g (shift) "
            "WHERE s.inp = {} AND g.shift >= 0 AND s.lo + g.shift >= t.lo "
            "AND s.hi + g.shift <= t.hi").format(sql.Literal(inp)))

    def timelog_candidates(self, inp: int) -> int:
        """Into ``tcm_w_visits``: the rooms whose visits input ``inp`` and the target
        have (``tcm_w_timelog_room`` holds the rooms of several inputs' visits):
        ``settle_timelog``'s candidates. Returns how many."""
        return self._x(sql.SQL(
            "INSERT INTO tcm_w_visits SELECT h.inp, h.room_jid FROM tcm_s_timelog_holders "
            "AS h JOIN tcm_w_timelog_room AS r ON r.room_jid = h.room_jid "
            "WHERE h.inp = {} AND h.room_jid IN (SELECT room_jid FROM tc_timelog)").format(
            sql.Literal(inp)))

    def room_lists(self, inp: int, table: str, *, lows: bool = False
                   ) -> tuple[str, str | None]:
        """Input ``inp``'s rooms in ``table`` (``tcm_w_windows``, ``tcm_w_visits``,
        ``tcm_w_settled``), and with ``lows`` their lowest ids, as array texts in one
        order: what a source reads (``transport.listed_windows``, ``except_rooms``). Each
        room once, though ``tcm_w_windows`` may hold two places of it in the target."""
        row = self.conn.execute(_q(
            "SELECT coalesce(array_agg(room_jid ORDER BY room_jid), '{{}}')::text, {lo} "
            "FROM (SELECT DISTINCT room_jid{lo_column} FROM {t} WHERE inp = %s) AS r",
            t=_ident(table), lo_column=sql.SQL(", lo" if lows else ""),
            lo=sql.SQL("coalesce(array_agg(lo ORDER BY room_jid), '{}')::text") if lows
            else sql.SQL("NULL")), (inp,)).fetchone()
        assert row is not None
        return str(row[0]), None if row[1] is None else str(row[1])

    def target_room_digests(self, inps: Iterable[int], method: str, *,
                            first_rows: bool = False) -> None:
        """Into ROOM_DIGESTS (``first_rows``: FIRST_ROW_DIGESTS), input 0, per source
        (``vs``): the target's digests of its rows in each candidate's window (the row
        at its lowest id)."""
        tables = [self.tables[n] for n in DATE_COLUMN if n in self.tables]
        for inp in sorted(inps):
            # the probe reads every window of a room (its digests carry the shift); the
            # full digests the one window the probe left
            windows = sql.SQL(
                "(SELECT room_jid, lo + shift, {}, shift FROM tcm_w_windows WHERE inp = {}) "
                "AS w (tcm_room, tcm_lo, tcm_hi, tcm_shift)").format(
                sql.SQL("lo + shift" if first_rows else "hi + shift"), sql.Literal(inp))
            for dest, query in room_digest_queries(
                    tables, 0, windows, method, FIRST_ROW if first_rows else WINDOW, vs=inp,
                    shifted=first_rows):
                self._x(_q("INSERT INTO {d} {q}", d=_ident(dest), q=query))

    def target_timelog_digests(self, inps: Iterable[int], method: str) -> None:
        """Into TIMELOG_DIGESTS, input 0, per source: the target's digests of its
        timelog rows of each candidate room."""
        for inp in sorted(inps):
            windows = sql.SQL("(SELECT room_jid FROM tcm_w_visits WHERE inp = {}) "
                              "AS w (tcm_room)").format(sql.Literal(inp))
            for dest, query in room_digest_queries([self.tables["tc_timelog"]], 0, windows,
                                                   method, ROOM, vs=inp):
                self._x(_q("INSERT INTO {d} {q}", d=_ident(dest), q=query))

    def keep_equal(self, digests: str, candidates: str, *,
                   per_window: bool = False) -> dict[int, int]:
        """Keep in ``candidates`` (a candidates table) only the rooms whose every table
        has equal digests in ``digests`` for the source and the target's rows for it (or
        none on both sides). ``per_window`` (the first-row probe, FIRST_ROW_DIGESTS and
        ``tcm_w_windows``): a room may have several windows, each compared with the
        target's digests read at its shift; then one window a room is kept (shift 0
        where both places hold it: either is only a guess the full digests check).
        Returns how many rooms are left per input."""
        self._x(_q("ANALYZE {d}", d=_ident(digests)))
        self._x(_q("ANALYZE {c}", c=_ident(candidates)))
        # analysed first, and joins with a semi-join on the candidates' keys: correlated
        # subqueries ran once per candidate; a join with the windows table unanalysed
        # took 18 s for 20,000 rooms (0.04 s so)
        def shift(alias: str) -> sql.SQL:  # with per_window the shift is a key column
            return sql.SQL(f", {alias}shift" if per_window else "")

        self._x(_q(
            "DELETE FROM {c} WHERE (inp, room_jid{k}) IN ("
            # a source's digest the target lacks (at this window's shift)
            "SELECT c.inp, c.room_jid{ck} FROM {c} AS c JOIN {d} AS s "
            "ON s.inp = c.inp AND s.vs = c.inp AND s.room_jid = c.room_jid "
            "LEFT JOIN {d} AS t ON t.inp = 0 AND t.vs = c.inp AND t.room_jid = c.room_jid{s} "
            "AND t.tbl = s.tbl AND t.n = s.n AND t.h1 = s.h1 AND t.h2 = s.h2 "
            "WHERE t.tbl IS NULL UNION "
            # a target's digest (at a shift) of a table where the source has none
            "SELECT t.vs, t.room_jid{tk} FROM {d} AS t LEFT JOIN {d} AS s "
            "ON s.inp = t.vs AND s.vs = t.vs AND s.room_jid = t.room_jid AND s.tbl = t.tbl "
            "WHERE t.inp = 0 AND s.tbl IS NULL)", c=_ident(candidates), d=_ident(digests),
            k=shift(""), ck=shift("c."), tk=shift("t."),
            s=sql.SQL(" AND t.shift = c.shift" if per_window else "")))
        if per_window:
            self._x(_q("DELETE FROM {c} AS w USING {c} AS o WHERE o.inp = w.inp "
                       "AND o.room_jid = w.room_jid AND o.shift < w.shift",
                       c=_ident(candidates)))
        self._x(_q("ANALYZE {c}", c=_ident(candidates)))
        return {int(i): int(n) for i, n in self.conn.execute(_q(
            "SELECT inp, count(*) FROM {c} GROUP BY inp", c=_ident(candidates))).fetchall()}

    def settle(self) -> tuple[dict[str, dict[int, int]], dict[int, int]]:
        """Of the candidates left in ``tcm_w_windows`` (digests in ROOM_DIGESTS, the
        sources' and the target's, ``target_room_digests``), the rooms whose every message
        table holds the same rows in the source as in the target's window (but for
        msg_id): into ``tcm_w_settled``. Returns per table and input the rows of those
        rooms (every one equal to a row the target holds in the room, so a duplicate
        (rule 2), none moved), and per input how many rooms. (Where the window was
        guessed wrong the digests differ: the room is compared row by row, as any other.)"""
        rooms = self.keep_equal(ROOM_DIGESTS, "tcm_w_windows")
        self._x(sql.SQL("INSERT INTO tcm_w_settled SELECT inp, room_jid FROM tcm_w_windows"))
        self._x(sql.SQL("ANALYZE tcm_w_settled"))
        return self._settled_rows(ROOM_DIGESTS, "tcm_w_settled"), rooms

    def settle_timelog(self) -> tuple[dict[int, int], dict[int, int]]:
        """Of the candidates in ``tcm_w_visits`` (digests in TIMELOG_DIGESTS), the rooms
        whose visits are exactly the target's are kept there; per input their rows
        (every one equal to a row the target holds, so a duplicate (rule 6), none moved)
        and how many rooms."""
        rooms = self.keep_equal(TIMELOG_DIGESTS, "tcm_w_visits")
        return (self._settled_rows(TIMELOG_DIGESTS, "tcm_w_visits").get("tc_timelog", {}),
                rooms)

    def moves_messages(self, inp: int) -> bool:
        """Whether input ``inp`` holds messages of a room not settled for it (``settle``):
        rows of the message tables it still moves (a row without a room always is)."""
        return self._holds_rooms_outside("tcm_s_holders", inp, sql.SQL("lo IS NOT NULL"),
                                         sql.SQL("SELECT room_jid FROM tcm_w_settled "
                                                 "WHERE inp = {}").format(sql.Literal(inp)))

    def settled_room_count(self, inp: int) -> int:
        """How many rooms have their messages or their visits settled for input ``inp``."""
        return int(self._one(sql.SQL(
            "SELECT count(*) FROM (SELECT room_jid FROM tcm_w_settled WHERE inp = {i} UNION "
            "SELECT room_jid FROM tcm_w_visits WHERE inp = {i}) AS s").format(
            i=sql.Literal(inp))))

    def _settled_rows(self, digests: str, settled: str) -> dict[str, dict[int, int]]:
        rows: dict[str, dict[int, int]] = {}
        for inp, name, n in self.conn.execute(_q(
                "SELECT d.inp, d.tbl, sum(d.n) FROM {d} AS d JOIN {s} AS s "
                "ON s.inp = d.inp AND s.room_jid = d.room_jid WHERE d.vs = d.inp "
                "GROUP BY 1, 2", d=_ident(digests), s=_ident(settled))).fetchall():
            rows.setdefault(str(name), {})[int(inp)] = int(n)
        return rows

    def _shared_keys(self, table: sa.Table, source: str, staged: bool) -> sql.Composed:
        """Keys (see transport.create_staging) of the rows in ``source`` of the rooms
        whose rows are compared (``tcm_w_compared``)."""
        return keys_select(table, sql.SQL("inp") if staged else 0, _q(
            "{room} IN (SELECT room_jid FROM tcm_w_compared)",
            room=_ident(ROOM_COLUMN[table.name])), source=source)

    def target_keys(self) -> None:
        """The keys of the target's own rows of shared rooms: before anything is written.
        (Rooms settled for every holder but the owner are not compared: there is nothing
        to compare their rows with.)"""
        if not any(name in self.tables for name in DATE_COLUMN):
            return  # jm and aft_log alone: no rooms
        self._work("tcm_w_compared", sql.SQL(
            "SELECT r.room_jid FROM tcm_w_room AS r LEFT JOIN (SELECT room_jid, count(*) AS n "
            "FROM tcm_w_settled GROUP BY room_jid) AS s ON s.room_jid = r.room_jid "
            "WHERE r.nholders > 1 AND r.nholders - 1 > coalesce(s.n, 0)"))
        for name in DATE_COLUMN:
            if name in self.tables:
                self._x(_q("INSERT INTO {k} SELECT * FROM ({q}) AS s",
                           k=_ident(keys_name(name)),
                           q=self._shared_keys(self.tables[name], name, False)))

    def owned_shared_rooms(self, inp: int) -> list[str]:
        """Rooms held by more than one input whose owner is input ``inp``."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT room_jid FROM tcm_w_room WHERE nholders > 1 AND owner = %s "
            "ORDER BY room_jid", (inp,)).fetchall()]

    def staged_rooms(self, table: str, inp: int, *, settled: bool = True) -> list[str]:
        """The rooms whose rows of ``table`` input ``inp`` stages (its other rows go
        straight into the target table, see ``transport.DIRECT_TABLES``); ``settled``
        False: but those settled (``SETTLED_IN``), whose rows are not moved at all.

        Only rooms the input has rows of: the list is sent to that source, and another
        input's room may have no equivalent in its encoding (a Japanese room name to a
        LATIN1 source) -- the server would refuse the whole query."""
        holders = _holders_table(table)
        unsettled: sql.Composable = sql.SQL("")
        if not settled and table in SETTLED_IN:
            unsettled = _q(" AND room_jid NOT IN (SELECT room_jid FROM {t} WHERE inp = {i})",
                           t=_ident(SETTLED_IN[table]), i=sql.Literal(inp))
        return [str(r[0]) for r in self.conn.execute(sql.SQL(
            "SELECT room_jid FROM ({}) AS s WHERE room_jid IN (SELECT room_jid FROM {} "
            "WHERE inp = {}){} ORDER BY room_jid").format(
                self._staged_room_set(table, inp), sql.Identifier(holders),
                sql.Literal(inp), unsettled)).fetchall()]

    def holds_unstaged_rooms(self, table: str, inp: int) -> bool:
        """Whether input ``inp`` holds a room whose rows of ``table`` it does not stage
        (``staged_rooms``): else its direct read would scan the source for nothing (a
        merge run again, where the target holds every room)."""
        return self._holds_rooms_outside(_holders_table(table), inp,
                                         sql.SQL("room_jid IS NOT NULL"),
                                         self._staged_room_set(table, inp))

    def _holds_rooms_outside(self, holders: str, inp: int, which: sql.Composable,
                             rooms: sql.Composable) -> bool:
        """Whether input ``inp`` holds (in ``holders``, its rows matching ``which``) a
        room that the query ``rooms`` does not return."""
        # EXCEPT: hashed whatever the estimates (an anti-join with the holders table,
        # never analysed, was planned as a nested loop: 17 s for 20,000 rooms)
        return bool(self._one(sql.SQL(
            "SELECT EXISTS (SELECT room_jid FROM {} WHERE inp = {} AND {} "
            "EXCEPT SELECT room_jid FROM ({}) AS s)").format(
                sql.Identifier(holders), sql.Literal(inp), which, rooms)))

    def _staged_room_set(self, table: str, inp: int) -> sql.Composed:
        """A query of the rooms whose rows of ``table`` input ``inp`` stages: of the
        message tables, rooms held by several inputs that ``inp`` does not own (the
        owner's rows keep their ids); of tc_users, every room held by several inputs (the
        row kept is chosen among all); of tc_timelog, rooms with timelog rows in several
        inputs (where duplicates can be)."""
        if table == "tc_timelog":
            return sql.SQL("SELECT room_jid FROM tcm_w_timelog_room").format()
        query = sql.SQL("SELECT room_jid FROM tcm_w_room WHERE nholders > 1").format()
        if table in DATE_COLUMN:
            query += sql.SQL(" AND owner <> {}").format(sql.Literal(inp))
        return query

    # -- rules 2 and 3, from the keys tables ---------------------------------------------
    def _fill_keys(self, name: str) -> None:
        # the keys table has the keys of the owner's rows copied straight in (read on the
        # sources) and the target's own (before any write): the staged rows' join them
        self._fill(f"{MESSAGES[name][0]}_k", own=sa.text(_q(
            "INSERT INTO {k} SELECT * FROM ({q}) AS s", k=_ident(keys_name(name)),
            q=self._shared_keys(self.tables[name], staging_name(name), True)
        ).as_string(self.conn)))

    def _hash_input(self, column: sa.Column[Any], rows: Any, in_target: bool) -> Any:
        # a target's value as staging holds it: the row texts of equal rows are equal
        # (a char(n) value read as text loses its padding, as the transports' casts do)
        value = rows.c[column.name]
        return sa.cast(value, _STAGING_TYPES.get(staging_type(column), column.type)) \
            if in_target else value

    # -- apply ------------------------------------------------------------------------------
    def _insert_rows(self, name: str, statement: sa.Insert | UpdateFrom) -> int:
        if name not in MESSAGES:
            return super()._insert_rows(name, statement)
        with self._no_merge_joins():
            return super()._insert_rows(name, statement)

    @contextlib.contextmanager
    def _no_merge_joins(self) -> Iterator[None]:
        """The planner sorts the wide staged rows for a merge join with the id map, where
        hashing the narrow id map is several times cheaper (measured: 0.7 s of sorting
        per 200,000 archive rows); for one statement, then the setting as it was."""
        was = self._one(sql.SQL("SELECT current_setting('enable_mergejoin')"))
        self._x(sql.SQL("SELECT set_config('enable_mergejoin', 'off', true)"))
        yield  # after a failure the transaction rolls back, and the setting with it
        self.conn.execute("SELECT set_config('enable_mergejoin', %s, true)", (was,))
