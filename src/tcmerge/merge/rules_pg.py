"""The merge rules on PostgreSQL: ``tcmerge.merge.core``'s, over what the COPY relay and
dblink leave in the target.

The rules are core's statements, compiled for PostgreSQL (work tables are TEMP tables,
made inside the merge transaction and analysed once filled). What differs is where the
rows are, which the transports decide (``transport.DIRECT_TABLES``): rows of rooms held
by one input are copied straight into the target's table, and of the message tables the
owner's rows of shared rooms too (they keep their ids); only the rest is staged. So:

* a room's holders come from the holders table the transports fill before any row moves
  (``tcm_s_holders``: per input its rooms and their id ranges), not from the rows;
* of the message tables the duplicate search reads the keys tables (room, msg_id and
  date of every row of a shared room, from every input) and compares in full only the
  rows whose room and date another input has too (equal rows have equal dates); the
  rows in the target's table of a shared room are its owner's (the target's own, or
  copied straight in);
* counts add the rows copied straight in (``direct``).

Everything runs in the caller's transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from tcmerge.dialects.constructs import UpdateFrom
from tcmerge.merge.core import MESSAGES, MergeRules, Names
from tcmerge.merge.pg import PgConn
from tcmerge.merge.transport import (
    DATE_COLUMN,
    HOLDING_TABLES,
    ROOM_COLUMN,
    holders_select,
    keys_name,
    keys_select,
    room_indexed_query,
    row_digest,
    staging_name,
)
from tcmerge.sqlexec import PsycopgRunner

NAMES = Names(staging=staging_name, work=lambda name: f"tcm_w_{name}")
HOLDERS = sa.table("tcm_s_holders", sa.column("inp"), sa.column("room_jid"),
                   sa.column("lo"), sa.column("hi"))


def _q(text: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(text).format(**parts)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


class PgRules(MergeRules):
    """Analyse and apply the merge of what the transports moved (one session)."""

    creates_work_in_transaction = True

    def __init__(self, conn: PgConn, tables: tuple[sa.Table, ...], inputs: list[str]) -> None:
        super().__init__(PsycopgRunner(conn), tables, inputs, NAMES)
        self.conn = conn

    def _build(self) -> None:
        super()._build()
        # the message tables are judged from their keys tables (see _judge_messages)
        for name in ("arch_h", "msg_h"):
            self._queries.pop(name, None)

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

    def rooms_owners(self) -> None:
        """The room work table (owner, holders, the owner's id range per room): the
        sources' rooms are in the holders table already (filled before any row is
        moved); the target's are read in place, by the same query, and added to it."""
        holding = [n for n in HOLDING_TABLES if n in self.tables]
        indexed = [n for n in holding if n in DATE_COLUMN
                   and self._one(room_indexed_query(n)) == 1]
        self._x(_q("INSERT INTO tcm_s_holders {q}", q=holders_select(0, holding, indexed)))
        super().rooms_owners()
        if "tc_timelog" in self.tables:
            # timelog rows do not make a holder: their own sharing decides their path
            self._work("tcm_w_timelog_room", sql.SQL(
                "SELECT room_jid FROM (SELECT DISTINCT 0 AS inp, room_jid::text AS room_jid "
                "FROM tc_timelog UNION ALL SELECT inp, room_jid FROM tcm_s_timelog_holders) "
                "AS h WHERE room_jid IS NOT NULL GROUP BY room_jid "
                "HAVING count(DISTINCT inp) > 1"))

    def _shared_keys(self, table: sa.Table, source: str, staged: bool) -> sql.Composed:
        """Keys (see transport.create_staging) of the rows in ``source`` of shared rooms."""
        return keys_select(table, sql.SQL("inp") if staged else 0, _q(
            "{room} IN (SELECT room_jid FROM tcm_w_room WHERE nholders > 1)",
            room=_ident(ROOM_COLUMN[table.name])), source=source)

    def target_keys(self) -> None:
        """The keys of the target's own rows of shared rooms: before anything is written."""
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

    def staged_rooms(self, table: str, inp: int) -> list[str]:
        """The rooms whose rows of ``table`` input ``inp`` stages (its other rows go
        straight into the target table, see ``transport.DIRECT_TABLES``).

        Only rooms the input has rows of: the list is sent to that source, and another
        input's room may have no equivalent in its encoding (a Japanese room name to a
        LATIN1 source) -- the server would refuse the whole query."""
        holders = "tcm_s_timelog_holders" if table == "tc_timelog" else "tcm_s_holders"
        return [str(r[0]) for r in self.conn.execute(sql.SQL(
            "SELECT room_jid FROM ({}) AS s WHERE room_jid IN (SELECT room_jid FROM {} "
            "WHERE inp = {}) ORDER BY room_jid").format(
                self._staged_room_set(table, inp), sql.Identifier(holders),
                sql.Literal(inp))).fetchall()]

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
    def _judge_messages(self) -> None:
        for name, (work, *_rest) in MESSAGES.items():
            if name not in self.tables:
                continue
            keys = _ident(keys_name(name))
            # the keys of the staged rows of shared rooms (those of the owner's rows copied
            # straight in came with them from the sources)
            self._x(_q("INSERT INTO {k} SELECT * FROM ({q}) AS s", k=keys,
                       q=self._shared_keys(self.tables[name], staging_name(name), True)))
            # equal rows have equal rooms and dates: the (room, date) pairs several inputs
            # have hold every duplicate (compared by ``_mark_duplicates``)
            pairs = f"tcm_w_{work}_pairs"
            self._work(pairs, _q(
                "SELECT room_jid, coalesce(d, '-infinity') AS d FROM {k} "
                "GROUP BY 1, 2 HAVING min(inp) <> max(inp)", k=keys))
            # the later inputs' rows of shared rooms (the owner's keep their ids and are
            # never duplicates: no earlier input has the room)
            self._fill(work, sa.text(_q(
                "CREATE TEMP TABLE {w} ON COMMIT DROP AS SELECT k.inp, k.room_jid, k.msg_id, "
                "k.d, r.owner, 0 AS dup FROM {k} AS k JOIN tcm_w_room AS r "
                "ON r.room_jid = k.room_jid WHERE k.inp <> r.owner",
                w=_ident(self.names.work(work)), k=keys).as_string(self.conn)))
            self._mark_duplicates(self.tables[name], self.names.work(work), pairs)
        if all(n in self.tables for n in MESSAGES):
            # Rule 3: a recent message follows its archive row (same input, room and old
            # id): kept and renumbered together, or dropped together as a duplicate.
            self._x(sql.SQL(
                "UPDATE tcm_w_msg AS m SET dup = a.dup FROM tcm_w_arch AS a "
                "WHERE a.room_jid = m.room_jid AND a.inp = m.inp AND a.msg_id = m.msg_id "
                "AND a.dup IS DISTINCT FROM m.dup"))

    def _mark_duplicates(self, table: sa.Table, work: str, pairs: str) -> None:
        """In ``work``, flag as ``dup`` the rows equal in every column but msg_id to a row
        of an earlier input: only rows of the (room, date) ``pairs`` are compared, by the
        md5 of their text (see ``row_digest``), computed in the target.

        Rows are read where they are: input 0's and, with direct copies, the owner's in
        the target table (whose rows of a shared room are all its owner's), the others in
        staging. Without pairs (rooms shared, dates not) nothing is read."""
        if not self._one(_q("SELECT EXISTS (SELECT 1 FROM {p})", p=_ident(pairs))):
            return
        name = table.name
        in_target = sql.SQL("(c.inp = 0 OR c.inp = c.owner)" if name in self.direct
                            else "c.inp = 0")
        marked = self._x(_q(
            "WITH c AS (SELECT k.inp, k.room_jid, k.msg_id, r.owner FROM {k} AS k "
            "JOIN {p} AS p ON p.room_jid = k.room_jid AND p.d = coalesce(k.d, '-infinity') "
            "JOIN tcm_w_room AS r ON r.room_jid = k.room_jid) "
            "UPDATE {w} AS w SET dup = 1 FROM (SELECT inp, room_jid, msg_id, "
            "inp > min(inp) OVER (PARTITION BY h) AS dup FROM ("
            "SELECT c.inp, c.room_jid, c.msg_id, {xh} AS h FROM c JOIN {t} AS x "
            "ON x.{room}::text = c.room_jid AND x.msg_id = c.msg_id WHERE {here} "
            "UNION ALL SELECT c.inp, c.room_jid, c.msg_id, {sh} FROM c "
            "JOIN {s} AS s ON s.inp = c.inp AND s.{room} = c.room_jid AND s.msg_id = c.msg_id "
            "WHERE NOT {here}) AS r) AS d "
            "WHERE d.dup AND w.inp = d.inp AND w.room_jid = d.room_jid AND w.msg_id = d.msg_id",
            k=_ident(keys_name(name)), p=_ident(pairs), w=_ident(work), t=_ident(name),
            s=_ident(staging_name(name)), room=_ident(ROOM_COLUMN[name]), here=in_target,
            xh=row_digest(table, ("msg_id",), "x"), sh=row_digest(table, ("msg_id",), "s")))
        if marked:
            self._x(_q("ANALYZE {w}", w=_ident(work)))

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
