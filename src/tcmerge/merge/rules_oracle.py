"""The contract's merge rules as set-based SQL over the staging tables (Oracle).

The same rules, in the same structure and with the same method names, as
``tcmerge.merge.rules.PgRules``: inputs are numbered 0 (the target's rows, read in
place) and 1..n (the sources, staged); ``rooms_owners`` finds each room's owner;
``analyse`` fills small work tables (owners, duplicate flags, the id map) and
returns exact counts and findings; ``apply`` inserts from staging through them
and repairs the counters.

What differs, and why:

* Work tables. PostgreSQL creates them as TEMP tables inside the transaction;
  Oracle's CREATE TABLE commits, so every work table is created empty *before* the
  merge transaction (``prepare_statements``: ``CREATE TABLE w AS SELECT * FROM
  (<query>) WHERE 1 = 0``, the very query that fills it) and filled inside it with
  ``INSERT INTO w <query>``. Work queries therefore take no bind variables (DDL
  cannot, ORA-01027): they hold identifiers and constants of the code only.
* Row equality ("equal in every column but msg_id"). PostgreSQL hashes the row's
  text. Oracle cannot hash or group a CLOB, so each row gets a prefilter hash ``h``
  (STANDARD_HASH of the per-column MD5s; a CLOB contributes its length and the MD5
  of its first 1000 characters) and candidate pairs with equal ``h`` are confirmed
  exactly: ``DECODE(a, b, 1, 0) = 1`` per column (NULL equals NULL) and
  ``DBMS_LOB.COMPARE(a, b) = 0`` per CLOB. A hash collision costs a comparison,
  never a wrong answer. A row is a duplicate when an *earlier* input holds an equal
  row (``e.inp < x.inp``), so duplicates are judged across inputs, never within one.
* Rows without a key (tc_timelog, jm, aft_log) are pointed at by ROWID (PostgreSQL
  numbers them in staging).
* No booleans in Oracle SQL before 23ai: flags are NUMBER 0/1; ``GREATEST`` with a
  NULL is NULL in Oracle, so a room without messages keeps its counter by NVL.
* Inserts inside the transaction are conventional: a direct-path insert would forbid
  reading the table again in the same transaction (ORA-12838), and verification does.

Compiled and unit-tested offline (tests/unit/test_merge_oracle_rules.py); run by
``tcmerge.merge.oracle_engine`` on a live server (the Testcontainers test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import sqlalchemy as sa

from tcmerge.merge.oracle import (
    create_empty_like,
    drop_table,
    insert_query,
    quote,
    staging_table_name,
    work_table_name,
)
from tcmerge.merge.plan import TableCounts
from tcmerge.merge.rules import Analysis, RuleSet
from tcmerge.results import Finding, error, info, warning
from tcmerge.schema import tc

SAMPLE = 10

#: room column of the tables that make an input a room's holder (``transport.HOLDING_TABLES``)
ROOM_COLUMN = {"tc_rooms": "room_jid", "tc_msgarchive": "to_jid", "tc_messages": "room_jid",
               "tc_users": "room_jid"}
#: (count, hash sum) of a set of (room_jid, real_jid) pairs: comparable between sessions
PAIR_HASH = ("TO_CHAR(NVL(SUM(ORA_HASH(room_jid, 4294967295, 1) * 4294967296 "
             "+ ORA_HASH(real_jid, 4294967295, 2)), 0))")
#: the work tables the analysis fills, in the order it fills them; ``ids`` is filled by
#: ``apply`` (after the messages are inserted)
ANALYSIS_ORDER = ("room", "rooms", "users_all", "users", "arch_h", "arch", "msg_h", "msg",
                  "idmap", "timelog_h", "timelog", "jm_h", "jm", "aft_h", "aft")


class Executes(Protocol):
    """What the rules need of a connection (``sa.Connection`` fits)."""

    def execute(self, statement: Any, parameters: Any = None) -> Any: ...


def qc(column: sa.Column[Any]) -> str:
    """A model column's name as Oracle needs it (``"start"``, ``"end"`` quoted)."""
    return quote(column.name)


def is_lob(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.Text)


