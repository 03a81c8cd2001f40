"""The contract's merge rules as set-based SQL over the staging tables (PostgreSQL).

Inputs are numbered: 0 is the target's existing rows (read in place), 1..n the
sources in the order given (staged). ``analyse`` builds small work tables
(``tcm_w_*``: owners, duplicate flags, the id map) and returns exact counts and
findings; ``apply`` inserts from staging through the work tables. Everything
runs in the caller's transaction; work tables are TEMP and dropped at its end.

For the direct tables (transport.DIRECT_TABLES) rows of rooms held by one input are
copied straight into the target table, and of the message tables the owner's rows of
shared rooms too (they keep their ids); only the rest is staged, and the target's own
rows are read in place for those rooms only (``_target_rows``). The analysis of the
message tables reads their keys tables (room, msg_id and date of every row of a shared
room, from every input: the owner's rows' read on the sources while copying, the target's
own before any write, the staged rows' in staging), and in full only the rows that could
be duplicates.

Duplicates are judged across inputs, never within one: a row of a later input equal to a
row of an earlier one, by the md5 of the rows' text form in the target (``ROW(...)::text``,
an injective encoding: NULL and '' differ, separators are quoted):
``inp > min(inp) OVER (PARTITION BY digest)``. Of the message tables only the rows whose
room and date another input has too are digested (equal rows have equal dates).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from tcmerge.merge.pg import PgConn
from tcmerge.merge.plan import TableCounts
from tcmerge.merge.transport import (
    DATE_COLUMN,
    HOLDING_TABLES,
    ROOM_COLUMN,
    cast_list,
    column_list,
    holders_select,
    keys_name,
    keys_select,
    room_indexed_query,
    row_digest,
    staging_name,
)
from tcmerge.results import Finding, error, info, warning

SAMPLE = 10
#: Persistent rooms one presence redundancy group serves at most (reference: ha-model.md,
#: "Capacity"); with HA about half per node, since the backup carries both after failover.
MAX_PERSISTENT_ROOMS = 5000


def _q(text: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(text).format(**parts)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _all_rows(table: sa.Table, extra: str = "",
              target_where: sql.Composable | None = None) -> sql.Composed:
    """Every input's rows: the target's as input 0 (those matching ``target_where``),
    then the staged sources."""
    return _q(
        "SELECT 0::smallint AS inp {extra0} , {tcast} FROM {t} {where} "
        "UNION ALL SELECT inp {extra1} , {cols} FROM {s}",
        extra0=sql.SQL(", NULL::bigint AS rn" if extra == "rn" else ""),
        extra1=sql.SQL(", rn" if extra == "rn" else ""),
        tcast=cast_list(table), t=_ident(table.name), cols=column_list(table),
        s=_ident(staging_name(table.name)),
        where=sql.SQL("") if target_where is None else sql.SQL("WHERE ") + target_where,
    )


def duplicate_rows(table: str, count: int) -> Finding:
    return info("DUPLICATE_ROWS", f"{count} source row(s) of {table} are already present and "
                "are not inserted again", table=table, count=count)


@dataclass
class Analysis:
    counts: dict[str, TableCounts]
    findings: list[Finding] = field(default_factory=list)
    #: bans that must be outcast in the target after the merge: (count, hash sum)
    bans_expected: str = "0:0"
    bans_not_applied: int = 0


class RuleSet(abc.ABC):
    """What the PostgreSQL and Oracle rules share: the analysis in the contract's order
    (rooms, members, messages, unions, aft_log), each table by the dialect's own SQL."""

    tables: dict[str, sa.Table]
    inputs: list[str]  # labels, target first

    def analyse(self) -> Analysis:
        counts: dict[str, TableCounts] = {}
        findings: list[Finding] = []
        if "tc_rooms" in self.tables:
            counts["tc_rooms"] = self._analyse_rooms(findings)
            findings += self._capacity()
        result = Analysis(counts, findings)
        if "tc_users" in self.tables:
            counts["tc_users"] = self._analyse_users(result)
        self._analyse_messages(counts, findings)
        for name in ("tc_timelog", "jm"):
            if name in self.tables:
                counts[name] = self._analyse_union(name)
        if "aft_log" in self.tables:
            counts["aft_log"] = self._analyse_aft(findings)
        for name, c in counts.items():
            if c.duplicates:
                findings.append(duplicate_rows(name, c.duplicates))
        return result

    def _capacity(self) -> list[Finding]:
        """ROOM_CAPACITY: the merged database holds more persistent rooms than the group
        that shares it may serve (the merge is where two nodes' rooms meet)."""
        rooms = self._persistent_rooms_after()
        if rooms <= MAX_PERSISTENT_ROOMS:
            return []
        return [warning(
            "ROOM_CAPACITY",
            f"the merged database holds {rooms} persistent rooms; a presence redundancy "
            f"group serves at most {MAX_PERSISTENT_ROOMS} (with high availability about "
            f"{MAX_PERSISTENT_ROOMS // 2} per node: after a failover the backup carries both "
            "nodes' rooms)", database=self.inputs[0], table="tc_rooms", count=rooms,
            hint="remove unused persistent rooms, or spread the rooms over more groups' "
                 "databases", details={"persistent_rooms": rooms,
                                       "limit": MAX_PERSISTENT_ROOMS})]

    @abc.abstractmethod
    def _persistent_rooms_after(self) -> int:
        """Persistent rooms in the target after the merge: its own and those inserted."""

    @abc.abstractmethod
    def _analyse_rooms(self, findings: list[Finding]) -> TableCounts:
        ...

    @abc.abstractmethod
    def _analyse_users(self, result: Analysis) -> TableCounts:
        ...

    @abc.abstractmethod
    def _analyse_messages(self, counts: dict[str, TableCounts], findings: list[Finding]) -> None:
        ...

    @abc.abstractmethod
    def _analyse_union(self, name: str) -> TableCounts:
        ...

    @abc.abstractmethod
    def _analyse_aft(self, findings: list[Finding]) -> TableCounts:
        ...


