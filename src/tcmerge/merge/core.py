"""The contract's merge rules, written once, as SQLAlchemy Core statements for every dialect.

Inputs are numbered 0 (the target's rows, read in place) and 1..n (the sources in the
order given, staged: one staging table per merged table, with the column ``inp``).
The analysis fills small work tables in a fixed order (``work_queries``) and reads
exact counts and findings from them; ``apply_statements`` insert from staging through
the work tables and repair the counters. Statements carry no bind variable (constants
are written out): the same statements run, and are printed as a script.

What truly differs between the dialects is a construct of
``tcmerge.dialects.constructs``: a row's hash (``RowHash``), NULL-safe equality
(``SameValue``: a CLOB is compared with DBMS_LOB on Oracle), a row's address
(``RowPointer``: ctid / ROWID, for tables without a key) and how a work table is made
(``CreateWorkTable``). Flags are the numbers 0 and 1 (Oracle SQL before 23ai has no
booleans); GREATEST is always given non-NULL arguments (Oracle's is NULL with one).

Duplicates are judged across inputs, never within one: a row is a duplicate when an
*earlier* input holds a row equal to it in every compared column. Equal hashes make
the candidates; the rows themselves, compared column by column, decide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tcmerge.dialects.constructs import (
    CreateWorkTable,
    RefuseIf,
    RowPointer,
    UpdateFrom,
    pair_digest,
    row_hash,
    same_value,
    update_aliases,
)
from tcmerge.merge.plan import TableCounts
from tcmerge.results import Finding, error, info, warning
from tcmerge.sqlexec import Runner

SAMPLE = 10
#: Persistent rooms one presence redundancy group serves at most (reference: ha-model.md,
#: "Capacity"); with HA about half per node, since the backup carries both after failover.
MAX_PERSISTENT_ROOMS = 5000
#: the room column of the tables whose rows make an input a room's holder (an owner
#: candidate); a timelog row records a visit, not the room
HOLDER_ROOM = {"tc_rooms": "room_jid", "tc_msgarchive": "to_jid", "tc_messages": "room_jid",
               "tc_users": "room_jid"}
#: message tables: (work name, room column, date column, keep flag in the id map)
MESSAGES = {"tc_msgarchive": ("arch", "to_jid", "sent_date", "arch_keep"),
            "tc_messages": ("msg", "room_jid", "stamp", "msg_keep")}
#: tables without a key: a row of them is a duplicate when equal in every column
UNIONS = {"tc_timelog": "timelog", "jm": "jm"}
#: tables whose target rows the analysis reads only in rooms some staged row has
NARROWED = ("tc_users", "tc_timelog")
#: the work tables in the order the analysis fills them
ANALYSIS_ORDER = ("room", "rooms", "users_all", "users", "arch_k", "arch_p", "arch_h", "arch",
                  "msg_k", "msg_p", "msg_h", "msg", "idmap", "ids", "timelog_h", "timelog",
                  "jm_h", "jm", "aft_h", "aft")


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


def lit(value: int | str) -> Any:
    """A constant written into the statement (no bind variable)."""
    if isinstance(value, str):
        return sa.literal_column("'" + value.replace("'", "''") + "'", sa.String())
    return sa.literal_column(str(int(value)), sa.Integer())


def flag(condition: Any) -> Any:
    """1 where ``condition`` holds, else 0."""
    return sa.case((condition, lit(1)), else_=lit(0))


def is_lob(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.Text)


def same_row(model: sa.Table, a: Any, b: Any, *, exclude: tuple[str, ...] = (),
             only: tuple[str, ...] | None = None) -> Any:
    """Every compared column of the rows ``a`` and ``b`` is equal (NULL equals NULL)."""
    parts = [same_value(a.c[c.name], b.c[c.name], is_lob(c)) for c in model.columns
             if c.name not in exclude and (only is None or c.name in only)]
    return sa.and_(*parts) if parts else sa.true()


@dataclass(frozen=True)
class Names:
    """How a run names its helper tables: ``staging(table)``, ``work(name)``."""

    staging: Callable[[str], str]
    work: Callable[[str], str]


class MergeRules:
    """The nine rules over staged sources, for any dialect (``runner`` runs them; with
    no runner the statements can only be listed, as ``run --sql`` does)."""

    def __init__(self, runner: Runner | None, tables: tuple[sa.Table, ...],
                 inputs: list[str], names: Names, *,
                 hashed_by_type: set[str] | None = None) -> None:
        self.runner = runner
        self.tables = {t.name: t for t in tables}
        self.inputs = inputs  # labels, target first
        self.names = names
        self.target_counts: dict[str, int] = {}
        #: tables whose rows the row hash reads by their values' types (``RowHash``)
        self.hashed_by_type = set(hashed_by_type or ())
        #: rows per table and input staged (None: counted in staging), and copied straight
        #: into the target's table by a transport that can (PostgreSQL's direct path)
        self.staged: dict[str, dict[int, int]] | None = None
        self.direct: dict[str, dict[int, int]] = {}
        #: rows per table and input not moved at all: of rooms whose messages (visits)
        #: the target holds already (a merge run again), every row a duplicate
        self.settled: dict[str, dict[int, int]] = {}
        #: message tables whose owner's rows of shared rooms are in the target's table
        self.owner_rows_in_target: set[str] = set()
        #: work table -> its query, in the order they are filled (a query may read the
        #: work tables before it)
        self._queries: dict[str, sa.Select[Any]] = {}
        self._tables: dict[str, sa.TableClause] = {}
        self._build()
        self._next_fill: Iterator[str] = iter(list(self._queries))

    # -- tables ---------------------------------------------------------------------------
    def staging(self, name: str) -> sa.TableClause:
        """A staging table (one object per table: a statement names each table once)."""
        if name not in self._tables:
            model = self.tables[name]
            self._tables[name] = sa.table(
                self.names.staging(name), sa.column("inp", sa.Integer()),
                *(sa.column(c.name, c.type) for c in model.columns))
        return self._tables[name]

    def work(self, name: str) -> sa.TableClause:
        """A work table (its columns are those of its query)."""
        key = f"work:{name}"
        if key not in self._tables:
            query = self._queries[name]
            self._tables[key] = sa.table(self.names.work(name), *(
                sa.column(str(c.key), c.type) for c in query.selected_columns))
        return self._tables[key]

    def all_rows(self, name: str, rid: bool = False, alias: str | None = None) -> sa.Subquery:
        """Every input's rows of ``name``: the target's as input 0, then the staged ones;
        with ``rid``, each row's address as ``rid``."""
        model = self.tables[name]
        target = model.alias("t")
        staged = self.staging(name).alias("s")
        parts = []
        for inp, source, short in ((lit(0), target, "t"), (None, staged, "s")):
            first = [inp.label("inp") if inp is not None else source.c.inp]
            if rid:
                first.append(RowPointer(short).label("rid"))
            part = sa.select(*first, *(source.c[c.name] for c in model.columns))
            if inp is not None and name in NARROWED:
                # a staged row's duplicate (or rival member row) is in its room: the
                # target's rows of rooms no staged row has are never read
                part = part.where(self._in_staged_rooms(name, target))
            parts.append(part)
        return sa.union_all(*parts).subquery(alias)

    def _in_staged_rooms(self, name: str, target: Any) -> Any:
        """The target's rows of ``name`` (aliased ``target``) in rooms some staged row has
        (or without a room)."""
        room = self.staging(name).c.room_jid
        return sa.or_(target.c.room_jid.is_(None), target.c.room_jid.in_(
            sa.select(room).where(room.is_not(None))))

    # -- the work tables, as queries ------------------------------------------------------
    def work_queries(self) -> list[tuple[str, sa.Select[Any]]]:
        """(work table, query) for every work table, in the order they are filled."""
        return list(self._queries.items())

    def _build(self) -> None:
        out = self._queries
        if any(n in self.tables for n in HOLDER_ROOM):
            out["room"] = self._room_query()
        if "tc_rooms" in self.tables:
            out["rooms"] = self._rooms_query()
        if "tc_users" in self.tables:
            out["users_all"] = self._users_all_query()
            out["users"] = self._users_query()
        self._build_messages()
        if any(n in self.tables for n in MESSAGES):
            out["idmap"] = self._idmap_query()
            if "tc_rooms" in self.tables:
                out["ids"] = self._ids_query()
        for name, work in UNIONS.items():
            if name in self.tables:
                out[f"{work}_h"] = self._hash_query(name, ())
                out[work] = self._union_query(name, work)
        if "aft_log" in self.tables:
            out["aft_h"] = self._hash_query("aft_log", ("aft_index",))
            out["aft"] = self._aft_query()
        assert list(self._queries) == [n for n in ANALYSIS_ORDER if n in self._queries]

    def _room_query(self) -> sa.Select[Any]:
        """Per room: its owner (the first input holding it), how many inputs hold it, and
        the owner's lowest and highest msg_id (the ids its rows keep)."""
        h = sa.union_all(*self._holder_rows()).subquery("h")
        per = (sa.select(h.c.inp, h.c.room_jid, sa.func.min(h.c.msg_id).label("lo"),
                         sa.func.max(h.c.msg_id).label("hi"))
               .where(h.c.room_jid.is_not(None)).group_by(h.c.inp, h.c.room_jid)
               .subquery("p"))
        ranked = sa.select(
            per, sa.func.row_number().over(partition_by=per.c.room_jid,
                                           order_by=per.c.inp).label("rn"),
            sa.func.count().over(partition_by=per.c.room_jid).label("nholders"),
        ).subquery("r")
        return (sa.select(ranked.c.room_jid, ranked.c.inp.label("owner"), ranked.c.nholders,
                          ranked.c.lo, ranked.c.hi).where(ranked.c.rn == lit(1)))

    def _holder_rows(self) -> list[sa.Select[Any]]:
        """(inp, room_jid, msg_id) of every row that makes an input a room's holder (msg_id
        NULL outside the message tables): the owner and its id range come from them."""
        parts = []
        for name, column in HOLDER_ROOM.items():
            if name not in self.tables:
                continue
            model = self.tables[name]
            for inp, source in ((lit(0), model.alias("t")),
                                (None, self.staging(name).alias("s"))):
                msg_id = source.c.msg_id if name in MESSAGES \
                    else sa.cast(sa.null(), sa.BigInteger())
                parts.append(sa.select(source.c.inp if inp is None else inp.label("inp"),
                                       source.c[column].label("room_jid"),
                                       msg_id.label("msg_id")))
        return parts

    def _rooms_query(self) -> sa.Select[Any]:
        """Rule 1: per source row of tc_rooms, the input whose row wins (the first
        holding the room), and whether it conflicts (creator or type differ: an error) or
        diverged (subject, config or spacket differ: the winner's row stays)."""
        model = self.tables["tc_rooms"]
        a = self.all_rows("tc_rooms")
        n = sa.select(a, sa.func.row_number().over(partition_by=a.c.room_jid,
                                                   order_by=a.c.inp).label("rn")).cte("n")
        s, w = n.alias("s"), n.alias("w")
        conflict = sa.not_(same_row(model, s, w, only=("creator_jid", "type")))
        diverged = sa.not_(same_row(model, s, w, only=("subject", "config", "spacket")))
        return (sa.select(s.c.inp, s.c.room_jid, w.c.inp.label("winner"),
                          flag(conflict).label("conflict"), flag(diverged).label("diverged"))
                .select_from(s.join(w, sa.and_(w.c.room_jid == s.c.room_jid,
                                               w.c.rn == lit(1))))
                .where(s.c.inp > lit(0)))

    def _users_all_query(self) -> sa.Select[Any]:
        """Rule 5: every member row, ranked per (room, member): the target's row first,
        then a ban, then the earliest input."""
        a = self.all_rows("tc_users")
        return sa.select(a, sa.func.row_number().over(
            partition_by=(a.c.room_jid, a.c.real_jid),
            order_by=(flag(a.c.inp != lit(0)), flag(a.c.affiliation != lit("outcast")),
                      a.c.inp)).label("rn"))

    def _users_query(self) -> sa.Select[Any]:
        model = self.tables["tc_users"]
        k, w = self.work("users_all").alias("k"), self.work("users_all").alias("w")
        same = same_row(model, k, w, exclude=("room_jid", "real_jid"))
        return (sa.select(k.c.inp, k.c.room_jid, k.c.real_jid, k.c.affiliation,
                          w.c.inp.label("winner"), w.c.affiliation.label("waff"),
                          flag(same).label("same"))
                .select_from(k.join(w, sa.and_(w.c.room_jid == k.c.room_jid,
                                               w.c.real_jid == k.c.real_jid,
                                               w.c.rn == lit(1))))
                .where(k.c.inp > lit(0)))

    #: the row hash tells unequal rows apart by itself (PostgreSQL: the md5 of the row's
    #: injective text form), so candidates need no column-by-column confirmation
    hash_is_exact = False

    def _hashed(self, model: sa.Table, rows: Any, exclude: tuple[str, ...],
                in_target: bool = False) -> Any:
        return row_hash([(self._hash_input(c, rows, in_target), is_lob(c))
                         for c in model.columns if c.name not in exclude],
                        by_type=model.name in self.hashed_by_type).label("h")

    def _hash_input(self, column: sa.Column[Any], rows: Any, in_target: bool) -> Any:
        """A column as the row hash reads it (a target's value as staging holds it)."""
        return rows.c[column.name]

    def _build_messages(self) -> None:
        """The message tables' work queries (again when the rows' places change: see
        ``moved``). With an exact row hash the hashed rows are not kept in a table of
        their own: the verdicts read them inline."""
        for name, (work, _room, _date, _keep) in MESSAGES.items():
            if name in self.tables:
                self._queries[f"{work}_k"] = self._keys_query(name)
                self._queries[f"{work}_p"] = self._pairs_query(work)
                if not self.hash_is_exact:
                    self._queries[f"{work}_h"] = self._message_hash_query(name)
                self._queries[work] = self._message_query(name)

    def moved(self, staged: dict[str, dict[int, int]], direct: dict[str, dict[int, int]],
              settled: dict[str, dict[int, int]] | None = None) -> None:
        """What the transports moved, per table and input: staged, and copied straight
        into the target's table (there, the owner's rows of a shared room's messages);
        ``settled``: read as duplicates without being moved (see ``self.settled``)."""
        self.staged, self.direct, self.settled = staged, direct, dict(settled or {})
        self.owner_rows_in_target = {n for n in MESSAGES if n in direct}
        self._build_messages()

    def _keys_query(self, name: str) -> sa.Select[Any]:
        """Rules 2 and 3 look only at rooms several inputs hold: (inp, room, msg_id, date)
        of each of their rows."""
        _work, room, date, _keep = MESSAGES[name]
        x = self.all_rows(name)
        r = self.work("room").alias("r")
        return (sa.select(x.c.inp, x.c[room].label("room_jid"), x.c.msg_id,
                          x.c[date].label("d"))
                .select_from(x.join(r, sa.and_(r.c.room_jid == x.c[room],
                                               r.c.nholders > lit(1)))))

    def _pairs_query(self, work: str) -> sa.Select[Any]:
        """Equal rows have equal rooms and dates: the (room, date) pairs that several
        inputs have hold every duplicate; only their rows are compared in full."""
        k = self.work(f"{work}_k")
        return (sa.select(k.c.room_jid, k.c.d).where(k.c.d.is_not(None))
                .group_by(k.c.room_jid, k.c.d)
                .having(sa.func.min(k.c.inp) != sa.func.max(k.c.inp)))

    def _message_hash_query(self, name: str) -> sa.Select[Any]:
        """The rows of the pairs (and those without a date), with the hash of every
        column but msg_id, read where they are: the target's own rows in the target's
        table (``owner_in_target``: also the owner's, copied straight in by a transport),
        the others in staging."""
        work, room, _date, _keep = MESSAGES[name]
        k, p = self.work(f"{work}_k").alias("k"), self.work(f"{work}_p").alias("p")
        r = self.work("room").alias("r")
        c = sa.union_all(
            sa.select(k.c.inp, k.c.room_jid, k.c.msg_id, r.c.owner).select_from(
                k.join(p, sa.and_(p.c.room_jid == k.c.room_jid, p.c.d == k.c.d))
                .join(r, r.c.room_jid == k.c.room_jid)),
            sa.select(k.c.inp, k.c.room_jid, k.c.msg_id, r.c.owner).select_from(
                k.join(r, r.c.room_jid == k.c.room_jid)).where(k.c.d.is_(None)),
        ).cte("c")  # read by both branches below: computed once
        model = self.tables[name]
        target, staged = model.alias("x"), self.staging(name).alias("s")
        here = c.c.inp == lit(0)
        if name in self.owner_rows_in_target:
            here = sa.or_(here, c.c.inp == c.c.owner)
        u = sa.union_all(
            sa.select(c.c.inp, c.c.room_jid, c.c.msg_id,
                      self._hashed(model, target, ("msg_id",), in_target=True))
            .select_from(c.join(target, sa.and_(target.c[room] == c.c.room_jid,
                                                target.c.msg_id == c.c.msg_id)))
            .where(here),
            sa.select(c.c.inp, c.c.room_jid, c.c.msg_id,
                      self._hashed(model, staged, ("msg_id",)))
            .select_from(c.join(staged, sa.and_(staged.c.inp == c.c.inp,
                                                staged.c[room] == c.c.room_jid,
                                                staged.c.msg_id == c.c.msg_id)))
            .where(sa.not_(here)),
        ).subquery("u")
        return sa.select(u.c.inp, u.c.room_jid, u.c.msg_id, u.c.h)

    def _duplicates(self, name: str, hashed: str, key: tuple[str, ...],
                    exclude: tuple[str, ...]) -> sa.Subquery:
        """(inp, key...) of the rows equal (but for ``exclude``) to a row of an earlier
        input, and for the message tables in the same room. With an exact hash, equal
        hashes are equal rows: a row is a duplicate when an earlier input has its hash
        (one pass, no pairs built). Otherwise equal hashes make the candidates and the rows
        compared column by column decide."""
        room = MESSAGES[name][1] if name in MESSAGES else None
        if self.hash_is_exact:
            rows: Any = (self._message_hash_query(name).subquery(hashed) if room
                         else self.work(hashed))
            part = (rows.c.room_jid, rows.c.h) if room else (rows.c.h,)
            first = sa.select(rows, sa.func.min(rows.c.inp).over(partition_by=part)
                              .label("first")).subquery("f")
            return (sa.select(first.c.inp, *(first.c[k] for k in key))
                    .where(first.c.inp > first.c.first).subquery("dd"))
        model = self.tables[name]
        x, e = self.work(hashed).alias("x"), self.work(hashed).alias("e")
        rid = key == ("rid",)
        xr, er = self.all_rows(name, rid, "xr"), self.all_rows(name, rid, "er")

        def at(rows: Any, ref: Any) -> Any:
            cond = [rows.c.inp == ref.c.inp]
            for k in key:
                cond.append(rows.c[room if k == "room_jid" and room else k] == ref.c[k])
            return sa.and_(*cond)

        pair = [e.c.h == x.c.h, e.c.inp < x.c.inp]
        if room:
            pair.insert(0, e.c.room_jid == x.c.room_jid)
        return (sa.select(x.c.inp, *(x.c[k] for k in key)).distinct()
                .select_from(x.join(e, sa.and_(*pair)).join(xr, at(xr, x)).join(er, at(er, e)))
                .where(same_row(model, xr, er, exclude=exclude)).subquery("dd"))

    def _message_query(self, name: str, *, compare: bool = True) -> sa.Select[Any]:
        """Rules 2 and 3: per row of a shared room but its owner's (which keep their ids),
        the owner and whether it is a duplicate. A recent message with an archive row (same
        input, room and old id) follows that row's verdict: kept and renumbered with it,
        or dropped with it; one without an archive row is judged on its own columns.
        ``compare`` False: no row can equal another (see ``_may_repeat``), none is
        compared."""
        work = MESSAGES[name][0]
        k, r = self.work(f"{work}_k").alias("k"), self.work("room").alias("r")
        joined: Any = k.join(r, r.c.room_jid == k.c.room_jid)
        own: Any = lit(0)
        if compare:
            dd = self._duplicates(name, f"{work}_h", ("room_jid", "msg_id"), ("msg_id",))
            own = flag(dd.c.msg_id.is_not(None))
            joined = joined.outerjoin(dd, sa.and_(dd.c.inp == k.c.inp,
                                                  dd.c.room_jid == k.c.room_jid,
                                                  dd.c.msg_id == k.c.msg_id))
        if work == "msg" and "tc_msgarchive" in self.tables:
            ar = self.work("arch").alias("ar")
            own = sa.case((ar.c.msg_id.is_not(None), ar.c.dup), else_=own)
            joined = joined.outerjoin(ar, sa.and_(ar.c.inp == k.c.inp,
                                                  ar.c.room_jid == k.c.room_jid,
                                                  ar.c.msg_id == k.c.msg_id))
        return (sa.select(k.c.inp, k.c.room_jid, k.c.msg_id, k.c.d, r.c.owner,
                          own.label("dup")).select_from(joined)
                .where(k.c.inp != r.c.owner))

    def _idmap_query(self) -> sa.Select[Any]:
        """Rules 2 and 3: new ids for the kept rows of later inputs of shared rooms, above
        the owner's highest id, in (date, input, old id) order; one id per (input, room,
        old id) in both message tables, so a recent message keeps its archive row's id."""
        kept = {work: self.work(work) for name, (work, *_r) in MESSAGES.items()
                if name in self.tables}
        subs = {work: sa.select(t).where(t.c.inp > t.c.owner, t.c.dup == lit(0)).subquery(work)
                for work, t in kept.items()}
        if len(subs) == 2:
            a, m = subs["arch"], subs["msg"]
            need = sa.select(
                sa.func.coalesce(a.c.room_jid, m.c.room_jid).label("room_jid"),
                sa.func.coalesce(a.c.inp, m.c.inp).label("inp"),
                sa.func.coalesce(a.c.msg_id, m.c.msg_id).label("old_id"),
                sa.func.coalesce(a.c.d, m.c.d).label("d"),
                flag(a.c.room_jid.is_not(None)).label("arch_keep"),
                flag(m.c.room_jid.is_not(None)).label("msg_keep"),
            ).select_from(a.outerjoin(m, sa.and_(m.c.room_jid == a.c.room_jid,
                                                 m.c.inp == a.c.inp, m.c.msg_id == a.c.msg_id),
                                      full=True)).subquery("n")
        else:
            [(work, only)] = subs.items()
            need = sa.select(only.c.room_jid, only.c.inp, only.c.msg_id.label("old_id"),
                             only.c.d, lit(int(work == "arch")).label("arch_keep"),
                             lit(int(work == "msg")).label("msg_keep")).subquery("n")
        r = self.work("room").alias("r")
        new_id = sa.func.coalesce(r.c.hi, lit(0)) + sa.func.row_number().over(
            partition_by=need.c.room_jid, order_by=(need.c.d, need.c.inp, need.c.old_id))
        return (sa.select(need.c.room_jid, need.c.inp, need.c.old_id, need.c.arch_keep,
                          need.c.msg_keep, new_id.label("new_id"))
                .select_from(need.join(r, r.c.room_jid == need.c.room_jid)))

    def _ids_query(self) -> sa.Select[Any]:
        """Rule 4: per room the lowest and highest msg_id after the merge: the owner's
        rows keep theirs, the kept rows of later inputs take the id map's (computed, not
        read back; verification reads the merged tables)."""
        room, idmap = self.work("room"), self.work("idmap")
        x = sa.union_all(
            sa.select(room.c.room_jid, room.c.lo, room.c.hi).where(room.c.hi.is_not(None)),
            sa.select(idmap.c.room_jid, sa.func.min(idmap.c.new_id),
                      sa.func.max(idmap.c.new_id)).group_by(idmap.c.room_jid),
        ).subquery("x")
        return (sa.select(x.c.room_jid, sa.func.min(x.c.lo).label("lo"),
                          sa.func.max(x.c.hi).label("hi")).group_by(x.c.room_jid))

    def _hash_query(self, name: str, exclude: tuple[str, ...]) -> sa.Select[Any]:
        a = self.all_rows(name, rid=True)
        extra = [a.c.aft_index, a.c.timestampvalue.label("ts")] if name == "aft_log" else []
        return sa.select(a.c.inp, a.c.rid, *extra,
                         self._hashed(self.tables[name], a, exclude))

    def _union_query(self, name: str, work: str) -> sa.Select[Any]:
        """Rule 6: the rows of tc_timelog and jm no earlier input holds."""
        a = self.work(f"{work}_h").alias("a")
        dd = self._duplicates(name, f"{work}_h", ("rid",), ())
        return (sa.select(a.c.inp, a.c.rid)
                .select_from(a.outerjoin(dd, sa.and_(dd.c.inp == a.c.inp, dd.c.rid == a.c.rid)))
                .where(a.c.inp > lit(0), dd.c.inp.is_(None)))

    def _aft_query(self) -> sa.Select[Any]:
        """Rule 7: aft_log rows no earlier input holds (equal but for aft_index); a kept
        row whose aft_index an earlier input's kept row has gets a new one above every
        index, in (time, input, old index) order."""
        a = self.work("aft_h").alias("a")
        dd = self._duplicates("aft_log", "aft_h", ("rid",), ("aft_index",))
        k = (sa.select(a).select_from(a.outerjoin(dd, sa.and_(dd.c.inp == a.c.inp,
                                                                 dd.c.rid == a.c.rid)))
             .where(dd.c.inp.is_(None)).cte("k"))
        collides = flag(k.c.inp > sa.func.min(k.c.inp).over(partition_by=k.c.aft_index))
        c = sa.select(k.c.inp, k.c.rid, k.c.aft_index, k.c.ts,
                      collides.label("collides")).cte("c")
        tops = sa.select(sa.func.coalesce(sa.func.max(c.c.aft_index), lit(0)).label("top")
                         ).cte("tops")
        renumbered = tops.c.top + sa.func.row_number().over(
            partition_by=c.c.collides, order_by=(c.c.ts, c.c.inp, c.c.aft_index))
        return (sa.select(c.c.inp, c.c.rid, c.c.collides,
                          sa.case((c.c.collides == lit(1), renumbered),
                                  else_=c.c.aft_index).label("new_index"))
                .select_from(c.join(tops, sa.true())).where(c.c.inp > lit(0)))

    # -- statements -----------------------------------------------------------------------
    def work_names(self) -> list[str]:
        return [self.names.work(n) for n in self._queries]

    def create_statements(self) -> list[CreateWorkTable]:
        """The empty work tables (Oracle: before the merge transaction; PostgreSQL: TEMP
        tables inside it)."""
        return [CreateWorkTable(self.names.work(n), q) for n, q in self._queries.items()]

    def fill_statement(self, name: str, query: sa.Select[Any] | None = None) -> sa.Insert:
        columns = [str(c.key) for c in self._queries[name].selected_columns]
        return sa.insert(self.work(name)).from_select(
            columns, self._queries[name] if query is None else query)

    def refusals(self) -> list[RefuseIf]:
        """What stops a script where the merge would refuse (rule 1's ROOM_CONFLICT)."""
        if "rooms" not in self._queries:
            return []
        w = self.work("rooms")
        return [RefuseIf(
            sa.select(sa.func.count()).select_from(w).where(w.c.inp != w.c.winner,
                                                            w.c.conflict == lit(1)),
            "ROOM_CONFLICT: a room exists in an earlier input with a different creator_jid "
            "or type; nothing was merged (run tcmerge validate for the rooms)")]

    def apply_statements(self) -> list[tuple[str, sa.Insert | UpdateFrom]]:
        """(table, statement) in the order ``apply`` runs them."""
        out: list[tuple[str, sa.Insert | UpdateFrom]] = []
        for name, (_work, room, _date, keep) in MESSAGES.items():
            if name not in self.tables:
                continue
            model, s = self.tables[name], self.staging(name).alias("s")
            r, m = self.work("room").alias("r"), self.work("idmap").alias("m")
            rest = [s.c[c.name] for c in model.columns if c.name != "msg_id"]
            query = (sa.select(sa.func.coalesce(m.c.new_id, s.c.msg_id), *rest)
                     .select_from(s.join(r, r.c.room_jid == s.c[room]).outerjoin(
                         m, sa.and_(m.c.room_jid == s.c[room], m.c.inp == s.c.inp,
                                    m.c.old_id == s.c.msg_id)))
                     .where(sa.or_(s.c.inp == r.c.owner, m.c[keep] == lit(1))))
            out.append((name, self._insert(model, ["msg_id", *(c.name for c in rest)], query)))
        if "tc_users" in self.tables:
            model, s = self.tables["tc_users"], self.staging("tc_users").alias("s")
            w = self.work("users").alias("w")
            query = (sa.select(*(s.c[c.name] for c in model.columns))
                     .select_from(s.join(w, sa.and_(w.c.inp == s.c.inp,
                                                    w.c.room_jid == s.c.room_jid,
                                                    w.c.real_jid == s.c.real_jid)))
                     .where(w.c.winner == s.c.inp))
            out.append(("tc_users", self._insert(model, [c.name for c in model.columns], query)))
        for name, work in (*UNIONS.items(), ("aft_log", "aft")):
            if name not in self.tables:
                continue
            model, s = self.tables[name], self.staging(name).alias("s")
            w = self.work(work).alias("w")
            cols = [s.c[c.name] for c in model.columns]
            if name == "aft_log":  # the new index where the old one is taken
                cols[0] = w.c.new_index
            query = (sa.select(*cols).select_from(s.join(w, sa.and_(
                w.c.inp == s.c.inp, w.c.rid == RowPointer("s")))))
            out.append((name, self._insert(model, [c.name for c in model.columns], query)))
        if "tc_rooms" in self.tables:
            out += self._room_statements()
        return out

    def _insert(self, model: sa.Table, columns: list[str], query: sa.Select[Any]) -> sa.Insert:
        return sa.insert(model).from_select(columns, query)

    def _room_statements(self) -> list[tuple[str, sa.Insert | UpdateFrom]]:
        """Rule 4: inserted rooms take counters above every id kept; a target room's are
        corrected only where wrong (next_msg_id raised, start_msg_id lowered, never the
        other way)."""
        model, s = self.tables["tc_rooms"], self.staging("tc_rooms").alias("s")
        w = self.work("rooms").alias("w")
        plain = [c.name for c in model.columns if c.name not in ("start_msg_id", "next_msg_id")]
        values: list[Any] = [s.c[c] for c in plain]
        joined = s.join(w, sa.and_(w.c.inp == s.c.inp, w.c.room_jid == s.c.room_jid,
                                   w.c.winner == s.c.inp))
        if "ids" not in self._queries:
            values += [s.c.start_msg_id, s.c.next_msg_id]
            query = sa.select(*values).select_from(joined)
            return [("tc_rooms", self._insert(model, [*plain, "start_msg_id", "next_msg_id"],
                                              query))]
        i = self.work("ids").alias("i")
        values += [sa.func.coalesce(i.c.lo, s.c.start_msg_id),
                   sa.func.greatest(s.c.next_msg_id,
                                    sa.func.coalesce(i.c.hi + lit(1), s.c.next_msg_id))]
        query = sa.select(*values).select_from(joined.outerjoin(
            i, i.c.room_jid == s.c.room_jid))
        ids, room = self.work("ids"), self.work("room")
        owned = (sa.select(ids.c.room_jid, ids.c.lo, ids.c.hi)
                 .select_from(ids.join(room, room.c.room_jid == ids.c.room_jid))
                 .where(room.c.owner == lit(0)))  # the target's own rooms
        t, o = update_aliases(model, owned)
        update = UpdateFrom(model, owned, "room_jid", {
            "start_msg_id": sa.func.least(t.c.start_msg_id, o.c.lo),
            "next_msg_id": sa.func.greatest(t.c.next_msg_id, o.c.hi + lit(1))},
            sa.or_(t.c.start_msg_id > o.c.lo, t.c.next_msg_id <= o.c.hi))
        return [("tc_rooms", self._insert(model, [*plain, "start_msg_id", "next_msg_id"],
                                          query)),
                ("tc_rooms:counters", update)]

    # -- running ----------------------------------------------------------------------------
    def _run(self) -> Runner:
        assert self.runner is not None, "these rules were built for listing only"
        return self.runner

    #: work tables are made inside the merge transaction, just before they are filled
    #: (PostgreSQL: TEMP tables); otherwise before it (Oracle: its DDL commits)
    creates_work_in_transaction = False

    def _fill(self, name: str, query: sa.Select[Any] | None = None, *,
              own: sa.Executable | None = None) -> None:
        """Fill work table ``name`` by its query, in the listed order; ``query``: another
        query of the same columns (the dialect knows where the rows are); ``own``: a
        statement of the dialect's own that makes and fills the table itself."""
        expected = next(self._next_fill, None)
        if expected != name:  # the order a script shows is the order run
            raise AssertionError(f"work table {name} filled out of order (expected {expected})")
        if own is not None:
            self._run().execute(own)
        else:
            if self.creates_work_in_transaction:
                self._run().execute(CreateWorkTable(self.names.work(name),
                                                    self._queries[name]))
            self._run().execute(self.fill_statement(name, query))
        self._filled(name)

    def _filled(self, name: str) -> None:
        """After a work table is filled (PostgreSQL gathers its statistics)."""

    def _count(self, table: Any, where: Any = None) -> int:
        query = sa.select(sa.func.count()).select_from(table)
        return int(self._run().scalar(query if where is None else query.where(where)))

    def _by_input(self, table: Any, where: Any = None) -> dict[int, int]:
        query = sa.select(table.c.inp, sa.func.count()).group_by(table.c.inp)
        if where is not None:
            query = query.where(where)
        return {int(i): int(n) for i, n in self._run().rows(query)}

    def count_target(self, known: dict[str, int] | None = None) -> None:
        """The target's own rows per table (input 0), before anything is written
        (``known``: counted already, as by the checksums)."""
        for name, model in self.tables.items():
            self.target_counts[name] = (known[name] if known and name in known
                                        else self._count(model))

    def _read(self, name: str) -> list[int]:
        if self.staged is not None:
            per = dict(self.staged.get(name, {}))
        else:
            per = self._by_input(self.staging(name))
        for moved in (self.direct, self.settled):
            for inp, n in moved.get(name, {}).items():
                per[inp] = per.get(inp, 0) + n
        target = self.target_counts.get(name)
        if target is None:
            target = self._count(self.tables[name])
        return [target] + [per.get(i, 0) for i in range(1, len(self.inputs))]

    def _samples(self, work: str, cond: Any, keys: tuple[str, ...]
                 ) -> dict[int, tuple[int, list[str]]]:
        """``inp -> (count, first keys)``; keys are joined in Python (two JIDs joined in
        SQL could pass Oracle's VARCHAR2 limit)."""
        w = self.work(work)
        order = [w.c[k] for k in keys]
        inner = sa.select(w.c.inp, *order,
                          sa.func.count().over(partition_by=w.c.inp).label("n"),
                          sa.func.row_number().over(partition_by=w.c.inp,
                                                    order_by=order).label("rn")
                          ).where(cond).subquery("x")
        rows = self._run().rows(sa.select(inner.c.inp, inner.c.n, *(inner.c[k] for k in keys))
                                .where(inner.c.rn <= lit(SAMPLE))
                                .order_by(inner.c.inp, inner.c.rn))
        out: dict[int, tuple[int, list[str]]] = {}
        for row in rows:
            n, found = out.get(int(row[0]), (int(row[1]), []))
            found.append(" ".join(str(v) for v in row[2:]))
            out[int(row[0])] = (n, found)
        return out

    def _sums(self, work: str,
              conditions: Callable[[sa.TableClause], tuple[Any, ...]]) -> list[int]:
        """How many rows of a work table meet each condition."""
        w = self.work(work)
        row = self._run().rows(sa.select(*(sa.func.coalesce(sa.func.sum(flag(c)), lit(0))
                                           for c in conditions(w))))[0]
        return [int(x) for x in row]

    # -- analysis ---------------------------------------------------------------------------
    def analyse(self) -> Analysis:
        """The analysis in the contract's order (rooms, members, messages, unions,
        aft_log): the work tables filled, exact counts and findings."""
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

    def rooms_owners(self) -> None:
        if "room" in self._queries:
            self._fill("room")

    def _persistent_rooms_after(self) -> int:
        model = self.tables["tc_rooms"]
        w, s = self.work("rooms"), self.staging("tc_rooms")
        own = self._count(model, model.c.type == lit("persistent"))
        added = self._count(w.join(s, sa.and_(s.c.inp == w.c.inp, s.c.room_jid == w.c.room_jid)),
                            sa.and_(w.c.inp == w.c.winner, s.c.type == lit("persistent")))
        return own + added

    def _analyse_rooms(self, findings: list[Finding]) -> TableCounts:
        self._fill("rooms")
        inserted, dups, conflicts = self._sums("rooms", lambda w: (
            w.c.inp == w.c.winner,
            sa.and_(w.c.inp != w.c.winner, w.c.conflict == lit(0), w.c.diverged == lit(0)),
            sa.and_(w.c.inp != w.c.winner, sa.or_(w.c.conflict == lit(1),
                                                   w.c.diverged == lit(1)))))
        w = self.work("rooms")
        for code, make, cond, text in (
            ("ROOM_CONFLICT", error, w.c.conflict == lit(1),
             "room(s) exist in an earlier input with a different creator_jid or type"),
            ("ROOM_DIVERGED", warning, sa.and_(w.c.diverged == lit(1), w.c.conflict == lit(0)),
             "room(s) differ from the owner's row in subject, config or spacket; the "
             "owner's row wins"),
        ):
            per = self._samples("rooms", sa.and_(w.c.inp != w.c.winner, cond), ("room_jid",))
            for inp, (n, rooms) in sorted(per.items()):
                findings.append(make(
                    code, f"{n} {text}: {', '.join(rooms[:3])}" + (" ..." if n > 3 else ""),
                    database=self.inputs[inp], table="tc_rooms", count=n,
                    details={"rooms": rooms},
                    hint=("rooms with the same JID but a different creator or type are "
                          "different rooms; rename or remove one before merging")
                    if code == "ROOM_CONFLICT" else None))
        return TableCounts("tc_rooms", self._read("tc_rooms"), inserted=inserted,
                           duplicates=dups, conflicts=conflicts)

    def _analyse_users(self, result: Analysis) -> TableCounts:
        self._fill("users_all")
        self._fill("users")
        inserted, dups, conflicts = self._sums("users", lambda w: (
            w.c.inp == w.c.winner, sa.and_(w.c.inp != w.c.winner, w.c.same == lit(1)),
            sa.and_(w.c.inp != w.c.winner, w.c.same == lit(0))))
        inserted += sum(self.direct.get("tc_users", {}).values())  # rooms of one input
        w, keys = self.work("users"), ("room_jid", "real_jid")
        conflicting = self._samples("users", sa.and_(w.c.inp != w.c.winner, w.c.same == lit(0)),
                                    keys)
        for inp, (n, found) in sorted(conflicting.items()):
            result.findings.append(warning(
                "AFFILIATION_CONFLICT",
                f"{n} member row(s) differ from the row kept (the owner's, or a ban): "
                + ", ".join(found[:3]) + (" ..." if n > 3 else ""),
                database=self.inputs[inp], table="tc_users", count=n,
                details={"members": found}))
        lost = sa.and_(w.c.affiliation == lit("outcast"), w.c.winner == lit(0),
                       w.c.waff != lit("outcast"))
        for inp, (n, found) in sorted(self._samples("users", lost, keys).items()):
            result.bans_not_applied += n
            result.findings.append(warning(
                "BAN_NOT_APPLIED",
                f"{n} ban(s) cannot be applied without altering the target's member row, "
                "which a merge never does: " + ", ".join(found[:3]) + (" ..." if n > 3 else ""),
                database=self.inputs[inp], table="tc_users", count=n,
                details={"members": found},
                hint="apply these bans on the target by hand after the merge if wanted"))
        # the bans the merged target must hold (verify compares): every ban of every input
        # but those the target's own row overrides; the target's rows of rooms no staged
        # row has were not analysed, and all of their bans stay (the two sets of rooms
        # are disjoint)
        everyone, model = self.work("users_all"), self.tables["tc_users"]
        bans = sa.union(
            sa.except_(
                sa.select(everyone.c.room_jid, everyone.c.real_jid).distinct()
                .where(everyone.c.affiliation == lit("outcast")),
                sa.select(w.c.room_jid, w.c.real_jid).where(w.c.winner == lit(0),
                                                            w.c.waff != lit("outcast"))),
            sa.select(model.c.room_jid, model.c.real_jid)
            .where(model.c.affiliation == lit("outcast"),
                   sa.not_(self._in_staged_rooms("tc_users", model))),
        ).subquery("b")
        row = self._run().rows(sa.select(sa.func.count(),
                                         pair_digest(bans.c.room_jid, bans.c.real_jid)))[0]
        result.bans_expected = f"{row[0]}:{row[1]}"
        return TableCounts("tc_users", self._read("tc_users"), inserted=inserted,
                           duplicates=dups, conflicts=conflicts)

    def _analyse_messages(self, counts: dict[str, TableCounts], findings: list[Finding]) -> None:
        self._judge_messages()
        for name in ("idmap", "ids"):
            if name in self._queries:
                self._fill(name)
        for name, (work, _room, _date, keep) in MESSAGES.items():
            if name not in self.tables:
                continue
            w, idmap = self.work(work), self.work("idmap")
            dups = self._by_input(w, w.c.dup == lit(1))
            renumbered = self._by_input(idmap, idmap.c[keep] == lit(1))
            c = TableCounts(name, self._read(name), duplicates=sum(dups.values()) + sum(
                self.settled.get(name, {}).values()), renumbered=sum(renumbered.values()))
            c.inserted = c.source_rows - c.duplicates
            counts[name] = c
            for inp, n in sorted(renumbered.items()):
                findings.append(info(
                    "MSG_ID_COLLISION",
                    f"{n} row(s) of rooms also held by an earlier input get new msg_ids above "
                    "the room's highest id", database=self.inputs[inp], table=name, count=n))

    def _judge_messages(self) -> None:
        """Rules 2 and 3: the message work tables (keys, pairs, the compared rows' hashes,
        then per row of a shared room its owner and whether it is a duplicate)."""
        for name, (work, *_rest) in MESSAGES.items():
            if name not in self.tables:
                continue
            self._fill_keys(name)
            for step in ("_p", "_h"):
                if work + step in self._queries:
                    self._fill(work + step)
            self._fill(work, None if self._may_repeat(work)
                       else self._message_query(name, compare=False))

    def _fill_keys(self, name: str) -> None:
        """The keys work table of a message table (``_keys_query``)."""
        self._fill(f"{MESSAGES[name][0]}_k")

    def _may_repeat(self, work: str) -> bool:
        """Whether any row of a shared room can equal another input's: only rows of the
        (room, date) pairs several inputs have, and rows without a date, are candidates.
        (No candidate, as when the inputs' messages of a room are of different days: the
        verdicts need no row compared.)"""
        k, p = self.work(f"{work}_k"), self.work(f"{work}_p")
        return any(self._run().rows(query.limit(1)) for query in (
            sa.select(lit(1)).select_from(p),
            sa.select(lit(1)).select_from(k).where(k.c.d.is_(None))))

    def _analyse_union(self, name: str) -> TableCounts:
        work = UNIONS[name]
        self._fill(f"{work}_h")
        self._fill(work)
        read = self._read(name)
        inserted = self._count(self.work(work)) + sum(self.direct.get(name, {}).values())
        return TableCounts(name, read, inserted=inserted, duplicates=sum(read[1:]) - inserted)

    def _analyse_aft(self, findings: list[Finding]) -> TableCounts:
        self._fill("aft_h")
        self._fill("aft")
        read = self._read("aft_log")
        inserted, renumbered = self._sums("aft", lambda w: (sa.true(), w.c.collides == lit(1)))
        if renumbered:
            findings.append(info("AFT_INDEX_COLLISION",
                                 f"{renumbered} aft_log row(s) get a new aft_index (theirs is "
                                 "taken)", table="aft_log", count=renumbered))
        return TableCounts("aft_log", read, inserted=inserted,
                           duplicates=sum(read[1:]) - inserted, renumbered=renumbered)

    # -- apply ------------------------------------------------------------------------------
    def apply(self, counts: dict[str, TableCounts],
              after_messages: Callable[[], None] | None = None) -> dict[str, int]:
        """Insert every kept row; repair the counters. Returns rows written per table.

        ``after_messages`` runs once the message tables hold every row, before anything
        else is written (the PostgreSQL merge rebuilds their indexes there)."""
        written: dict[str, int] = {}
        for name, statement in self.apply_statements():
            if after_messages is not None and name not in MESSAGES:
                after_messages()
                after_messages = None
            n = self._insert_rows(name, statement)
            if name == "tc_rooms:counters":
                counts["tc_rooms"].updated = n
            else:
                written[name] = n
        if after_messages is not None:
            after_messages()
        return written

    def _insert_rows(self, name: str, statement: sa.Insert | UpdateFrom) -> int:
        return self._run().execute(statement)