def _cols(table: sa.Table, alias: str | None = None, skip: tuple[str, ...] = ()) -> str:
    pre = f"{alias}." if alias else ""
    return ", ".join(pre + qc(c) for c in table.columns if c.name not in skip)


def row_hash(table: sa.Table, exclude: tuple[str, ...], alias: str) -> str:
    """The prefilter hash of a row over every column but ``exclude`` (RAW(16))."""
    parts = []
    for c in table.columns:
        if c.name in exclude:
            continue
        ref = f"{alias}.{qc(c)}"
        if is_lob(c):
            parts.append(
                f"CASE WHEN {ref} IS NULL THEN '-' WHEN DBMS_LOB.GETLENGTH({ref}) = 0 "
                f"THEN '0' ELSE DBMS_LOB.GETLENGTH({ref}) || ':' || RAWTOHEX(STANDARD_HASH("
                f"DBMS_LOB.SUBSTR({ref}, 1000, 1), 'MD5')) END")
        else:
            parts.append(f"CASE WHEN {ref} IS NULL THEN '-' "
                         f"ELSE RAWTOHEX(STANDARD_HASH({ref}, 'MD5')) END")
    return "STANDARD_HASH(" + " || '|' || ".join(parts) + ", 'MD5')"


def same_row(table: sa.Table, a: str, b: str, *, exclude: tuple[str, ...] = (),
             only: tuple[str, ...] | None = None) -> str:
    """Exact equality of two rows (NULL equals NULL; CLOBs by DBMS_LOB.COMPARE)."""
    parts = []
    for c in table.columns:
        if c.name in exclude or (only is not None and c.name not in only):
            continue
        x, y = f"{a}.{qc(c)}", f"{b}.{qc(c)}"
        if is_lob(c):
            parts.append(f"(({x} IS NULL AND {y} IS NULL) OR DBMS_LOB.COMPARE({x}, {y}) = 0)")
        else:
            parts.append(f"DECODE({x}, {y}, 1, 0) = 1")
    return "(" + " AND ".join(parts or ["1 = 1"]) + ")"