class PgRules(RuleSet):
    """Analyse and apply the merge of staged sources into the target (one session)."""

    def __init__(self, conn: PgConn, tables: tuple[sa.Table, ...], inputs: list[str],
                 staged: dict[str, dict[int, int]] | None = None,
                 direct: dict[str, dict[int, int]] | None = None) -> None:
        self.conn = conn
        self.tables = {t.name: t for t in tables}
        self.inputs = inputs  # labels, target first
        #: rows per table and input: staged, and copied straight into the target table
        self.staged = staged
        self.direct = direct or {}
        self.target_counts: dict[str, int] = {}

    def count_target(self) -> None:
        """The target's own rows per table (input 0), before anything is written."""
        for name in self.tables:
            self.target_counts[name] = int(self._one(_q("SELECT count(*) FROM {t}",
                                                        t=_ident(name))))

    # -- helpers ---------------------------------------------------------------------------
    def _x(self, query: sql.Composed | sql.SQL, params: tuple[Any, ...] | None = None) -> int:
        cur = self.conn.execute(query, params)
        return int(cur.rowcount)

    def _rows(self, query: sql.Composed | sql.SQL) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(query).fetchall())

    def _one(self, query: sql.Composed | sql.SQL) -> Any:
        row = self.conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    def _work(self, name: str, query: sql.Composed | sql.SQL) -> None:
        self._x(_q("CREATE TEMP TABLE {n} ON COMMIT DROP AS {q}", n=_ident(name), q=query))
        self._x(_q("ANALYZE {n}", n=_ident(name)))

    def _by_input(self, query: sql.Composed | sql.SQL) -> dict[int, int]:
        return {int(i): int(n) for i, n in self._rows(query)}

    def _read(self, table: str) -> list[int]:
        if self.staged is not None:
            per = dict(self.staged.get(table, {}))
        else:
            per = self._by_input(_q("SELECT inp, count(*) FROM {s} GROUP BY inp",
                                    s=_ident(staging_name(table))))
        for inp, n in self.direct.get(table, {}).items():
            per[inp] = per.get(inp, 0) + n
        target = self.target_counts.get(table)
        if target is None:
            target = int(self._one(_q("SELECT count(*) FROM {t}", t=_ident(table))))
        return [target] + [per.get(i, 0) for i in range(1, len(self.inputs))]

    def _samples(self, query: sql.Composed | sql.SQL) -> dict[int, tuple[int, list[str]]]:
        """``inp -> (count, first keys)`` from a query returning (inp, count, keys[])."""
        return {int(r[0]): (int(r[1]), list(r[2] or [])) for r in self._rows(query)}

    # -- analysis --------------------------------------------------------------------------
    def rooms_owners(self) -> None:
        """tcm_w_room: per room its owner (first input holding it), number of holders, and
        the owner's lowest and highest msg_id (the ids its rows keep).

        The sources' rooms come from the holders staging table (filled before any row is
        moved); the target's are read in place, by the same query, and added to it."""
        holding = [n for n in HOLDING_TABLES if n in self.tables]
        indexed = [n for n in holding if n in DATE_COLUMN
                   and self._one(room_indexed_query(n)) == 1]
        self._x(_q("INSERT INTO tcm_s_holders {q}", q=holders_select(0, holding, indexed)))
        self._work("tcm_w_room", sql.SQL(
            "SELECT room_jid, min(inp)::smallint AS owner, count(DISTINCT inp)::int AS nholders, "
            "(array_agg(lo ORDER BY inp))[1] AS lo, (array_agg(hi ORDER BY inp))[1] AS hi "
            "FROM tcm_s_holders GROUP BY room_jid"))
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

    def _staged_room_set(self, table: str, inp: int | None = None) -> sql.Composed:
        """A query of the rooms whose rows of ``table`` are staged: of the message tables,
        rooms held by several inputs that ``inp`` does not own (the owner's rows keep
        their ids; every shared room when ``inp`` is None); of tc_users, every room held
        by several inputs (the row kept is chosen among all); of tc_timelog, rooms with
        timelog rows in several inputs (where duplicates can be)."""
        if table == "tc_timelog":
            return sql.SQL("SELECT room_jid FROM tcm_w_timelog_room").format()
        query = sql.SQL("SELECT room_jid FROM tcm_w_room WHERE nholders > 1").format()
        if inp is not None and table in DATE_COLUMN:
            query += sql.SQL(" AND owner <> {}").format(sql.Literal(inp))
        return query

    def _target_rows(self, table: str) -> sql.Composable | None:
        """Which of the target table's rows are the target's own rows the analysis needs:
        with rows copied straight in, those of the rooms that were staged."""
        if table not in self.direct:
            return None
        return _q("({room} IS NULL OR {room}::text IN ({rooms}))",
                  room=_ident(ROOM_COLUMN[table]), rooms=self._staged_room_set(table))

    def _analyse_rooms(self, findings: list[Finding]) -> TableCounts:
        t = self.tables["tc_rooms"]
        self._work("tcm_w_rooms", _q(
            "WITH a AS ({all}), w AS (SELECT DISTINCT ON (room_jid) * FROM a "
            "ORDER BY room_jid, inp) "
            "SELECT s.inp, s.room_jid, w.inp AS winner, "
            "(s.creator_jid IS DISTINCT FROM w.creator_jid OR s.type IS DISTINCT FROM w.type) "
            "AS conflict, "
            "(s.subject IS DISTINCT FROM w.subject OR s.config IS DISTINCT FROM w.config "
            "OR s.spacket IS DISTINCT FROM w.spacket) AS diverged "
            "FROM a AS s JOIN w ON w.room_jid = s.room_jid WHERE s.inp > 0",
            all=_all_rows(t)))
        read = self._read("tc_rooms")
        inserted, dups, conflicts = (int(x) for x in self._rows(sql.SQL(
            "SELECT count(*) FILTER (WHERE inp = winner), "
            "count(*) FILTER (WHERE inp <> winner AND NOT conflict AND NOT diverged), "
            "count(*) FILTER (WHERE inp <> winner AND (conflict OR diverged)) "
            "FROM tcm_w_rooms"))[0])
        for code, make, cond, text in (
            ("ROOM_CONFLICT", error, "conflict",
             "room(s) exist in an earlier input with a different creator_jid or type"),
            ("ROOM_DIVERGED", warning, "diverged AND NOT conflict",
             "room(s) differ from the owner's row in subject, config or spacket; the "
             "owner's row wins"),
        ):
            per = self._samples(sql.SQL(
                "SELECT inp, count(*), (array_agg(room_jid ORDER BY room_jid))[1:{n}] "
                "FROM tcm_w_rooms WHERE inp <> winner AND {c} GROUP BY inp").format(
                    n=sql.Literal(SAMPLE), c=sql.SQL(cond)))
            for inp, (n, rooms) in sorted(per.items()):
                findings.append(make(
                    code, f"{n} {text}: {', '.join(rooms[:3])}"
                    + (" ..." if n > 3 else ""),
                    database=self.inputs[inp], table="tc_rooms", count=n,
                    details={"rooms": rooms},
                    hint=("rooms with the same JID but a different creator or type are "
                          "different rooms; rename or remove one before merging")
                    if code == "ROOM_CONFLICT" else None))
        return TableCounts("tc_rooms", read, inserted=inserted, duplicates=dups,
                           conflicts=conflicts)

    def _persistent_rooms_after(self) -> int:
        return int(self._one(_q(
            "SELECT (SELECT count(*) FROM tc_rooms WHERE type = 'persistent') "
            "+ (SELECT count(*) FROM tcm_w_rooms AS w JOIN {s} AS s "
            "ON s.inp = w.inp AND s.room_jid = w.room_jid "
            "WHERE w.inp = w.winner AND s.type = 'persistent')",
            s=_ident(staging_name("tc_rooms")))))

    def _analyse_users(self, result: Analysis) -> TableCounts:
        t = self.tables["tc_users"]
        h = row_digest(t, ("room_jid", "real_jid"))
        self._work("tcm_w_users_all", _q(
            "SELECT a.inp, a.room_jid, a.real_jid, a.affiliation, {h} AS h FROM ({all}) AS a",
            h=h, all=_all_rows(t, target_where=self._target_rows(t.name))))
        self._work("tcm_w_users", sql.SQL(
            "WITH w AS (SELECT DISTINCT ON (room_jid, real_jid) room_jid, real_jid, "
            "inp AS winner, h AS wh, affiliation AS waff FROM tcm_w_users_all "
            "ORDER BY room_jid, real_jid, (inp = 0) DESC, (affiliation = 'outcast') DESC, inp) "
            "SELECT k.inp, k.room_jid, k.real_jid, k.affiliation, w.winner, w.waff, "
            "k.h = w.wh AS same FROM tcm_w_users_all AS k "
            "JOIN w ON w.room_jid = k.room_jid AND w.real_jid = k.real_jid WHERE k.inp > 0"))
        read = self._read("tc_users")
        inserted, dups, conflicts = (int(x) for x in self._rows(sql.SQL(
            "SELECT count(*) FILTER (WHERE inp = winner), "
            "count(*) FILTER (WHERE inp <> winner AND same), "
            "count(*) FILTER (WHERE inp <> winner AND NOT same) FROM tcm_w_users"))[0])
        inserted += sum(self.direct.get(t.name, {}).values())  # rooms held by one input
        per = self._samples(sql.SQL(
            "SELECT inp, count(*), (array_agg(room_jid || ' ' || real_jid "
            "ORDER BY room_jid, real_jid))[1:{n}] FROM tcm_w_users "
            "WHERE inp <> winner AND NOT same GROUP BY inp").format(n=sql.Literal(SAMPLE)))
        for inp, (n, keys) in sorted(per.items()):
            result.findings.append(warning(
                "AFFILIATION_CONFLICT",
                f"{n} member row(s) differ from the row kept (the owner's, or a ban): "
                + ", ".join(keys[:3]) + (" ..." if n > 3 else ""),
                database=self.inputs[inp], table="tc_users", count=n,
                details={"members": keys}))
        bans = self._samples(sql.SQL(
            "SELECT inp, count(*), (array_agg(room_jid || ' ' || real_jid "
            "ORDER BY room_jid, real_jid))[1:{n}] FROM tcm_w_users "
            "WHERE affiliation = 'outcast' AND winner = 0 AND waff <> 'outcast' "
            "GROUP BY inp").format(n=sql.Literal(SAMPLE)))
        for inp, (n, keys) in sorted(bans.items()):
            result.bans_not_applied += n
            result.findings.append(warning(
                "BAN_NOT_APPLIED",
                f"{n} ban(s) cannot be applied without altering the target's member row, "
                "which a merge never does: " + ", ".join(keys[:3]) + (" ..." if n > 3 else ""),
                database=self.inputs[inp], table="tc_users", count=n,
                details={"members": keys},
                hint="apply these bans on the target by hand after the merge if wanted"))
        # the bans the merged target must hold: those of the analysed rows that are kept,
        # and (rows copied straight in) every ban of a room held by one input, read from
        # the target table (its own rows and the copied ones); the two sets of rooms are
        # disjoint, so counts and hash sums add up
        staged = self._target_rows(t.name)
        one_holder = sql.SQL("SELECT room_jid, real_jid FROM tc_users WHERE affiliation = "
                             "'outcast' AND {}").format(
            sql.SQL("false") if staged is None else sql.SQL("NOT {}").format(staged))
        row = self._rows(_q(
            "SELECT count(*), coalesce(sum(hashtextextended(ROW(room_jid, real_jid)::text, 0)"
            "::numeric), 0)::text FROM (SELECT DISTINCT room_jid, real_jid "
            "FROM tcm_w_users_all WHERE affiliation = 'outcast' EXCEPT "
            "SELECT room_jid, real_jid FROM tcm_w_users WHERE winner = 0 AND waff <> 'outcast' "
            "UNION SELECT room_jid::text, real_jid::text FROM ({one}) AS o) AS b",
            one=one_holder))[0]
        result.bans_expected = f"{row[0]}:{row[1]}"
        return TableCounts("tc_users", read, inserted=inserted, duplicates=dups,
                           conflicts=conflicts)

    def _analyse_messages(self, counts: dict[str, TableCounts], findings: list[Finding]) -> None:
        have_arch = "tc_msgarchive" in self.tables
        have_msg = "tc_messages" in self.tables
        for name, work in (("tc_msgarchive", "tcm_w_arch"), ("tc_messages", "tcm_w_msg")):
            if name not in self.tables:
                continue
            # the keys of the staged rows of shared rooms (those of the owner's rows copied
            # straight in came with them from the sources)
            self._x(_q("INSERT INTO {k} SELECT * FROM ({q}) AS s",
                       k=_ident(keys_name(name)), q=self._shared_keys(
                           self.tables[name], staging_name(name), True)))
            # equal rows have equal rooms and dates: the (room, date) pairs several inputs
            # have hold every duplicate (compared by ``_mark_duplicates``)
            self._work(f"{work}_pairs", _q(
                "SELECT room_jid, coalesce(d, '-infinity') AS d FROM {k} "
                "GROUP BY 1, 2 HAVING min(inp) <> max(inp)", k=_ident(keys_name(name))))
            # the later inputs' rows of shared rooms (the owner's keep their ids and are
            # never duplicates: no earlier input has the room)
            self._work(work, _q(
                "SELECT k.inp, k.room_jid, k.msg_id, k.d, r.owner, false AS dup FROM {k} AS k "
                "JOIN tcm_w_room AS r ON r.room_jid = k.room_jid WHERE k.inp <> r.owner",
                k=_ident(keys_name(name))))
            self._mark_duplicates(self.tables[name], work, f"{work}_pairs")
        if have_arch and have_msg:
            # Rule 3: a recent message follows its archive row (same input, room and old
            # id): kept and renumbered together, or dropped together as a duplicate. Only a
            # recent message without an archive row is judged on its own columns.
            self._x(sql.SQL(
                "UPDATE tcm_w_msg AS m SET dup = a.dup FROM tcm_w_arch AS a "
                "WHERE a.room_jid = m.room_jid AND a.inp = m.inp AND a.msg_id = m.msg_id "
                "AND a.dup IS DISTINCT FROM m.dup"))
        empty = sql.SQL("SELECT NULL::smallint AS inp, NULL::text AS room_jid, "
                        "NULL::bigint AS msg_id, NULL::timestamp AS d, NULL::smallint AS owner, "
                        "false AS dup WHERE false")
        arch = sql.SQL("tcm_w_arch") if have_arch else sql.SQL("({})").format(empty)
        msg = sql.SQL("tcm_w_msg") if have_msg else sql.SQL("({})").format(empty)
        self._work("tcm_w_idmap", _q(
            "WITH a AS (SELECT * FROM {arch} AS a WHERE inp > owner AND NOT dup), "
            "m AS (SELECT * FROM {msg} AS m WHERE inp > owner AND NOT dup), "
            "need AS (SELECT coalesce(a.room_jid, m.room_jid) AS room_jid, "
            "coalesce(a.inp, m.inp) AS inp, coalesce(a.msg_id, m.msg_id) AS old_id, "
            "coalesce(a.d, m.d) AS d, a.room_jid IS NOT NULL AS arch_keep, "
            "m.room_jid IS NOT NULL AS msg_keep FROM a FULL JOIN m "
            "ON m.room_jid = a.room_jid AND m.inp = a.inp AND m.msg_id = a.msg_id) "
            # above the owner's highest id in either table (see ``rooms_owners``)
            "SELECT n.room_jid, n.inp, n.old_id, n.arch_keep, n.msg_keep, "
            "coalesce(r.hi, 0) + row_number() OVER (PARTITION BY n.room_jid "
            "ORDER BY n.d, n.inp, n.old_id) AS new_id "
            "FROM need AS n JOIN tcm_w_room AS r ON r.room_jid = n.room_jid",
            arch=arch, msg=msg))
        for name, work, keep in (("tc_msgarchive", "tcm_w_arch", "arch_keep"),
                                 ("tc_messages", "tcm_w_msg", "msg_keep")):
            if name not in self.tables:
                continue
            read = self._read(name)
            dups = self._by_input(_q("SELECT inp, count(*) FROM {w} WHERE dup GROUP BY inp",
                                     w=_ident(work)))
            ren = self._by_input(_q(
                "SELECT inp, count(*) FROM tcm_w_idmap WHERE {k} GROUP BY inp",
                k=_ident(keep)))
            c = TableCounts(name, read, duplicates=sum(dups.values()),
                            renumbered=sum(ren.values()))
            c.inserted = c.source_rows - c.duplicates
            counts[name] = c
            for inp, n in sorted(ren.items()):
                findings.append(info(
                    "MSG_ID_COLLISION",
                    f"{n} row(s) of rooms also held by an earlier input get new msg_ids above "
                    "the room's highest id", database=self.inputs[inp], table=name, count=n))

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
            "UPDATE {w} AS w SET dup = true FROM (SELECT inp, room_jid, msg_id, "
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

    def _analyse_union(self, name: str) -> TableCounts:
        t = self.tables[name]
        self._work(f"tcm_w_{name}", _q(
            "SELECT inp, rn FROM (SELECT a.inp, a.rn, "
            "a.inp > min(a.inp) OVER (PARTITION BY {h}) AS dup FROM ({all}) AS a) AS x "
            "WHERE inp > 0 AND NOT dup", h=row_digest(t, (), "a"),
            all=_all_rows(t, "rn", self._target_rows(name))))
        read = self._read(name)
        inserted = int(self._one(_q("SELECT count(*) FROM {w}", w=_ident(f"tcm_w_{name}"))))
        inserted += sum(self.direct.get(name, {}).values())  # rooms in one input only
        return TableCounts(name, read, inserted=inserted,
                           duplicates=sum(read[1:]) - inserted)

    def _analyse_aft(self, findings: list[Finding]) -> TableCounts:
        t = self.tables["aft_log"]
        self._work("tcm_w_aft", _q(
            "WITH a AS (SELECT x.inp, x.rn, x.aft_index, x.timestampvalue, {h} AS h "
            "FROM ({all}) AS x), "
            "d AS (SELECT a.*, a.inp > min(a.inp) OVER (PARTITION BY a.h) AS dup FROM a), "
            "c AS (SELECT d.*, d.inp > min(d.inp) OVER (PARTITION BY d.aft_index) AS collides "
            "FROM d WHERE NOT dup), "
            "top AS (SELECT coalesce(max(aft_index), 0) AS top FROM c) "
            "SELECT c.inp, c.rn, c.collides, CASE WHEN c.collides THEN top.top + row_number() "
            "OVER (PARTITION BY c.collides ORDER BY c.timestampvalue, c.inp, c.aft_index) "
            "ELSE c.aft_index END AS new_index FROM c, top WHERE c.inp > 0",
            h=row_digest(t, ("aft_index",), "x"), all=_all_rows(t, "rn")))
        read = self._read("aft_log")
        inserted, ren = (int(x) for x in self._rows(sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE collides) FROM tcm_w_aft"))[0])
        if ren:
            findings.append(info("AFT_INDEX_COLLISION",
                                 f"{ren} aft_log row(s) get a new aft_index (theirs is taken)",
                                 table="aft_log", count=ren))
        return TableCounts("aft_log", read, inserted=inserted,
                           duplicates=sum(read[1:]) - inserted, renumbered=ren)

    # -- apply -----------------------------------------------------------------------------
    def apply(self, counts: dict[str, TableCounts],
              after_messages: Callable[[], None] | None = None) -> dict[str, int]:
        """Insert every kept row; repair the counters. Returns rows written per table.

        ``after_messages`` runs once the message tables hold every row, before the
        counters are read from them (the engine rebuilds their indexes there)."""
        written = self._apply_messages()
        if after_messages is not None:
            after_messages()
        return written | self._apply_others(counts)

    def _apply_messages(self) -> dict[str, int]:
        written: dict[str, int] = {}
        # the two message tables: the owner's rows, and later inputs' rows the id map keeps
        for name, room, keep in (("tc_msgarchive", "to_jid", "arch_keep"),
                                 ("tc_messages", "room_jid", "msg_keep")):
            if name not in self.tables:
                continue
            t = self.tables[name]
            with self._no_merge_joins():
                written[t.name] = self._x(_q(
                    "INSERT INTO {t} ({cols}) SELECT coalesce(m.new_id, s.msg_id), {rest} "
                    "FROM {s} AS s JOIN tcm_w_room AS r ON r.room_jid = s.{room} "
                    "LEFT JOIN tcm_w_idmap AS m ON m.room_jid = s.{room} AND m.inp = s.inp "
                    "AND m.old_id = s.msg_id WHERE s.inp = r.owner OR m.{keep}",
                    t=_ident(t.name), cols=column_list(t), s=_ident(staging_name(t.name)),
                    rest=self._rest(t, "msg_id"), room=_ident(room), keep=_ident(keep)))
        return written

    def _apply_others(self, counts: dict[str, TableCounts]) -> dict[str, int]:
        written: dict[str, int] = {}
        if "tc_users" in self.tables:
            t = self.tables["tc_users"]
            written[t.name] = self._x(_q(
                "INSERT INTO {t} ({cols}) SELECT {scols} FROM {s} AS s JOIN tcm_w_users AS w "
                "ON w.inp = s.inp AND w.room_jid = s.room_jid AND w.real_jid = s.real_jid "
                "WHERE w.winner = s.inp", t=_ident(t.name), cols=column_list(t),
                scols=column_list(t, "s"), s=_ident(staging_name(t.name))))
        for name in ("tc_timelog", "jm"):
            if name in self.tables:
                t = self.tables[name]
                written[name] = self._x(_q(
                    "INSERT INTO {t} ({cols}) SELECT {scols} FROM {s} AS s "
                    "JOIN {w} AS w ON w.rn = s.rn", t=_ident(name), cols=column_list(t),
                    scols=column_list(t, "s"), s=_ident(staging_name(name)),
                    w=_ident(f"tcm_w_{name}")))
        if "aft_log" in self.tables:
            t = self.tables["aft_log"]
            written["aft_log"] = self._x(_q(
                "INSERT INTO {t} ({cols}) SELECT w.new_index, {rest} FROM {s} AS s "
                "JOIN tcm_w_aft AS w ON w.rn = s.rn", t=_ident(t.name), cols=column_list(t),
                s=_ident(staging_name(t.name)), rest=self._rest(t, "aft_index")))
        if "tc_rooms" in self.tables:
            written["tc_rooms"], counts["tc_rooms"].updated = self._apply_rooms()
        return written

    @contextlib.contextmanager
    def _no_merge_joins(self) -> Iterator[None]:
        """The planner sorts the wide staged rows for a merge join with the id map, where
        hashing the narrow id map is several times cheaper (measured: 0.7 s of sorting
        per 200,000 archive rows); for one statement, then the setting as it was."""
        was = self._one(sql.SQL("SELECT current_setting('enable_mergejoin')"))
        self._x(sql.SQL("SELECT set_config('enable_mergejoin', 'off', true)"))
        yield  # after a failure the transaction rolls back, and the setting with it
        self._x(sql.SQL("SELECT set_config('enable_mergejoin', %s, true)"), (was,))

    def _rest(self, table: sa.Table, first: str) -> sql.Composed:
        assert table.columns[0].name == first
        return sql.SQL(", ").join(sql.Identifier("s", c.name) for c in list(table.columns)[1:])

    def _apply_rooms(self) -> tuple[int, int]:
        t = self.tables["tc_rooms"]
        # per room the lowest and highest id after the merge: the owner's rows keep theirs,
        # later inputs' kept rows take the id map's (computed, not read back from the
        # merged tables; verification reads those)
        self._work("tcm_w_ids", sql.SQL(
            "SELECT room_jid, min(lo) AS lo, max(hi) AS hi FROM ("
            "SELECT room_jid, lo, hi FROM tcm_w_room WHERE hi IS NOT NULL UNION ALL "
            "SELECT room_jid, min(new_id), max(new_id) FROM tcm_w_idmap GROUP BY room_jid) "
            "AS x GROUP BY room_jid"))
        counters = [c for c in t.columns if c.name not in ("start_msg_id", "next_msg_id")]
        inserted = self._x(_q(
            "INSERT INTO {t} ({cols}, start_msg_id, next_msg_id) "
            "SELECT {scols}, coalesce(i.lo, s.start_msg_id), "
            "greatest(s.next_msg_id, i.hi + 1) FROM {s} AS s "
            "JOIN tcm_w_rooms AS w ON w.inp = s.inp AND w.room_jid = s.room_jid "
            "AND w.winner = s.inp LEFT JOIN tcm_w_ids AS i ON i.room_jid = s.room_jid",
            t=_ident(t.name), s=_ident(staging_name(t.name)),
            cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in counters),
            scols=sql.SQL(", ").join(sql.Identifier("s", c.name) for c in counters)))
        updated = self._x(sql.SQL(
            # rule 4 for every target room, touching only what is wrong: next_msg_id
            # above every id; start_msg_id lowered to the lowest id kept, never raised
            "UPDATE tc_rooms AS t SET start_msg_id = least(t.start_msg_id, i.lo), "
            "next_msg_id = greatest(t.next_msg_id, i.hi + 1) FROM tcm_w_ids AS i "
            "WHERE i.room_jid = t.room_jid AND t.room_jid IN (SELECT room_jid FROM tcm_w_room "
            "WHERE owner = 0) AND (t.start_msg_id > i.lo OR t.next_msg_id <= i.hi)"))
        return inserted, updated