class OracleRules(RuleSet):
    """Analyse and apply the merge of staged sources into the target (one session)."""

    def __init__(self, conn: Executes | None, tables: tuple[sa.Table, ...], inputs: list[str],
                 token: str) -> None:
        self.conn = conn
        self.tables = {t.name: t for t in tables}
        self.inputs = inputs  # labels, target first
        self.token = token
        self.target_counts: dict[str, int] = {}
        self._queries = dict(self.work_queries())
        self._next_fill: Iterator[str] = iter([n for n in ANALYSIS_ORDER if n in self._queries])

    # -- names ----------------------------------------------------------------------------
    def s(self, table: str) -> str:
        return quote(staging_table_name(self.token, table))

    def w(self, work: str) -> str:
        return quote(work_table_name(self.token, work))

    def _all_rows(self, table: sa.Table, rid: bool = False) -> str:
        """Every input's rows: the target's as input 0, then the staged sources."""
        extra = (", t.ROWID AS rid", ", s.ROWID AS rid") if rid else ("", "")
        return (f"SELECT 0 AS inp{extra[0]}, {_cols(table, 't')} FROM {quote(table.name)} t "
                f"UNION ALL SELECT s.inp{extra[1]}, {_cols(table, 's')} "
                f"FROM {self.s(table.name)} s")

    def _dup_set(self, table: sa.Table, hashed: str, key: tuple[str, ...],
                 exclude: tuple[str, ...], room: str | None = None) -> str:
        """(inp, key...) of rows equal to a row of an earlier input: hash candidates,
        confirmed column by column against the rows themselves."""
        all_rows = self._all_rows(table, rid=key == ("rid",))
        room_eq = "e.room_jid = x.room_jid AND " if room else ""
        xk = " AND ".join(f"xr.{room if k == 'room_jid' and room else k} = x.{k}" for k in key)
        ek = " AND ".join(f"er.{room if k == 'room_jid' and room else k} = e.{k}" for k in key)
        return (f"SELECT DISTINCT x.inp, {', '.join('x.' + k for k in key)} FROM {hashed} x "
                f"JOIN {hashed} e ON {room_eq}e.h = x.h AND e.inp < x.inp "
                f"JOIN ({all_rows}) xr ON xr.inp = x.inp AND {xk} "
                f"JOIN ({all_rows}) er ON er.inp = e.inp AND {ek} "
                f"WHERE {same_row(table, 'xr', 'er', exclude=exclude)}")

    # -- the work tables, as queries --------------------------------------------------------
    def work_queries(self) -> list[tuple[str, str]]:
        """(work table, query) for every work table, in the order they are filled."""
        out: list[tuple[str, str]] = []
        t = self.tables
        room_parts = [(n, c) for n, c in ROOM_COLUMN.items() if n in t]
        if room_parts:
            target = " UNION ".join(f"SELECT 0 AS inp, {quote(c)} AS room_jid FROM {quote(n)}"
                                    for n, c in room_parts)
            staged = " UNION ".join(f"SELECT inp, {quote(c)} AS room_jid FROM {self.s(n)}"
                                    for n, c in room_parts)
            out.append(("room", "SELECT room_jid, MIN(inp) AS owner, COUNT(DISTINCT inp) "
                                f"AS nholders FROM ({target} UNION {staged}) h "
                                "GROUP BY room_jid"))
        if "tc_rooms" in t:
            r = tc.tc_rooms
            conflict = same_row(r, "s", "w", only=("creator_jid", "type"))
            diverged = same_row(r, "s", "w", only=("subject", "config", "spacket"))
            out.append(("rooms", (
                f"WITH a AS ({self._all_rows(r)}), "
                "n AS (SELECT a.*, ROW_NUMBER() OVER (PARTITION BY a.room_jid ORDER BY a.inp) "
                "AS rn FROM a) "
                "SELECT s.inp, s.room_jid, w.inp AS winner, "
                f"CASE WHEN {conflict} THEN 0 ELSE 1 END AS conflict, "
                f"CASE WHEN {diverged} THEN 0 ELSE 1 END AS diverged "
                "FROM n s JOIN n w ON w.room_jid = s.room_jid AND w.rn = 1 WHERE s.inp > 0")))
        if "tc_users" in t:
            u = tc.tc_users
            out.append(("users_all", (
                "SELECT a.*, ROW_NUMBER() OVER (PARTITION BY a.room_jid, a.real_jid ORDER BY "
                "CASE WHEN a.inp = 0 THEN 0 ELSE 1 END, "
                "CASE WHEN a.affiliation = 'outcast' THEN 0 ELSE 1 END, a.inp) AS rn "
                f"FROM ({self._all_rows(u)}) a")))
            same = same_row(u, "k", "w", exclude=("room_jid", "real_jid"))
            out.append(("users", (
                "SELECT k.inp, k.room_jid, k.real_jid, k.affiliation, w.inp AS winner, "
                f"w.affiliation AS waff, CASE WHEN {same} THEN 1 ELSE 0 END AS same "
                f"FROM {self.w('users_all')} k JOIN {self.w('users_all')} w "
                "ON w.room_jid = k.room_jid AND w.real_jid = k.real_jid AND w.rn = 1 "
                "WHERE k.inp > 0")))
        out += self._message_queries()
        for name in ("tc_timelog", "jm"):
            if name in t:
                out += self._union_queries(name)
        if "aft_log" in t:
            out += self._aft_queries()
        return out

    def _message_queries(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        empty = ("(SELECT CAST(NULL AS NUMBER(5)) AS inp, CAST(NULL AS VARCHAR2(3071)) "
                 "AS room_jid, CAST(NULL AS NUMBER(19)) AS msg_id, CAST(NULL AS TIMESTAMP) AS d, "
                 "CAST(NULL AS NUMBER(5)) AS owner, 0 AS dup FROM dual WHERE 1 = 0)")
        works = {}
        for name, work, room, date in (("tc_msgarchive", "arch", "to_jid", "sent_date"),
                                       ("tc_messages", "msg", "room_jid", "stamp")):
            if name not in self.tables:
                works[work] = empty
                continue
            table = self.tables[name]
            out.append((f"{work}_h", (
                f"SELECT x.inp, x.{quote(room)} AS room_jid, x.msg_id, x.{quote(date)} AS d, "
                f"r.owner, {row_hash(table, ('msg_id',), 'x')} AS h "
                f"FROM ({self._all_rows(table)}) x JOIN {self.w('room')} r "
                f"ON r.room_jid = x.{quote(room)} AND r.nholders > 1")))
            dups = self._dup_set(table, self.w(f"{work}_h"), ("room_jid", "msg_id"),
                                 ("msg_id",), room=quote(room))
            own = "CASE WHEN dd.msg_id IS NULL THEN 0 ELSE 1 END"
            follow = ""
            if work == "msg" and "tc_msgarchive" in self.tables:
                # Rule 3 (as rules.PgRules): a recent message follows its archive row (same
                # input, room and old id): kept and renumbered together, or dropped together
                # as a duplicate; only one without an archive row is judged on its own
                own = f"CASE WHEN ar.msg_id IS NOT NULL THEN ar.dup ELSE {own} END"
                follow = (f" LEFT JOIN {self.w('arch')} ar ON ar.inp = a.inp "
                          "AND ar.room_jid = a.room_jid AND ar.msg_id = a.msg_id")
            out.append((work, (
                f"SELECT a.inp, a.room_jid, a.msg_id, a.d, a.owner, {own} AS dup "
                f"FROM {self.w(f'{work}_h')} a LEFT JOIN ({dups}) dd ON dd.inp = a.inp "
                f"AND dd.room_jid = a.room_jid AND dd.msg_id = a.msg_id{follow}")))
            works[work] = self.w(work)
        if "tc_msgarchive" not in self.tables and "tc_messages" not in self.tables:
            return out
        out.append(("idmap", (
            f"WITH a AS (SELECT * FROM {works['arch']} WHERE inp > owner AND dup = 0), "
            f"m AS (SELECT * FROM {works['msg']} WHERE inp > owner AND dup = 0), "
            "need AS (SELECT NVL(a.room_jid, m.room_jid) AS room_jid, NVL(a.inp, m.inp) AS inp, "
            "NVL(a.msg_id, m.msg_id) AS old_id, NVL(a.d, m.d) AS d, "
            "CASE WHEN a.room_jid IS NOT NULL THEN 1 ELSE 0 END AS arch_keep, "
            "CASE WHEN m.room_jid IS NOT NULL THEN 1 ELSE 0 END AS msg_keep FROM a FULL JOIN m "
            "ON m.room_jid = a.room_jid AND m.inp = a.inp AND m.msg_id = a.msg_id), "
            "tops AS (SELECT room_jid, MAX(msg_id) AS top FROM (SELECT room_jid, msg_id "
            f"FROM {works['arch']} WHERE inp = owner UNION ALL SELECT room_jid, msg_id "
            f"FROM {works['msg']} WHERE inp = owner) o GROUP BY room_jid) "
            "SELECT n.room_jid, n.inp, n.old_id, n.arch_keep, n.msg_keep, "
            "NVL(t.top, 0) + ROW_NUMBER() OVER (PARTITION BY n.room_jid "
            "ORDER BY n.d, n.inp, n.old_id) AS new_id "
            "FROM need n LEFT JOIN tops t ON t.room_jid = n.room_jid")))
        return out

    def _union_queries(self, name: str) -> list[tuple[str, str]]:
        table = self.tables[name]
        work = name.removeprefix("tc_")
        hashed = self.w(f"{work}_h")
        dups = self._dup_set(table, hashed, ("rid",), ())
        return [
            (f"{work}_h", f"SELECT a.inp, a.rid, {row_hash(table, (), 'a')} AS h "
                          f"FROM ({self._all_rows(table, rid=True)}) a"),
            (work, f"SELECT a.inp, a.rid FROM {hashed} a LEFT JOIN ({dups}) dd "
                   "ON dd.inp = a.inp AND dd.rid = a.rid WHERE a.inp > 0 AND dd.rid IS NULL"),
        ]

    def _aft_queries(self) -> list[tuple[str, str]]:
        table = tc.aft_log
        hashed = self.w("aft_h")
        dups = self._dup_set(table, hashed, ("rid",), ("aft_index",))
        return [
            ("aft_h", "SELECT a.inp, a.rid, a.aft_index, a.timestampvalue AS ts, "
                      f"{row_hash(table, ('aft_index',), 'a')} AS h "
                      f"FROM ({self._all_rows(table, rid=True)}) a"),
            ("aft", (
                f"WITH k AS (SELECT a.* FROM {hashed} a LEFT JOIN ({dups}) dd "
                "ON dd.inp = a.inp AND dd.rid = a.rid WHERE dd.rid IS NULL), "
                "c AS (SELECT k.inp, k.rid, k.aft_index, k.ts, CASE WHEN k.inp > MIN(k.inp) "
                "OVER (PARTITION BY k.aft_index) THEN 1 ELSE 0 END AS collides FROM k), "
                "tops AS (SELECT NVL(MAX(aft_index), 0) AS top FROM c) "
                "SELECT c.inp, c.rid, c.collides, CASE WHEN c.collides = 1 THEN tops.top "
                "+ ROW_NUMBER() OVER (PARTITION BY c.collides ORDER BY c.ts, c.inp, "
                "c.aft_index) ELSE c.aft_index END AS new_index "
                "FROM c CROSS JOIN tops WHERE c.inp > 0")),
        ]

    def ids_query(self) -> str | None:
        """Per room the lowest and highest msg_id in the target after the inserts."""
        parts = []
        if "tc_msgarchive" in self.tables:
            parts.append("SELECT to_jid AS room_jid, msg_id FROM tc_msgarchive")
        if "tc_messages" in self.tables:
            parts.append("SELECT room_jid, msg_id FROM tc_messages")
        if not parts or "tc_rooms" not in self.tables:
            return None
        return ("SELECT room_jid, MIN(msg_id) AS lo, MAX(msg_id) AS hi "
                f"FROM ({' UNION ALL '.join(parts)}) x GROUP BY room_jid")

    # -- statements outside the transaction ------------------------------------------------
    def prepare_statements(self) -> list[sa.TextClause]:
        """The empty work tables (DDL: before the merge transaction)."""
        out = [create_empty_like(work_table_name(self.token, name), query)
               for name, query in self.work_queries()]
        ids = self.ids_query()
        if ids is not None:
            out.append(create_empty_like(work_table_name(self.token, "ids"), ids))
        return out

    def work_names(self) -> list[str]:
        names = [work_table_name(self.token, n) for n, _ in self.work_queries()]
        if self.ids_query() is not None:
            names.append(work_table_name(self.token, "ids"))
        return names

    def drop_statements(self) -> list[sa.TextClause]:
        """Drop the work tables (after the transaction, also after a failure)."""
        return [drop_table(n) for n in self.work_names()]

    # -- statements inside the transaction -------------------------------------------------
    def fill_statement(self, work: str) -> sa.TextClause:
        return insert_query(work_table_name(self.token, work), self._queries[work])

    def apply_statements(self) -> list[tuple[str, sa.TextClause]]:
        """(table, statement) in the order ``apply`` runs them."""
        out: list[tuple[str, sa.TextClause]] = []
        t = self.tables
        for name, room in (("tc_msgarchive", "to_jid"), ("tc_messages", "room_jid")):
            if name not in t:
                continue
            table = t[name]
            keep = "arch_keep" if name == "tc_msgarchive" else "msg_keep"
            out.append((name, sa.text(
                f"INSERT INTO {quote(name)} ({_cols(table)}) SELECT NVL(m.new_id, s.msg_id), "
                f"{_cols(table, 's', ('msg_id',))} FROM {self.s(name)} s "
                f"JOIN {self.w('room')} r ON r.room_jid = s.{quote(room)} "
                f"LEFT JOIN {self.w('idmap')} m ON m.room_jid = s.{quote(room)} "
                f"AND m.inp = s.inp AND m.old_id = s.msg_id WHERE s.inp = r.owner "
                f"OR m.{keep} = 1")))
        if "tc_users" in t:
            u = t["tc_users"]
            out.append(("tc_users", sa.text(
                f"INSERT INTO tc_users ({_cols(u)}) SELECT {_cols(u, 's')} "
                f"FROM {self.s('tc_users')} s JOIN {self.w('users')} w ON w.inp = s.inp "
                "AND w.room_jid = s.room_jid AND w.real_jid = s.real_jid "
                "WHERE w.winner = s.inp")))
        for name in ("tc_timelog", "jm"):
            if name in t:
                table = t[name]
                out.append((name, sa.text(
                    f"INSERT INTO {quote(name)} ({_cols(table)}) SELECT {_cols(table, 's')} "
                    f"FROM {self.s(name)} s JOIN {self.w(name.removeprefix('tc_'))} w "
                    "ON w.rid = s.ROWID")))
        if "aft_log" in t:
            table = t["aft_log"]
            out.append(("aft_log", sa.text(
                f"INSERT INTO aft_log ({_cols(table)}) SELECT w.new_index, "
                f"{_cols(table, 's', ('aft_index',))} FROM {self.s('aft_log')} s "
                f"JOIN {self.w('aft')} w ON w.rid = s.ROWID")))
        ids = self.ids_query()
        if ids is not None:
            out.append(("ids", insert_query(work_table_name(self.token, "ids"), ids)))
        if "tc_rooms" in t:
            r = t["tc_rooms"]
            plain = ("start_msg_id", "next_msg_id")
            left = "LEFT JOIN {} i ON i.room_jid = s.room_jid".format(self.w("ids")) if ids \
                else "LEFT JOIN (SELECT NULL AS room_jid, NULL AS lo, NULL AS hi FROM dual " \
                     "WHERE 1 = 0) i ON i.room_jid = s.room_jid"
            out.append(("tc_rooms", sa.text(
                f"INSERT INTO tc_rooms ({_cols(r, skip=plain)}, start_msg_id, next_msg_id) "
                f"SELECT {_cols(r, 's', plain)}, NVL(i.lo, s.start_msg_id), "
                "GREATEST(s.next_msg_id, NVL(i.hi + 1, s.next_msg_id)) "
                f"FROM {self.s('tc_rooms')} s JOIN {self.w('rooms')} w ON w.inp = s.inp "
                f"AND w.room_jid = s.room_jid AND w.winner = s.inp {left}")))
            if ids:
                out.append(("tc_rooms:counters", sa.text(
                    f"MERGE INTO tc_rooms t USING (SELECT i.room_jid, i.lo, i.hi "
                    f"FROM {self.w('ids')} i JOIN {self.w('room')} o "
                    "ON o.room_jid = i.room_jid WHERE o.owner = 0) i "
                    "ON (t.room_jid = i.room_jid) WHEN MATCHED THEN UPDATE SET "
                    # rule 4, touching only what is wrong (as rules.PgRules): next_msg_id
                    # above every id; start_msg_id lowered to the lowest id kept, never raised
                    "t.start_msg_id = LEAST(t.start_msg_id, i.lo), "
                    "t.next_msg_id = GREATEST(t.next_msg_id, i.hi + 1) "
                    "WHERE t.start_msg_id > i.lo OR t.next_msg_id <= i.hi")))
        return out

    # -- helpers ---------------------------------------------------------------------------
    def _c(self) -> Executes:
        assert self.conn is not None, "these rules were built for compiling only"
        return self.conn

    def _x(self, statement: sa.TextClause) -> int:
        return int(self._c().execute(statement).rowcount)

    def _rows(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._c().execute(sa.text(query), params).all()]

    def _one(self, query: str) -> Any:
        return self._rows(query)[0][0]

    def _fill(self, work: str) -> None:
        expected = next(self._next_fill, None)
        if expected != work:  # the order the offline script shows is the order run
            raise AssertionError(f"work table {work} filled out of order (expected {expected})")
        self._x(self.fill_statement(work))

    def _by_input(self, query: str) -> dict[int, int]:
        return {int(i): int(n) for i, n in self._rows(query)}

    def count_target(self) -> None:
        """The target's own rows per table (input 0), before anything is written."""
        for name in self.tables:
            self.target_counts[name] = int(self._one(f"SELECT COUNT(*) FROM {quote(name)}"))

    def _read(self, table: str) -> list[int]:
        per = self._by_input(f"SELECT inp, COUNT(*) FROM {self.s(table)} GROUP BY inp")
        target = self.target_counts.get(table)
        if target is None:
            target = int(self._one(f"SELECT COUNT(*) FROM {quote(table)}"))
        return [target] + [per.get(i, 0) for i in range(1, len(self.inputs))]

    def _samples(self, work: str, cond: str, keys: tuple[str, ...]
                 ) -> dict[int, tuple[int, list[str]]]:
        """``inp -> (count, first keys)``; keys are joined in Python (a JID is up to 3071
        bytes: concatenating two in SQL could pass VARCHAR2's 4000)."""
        order = ", ".join(keys)
        rows = self._rows(
            f"SELECT inp, n, {order} FROM (SELECT inp, {order}, COUNT(*) OVER "
            f"(PARTITION BY inp) AS n, ROW_NUMBER() OVER (PARTITION BY inp ORDER BY {order}) "
            f"AS rn FROM {self.w(work)} WHERE {cond}) WHERE rn <= :sample ORDER BY inp, rn",
            sample=SAMPLE)
        out: dict[int, tuple[int, list[str]]] = {}
        for row in rows:
            n, found = out.get(int(row[0]), (int(row[1]), []))
            found.append(" ".join(str(v) for v in row[2:]))
            out[int(row[0])] = (n, found)
        return out

    # -- analysis --------------------------------------------------------------------------
    def rooms_owners(self) -> None:
        """The room work table: per room its owner (first input holding it) and holders."""
        if "room" in self._queries:
            self._fill("room")

    def _persistent_rooms_after(self) -> int:
        return int(self._one(
            "SELECT (SELECT COUNT(*) FROM tc_rooms WHERE type = 'persistent') "
            f"+ (SELECT COUNT(*) FROM {self.w('rooms')} w JOIN {self.s('tc_rooms')} s "
            "ON s.inp = w.inp AND s.room_jid = w.room_jid "
            "WHERE w.inp = w.winner AND s.type = 'persistent') FROM dual"))

    def _analyse_rooms(self, findings: list[Finding]) -> TableCounts:
        self._fill("rooms")
        read = self._read("tc_rooms")
        inserted, dups, conflicts = (int(x) for x in self._rows(
            "SELECT NVL(SUM(CASE WHEN inp = winner THEN 1 ELSE 0 END), 0), "
            "NVL(SUM(CASE WHEN inp <> winner AND conflict = 0 AND diverged = 0 THEN 1 ELSE 0 "
            "END), 0), NVL(SUM(CASE WHEN inp <> winner AND (conflict = 1 OR diverged = 1) "
            f"THEN 1 ELSE 0 END), 0) FROM {self.w('rooms')}")[0])
        for code, make, cond, text in (
            ("ROOM_CONFLICT", error, "conflict = 1",
             "room(s) exist in an earlier input with a different creator_jid or type"),
            ("ROOM_DIVERGED", warning, "diverged = 1 AND conflict = 0",
             "room(s) differ from the owner's row in subject, config or spacket; the "
             "owner's row wins"),
        ):
            per = self._samples("rooms", f"inp <> winner AND {cond}", ("room_jid",))
            for inp, (n, rooms) in sorted(per.items()):
                findings.append(make(
                    code, f"{n} {text}: {', '.join(rooms[:3])}" + (" ..." if n > 3 else ""),
                    database=self.inputs[inp], table="tc_rooms", count=n,
                    details={"rooms": rooms},
                    hint=("rooms with the same JID but a different creator or type are "
                          "different rooms; rename or remove one before merging")
                    if code == "ROOM_CONFLICT" else None))
        return TableCounts("tc_rooms", read, inserted=inserted, duplicates=dups,
                           conflicts=conflicts)

    def _analyse_users(self, result: Analysis) -> TableCounts:
        self._fill("users_all")
        self._fill("users")
        read = self._read("tc_users")
        w = self.w("users")
        inserted, dups, conflicts = (int(x) for x in self._rows(
            "SELECT NVL(SUM(CASE WHEN inp = winner THEN 1 ELSE 0 END), 0), "
            "NVL(SUM(CASE WHEN inp <> winner AND same = 1 THEN 1 ELSE 0 END), 0), "
            f"NVL(SUM(CASE WHEN inp <> winner AND same = 0 THEN 1 ELSE 0 END), 0) FROM {w}")[0])
        keys = ("room_jid", "real_jid")
        for inp, (n, found) in sorted(self._samples("users", "inp <> winner AND same = 0",
                                                    keys).items()):
            result.findings.append(warning(
                "AFFILIATION_CONFLICT",
                f"{n} member row(s) differ from the row kept (the owner's, or a ban): "
                + ", ".join(found[:3]) + (" ..." if n > 3 else ""),
                database=self.inputs[inp], table="tc_users", count=n,
                details={"members": found}))
        bans = self._samples("users", "affiliation = 'outcast' AND winner = 0 "
                                      "AND waff <> 'outcast'", keys)
        for inp, (n, found) in sorted(bans.items()):
            result.bans_not_applied += n
            result.findings.append(warning(
                "BAN_NOT_APPLIED",
                f"{n} ban(s) cannot be applied without altering the target's member row, "
                "which a merge never does: " + ", ".join(found[:3]) + (" ..." if n > 3 else ""),
                database=self.inputs[inp], table="tc_users", count=n,
                details={"members": found},
                hint="apply these bans on the target by hand after the merge if wanted"))
        row = self._rows(
            f"SELECT COUNT(*), {PAIR_HASH} FROM (SELECT DISTINCT room_jid, real_jid "
            f"FROM {self.w('users_all')} WHERE affiliation = 'outcast' MINUS "
            f"SELECT room_jid, real_jid FROM {w} WHERE winner = 0 AND waff <> 'outcast')")[0]
        result.bans_expected = f"{row[0]}:{row[1]}"
        return TableCounts("tc_users", read, inserted=inserted, duplicates=dups,
                           conflicts=conflicts)

    def _analyse_messages(self, counts: dict[str, TableCounts], findings: list[Finding]) -> None:
        for name, work in (("tc_msgarchive", "arch"), ("tc_messages", "msg")):
            if name in self.tables:
                self._fill(f"{work}_h")
                self._fill(work)
        if "idmap" in self._queries:
            self._fill("idmap")
        for name, work, keep in (("tc_msgarchive", "arch", "arch_keep"),
                                 ("tc_messages", "msg", "msg_keep")):
            if name not in self.tables:
                continue
            read = self._read(name)
            dups = self._by_input(f"SELECT inp, COUNT(*) FROM {self.w(work)} WHERE dup = 1 "
                                  "GROUP BY inp")
            ren = self._by_input(f"SELECT inp, COUNT(*) FROM {self.w('idmap')} "
                                 f"WHERE {keep} = 1 GROUP BY inp")
            c = TableCounts(name, read, duplicates=sum(dups.values()),
                            renumbered=sum(ren.values()))
            c.inserted = c.source_rows - c.duplicates
            counts[name] = c
            for inp, n in sorted(ren.items()):
                findings.append(info(
                    "MSG_ID_COLLISION",
                    f"{n} row(s) of rooms also held by an earlier input get new msg_ids above "
                    "the room's highest id", database=self.inputs[inp], table=name, count=n))

    def _analyse_union(self, name: str) -> TableCounts:
        work = name.removeprefix("tc_")
        self._fill(f"{work}_h")
        self._fill(work)
        read = self._read(name)
        inserted = int(self._one(f"SELECT COUNT(*) FROM {self.w(work)}"))
        return TableCounts(name, read, inserted=inserted, duplicates=sum(read[1:]) - inserted)

    def _analyse_aft(self, findings: list[Finding]) -> TableCounts:
        self._fill("aft_h")
        self._fill("aft")
        read = self._read("aft_log")
        inserted, ren = (int(x) for x in self._rows(
            "SELECT COUNT(*), NVL(SUM(collides), 0) FROM " + self.w("aft"))[0])
        if ren:
            findings.append(info("AFT_INDEX_COLLISION",
                                 f"{ren} aft_log row(s) get a new aft_index (theirs is taken)",
                                 table="aft_log", count=ren))
        return TableCounts("aft_log", read, inserted=inserted,
                           duplicates=sum(read[1:]) - inserted, renumbered=ren)

    # -- apply -----------------------------------------------------------------------------
    def apply(self, counts: dict[str, TableCounts]) -> dict[str, int]:
        """Insert every kept row; repair the counters. Returns rows written per table."""
        written: dict[str, int] = {}
        for name, statement in self.apply_statements():
            n = self._x(statement)
            if name == "tc_rooms:counters":
                counts["tc_rooms"].updated = n
            elif name != "ids":
                written[name] = n
        return written
