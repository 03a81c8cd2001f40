"""Order-independent table checksums computed inside the server (PostgreSQL).

A checksum is ``<row count>:<sum of a 64-bit hash of each row>``: equal for the
same multiset of rows whatever their physical order, computed in one scan
without sorting. Sessions use ISO DateStyle (see ``pg.SESSION_OPTIONS``)
so the row text is the same in every session.

The text method's statement is ``TABLE_DIGEST`` of ``dialects/postgresql/digests.py``
(validation uses it too).
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from tcmerge.dialects.postgresql.digests import RECORD_DIGEST, TABLE_DIGEST
from tcmerge.merge.pg import PgConn

#: Digest methods. ``text``: a hash of each row's text form (every PostgreSQL). ``record``
#: (PostgreSQL 14+): hash_record_extended, a hash of each column's value by its type's own
#: hash function, about twice as cheap (no text conversion). Only for tables whose columns
#: all have types whose hash tells every distinct text apart (so not numeric: 1.0 = 1.00;
#: char(n) values are stored padded)
#: and deterministic collations. A record digest is written ``<count>:r<sum>``, so a stored
#: value says how to recompute it.
TEXT, RECORD = "text", "record"
RECORD_TYPES = ("text", "varchar", "bpchar", "int2", "int4", "int8", "timestamp",
                "timestamptz", "date", "bool", "bytea")


def checksum_query(table: str, method: str = TEXT) -> sql.Composed:
    """One row: (count, digest as text) of ``table``."""
    if method == RECORD:
        return sql.SQL(RECORD_DIGEST).format(sql.Identifier(table))
    return sql.SQL(TABLE_DIGEST).format(sql.Identifier(table))


def checksums_query(methods: dict[str, str]) -> sql.Composed:
    """One statement, one row per table: (table, count, digest), as ``checksum_query``."""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::text, q.* FROM ({}) AS q").format(
            sql.Literal(t), checksum_query(t, m)) for t, m in methods.items())


def record_blockers_query(tables: Iterable[str]) -> sql.Composed:
    """PostgreSQL 14+: one row per listed table that cannot use the record method."""
    return sql.SQL(
        "SELECT DISTINCT c.relname::text FROM pg_class c JOIN pg_attribute a "
        "ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
        "WHERE c.oid = ANY(ARRAY[{}]) "
        "AND (a.atttypid <> ALL(ARRAY[{}]::regtype[]) "
        "OR NOT coalesce(co.collisdeterministic, true))"
    ).format(sql.SQL(", ").join(sql.SQL("to_regclass({})").format(
        sql.Literal(sql.Identifier(t).as_string(None))) for t in tables),
             sql.SQL(", ").join(sql.Literal(t) for t in RECORD_TYPES))


def choose_methods(version: int, tables: Iterable[str], blocked: Iterable[str]) -> dict[str, str]:
    """The method per table: record where the server and the columns allow it."""
    no = set(blocked)
    return {t: RECORD if version >= 140000 and t not in no else TEXT for t in tables}


def recorded_methods(values: dict[str, str]) -> dict[str, str]:
    """The methods that produced stored ``count:digest`` values."""
    return {t: RECORD if v.split(":", 1)[-1].startswith("r") else TEXT
            for t, v in values.items()}


def methods_for(conn: PgConn, tables: Iterable[str]) -> dict[str, str]:
    tables = list(tables)
    version = conn.info.server_version
    blocked = [str(r[0]) for r in conn.execute(record_blockers_query(tables)).fetchall()] \
        if version >= 140000 else []
    return choose_methods(version, tables, blocked)


def table_checksums(conn: PgConn, tables: Iterable[str],
                    methods: dict[str, str] | None = None) -> dict[str, str]:
    """``{table: "count:digest"}`` in the connection's current snapshot; ``methods`` (as
    ``recorded_methods`` gives) to recompute stored values, else the best available."""
    methods = methods if methods is not None else methods_for(conn, tables)
    result: dict[str, str] = {}
    for table, method in methods.items():
        row = conn.execute(checksum_query(table, method)).fetchone()
        assert row is not None
        result[table] = f"{row[0]}:{row[1]}"
    return result


# -- proof that a table did not change since a snapshot ------------------------------------
#
# A source is read in one REPEATABLE READ snapshot S1, where its checksums are taken. To
# prove after the merge that it still holds exactly those rows, a second full checksum
# pass is not needed. In a new snapshot S2 (taken later) let every visible row version
# have been created by a transaction that precedes S1's xmin (so it was complete, and
# committed, when S1 was taken), and let the row count equal S1's. Then each row visible
# in S2 was visible in S1 (had its deleter been visible to S1 it would be visible to the
# later S2 too), so S2's rows are a subset of S1's of the same size: the same rows. Row
# versions never change in place, so the contents are equal as well. A column added,
# dropped or retyped without a rewrite, or another table renamed into place, is caught
# by the table's identity and column list, compared too. When the proof does not hold
# (a row written since, or one written just before S1 while an older transaction was
# running) the caller falls back to the full checksum comparison: the proof can only
# save work, never hide a change.

def snapshot_xmin_query() -> sql.SQL:
    """S1's xmin as a 32-bit transaction id (text), in the current snapshot."""
    return sql.SQL("SELECT (txid_snapshot_xmin(txid_current_snapshot()) % 4294967296)::text")


def shape_query(table: str) -> sql.Composed:
    """One row, one text: the table's identity and its columns, in order."""
    return sql.SQL(
        "SELECT c.oid::text || ':' || (SELECT string_agg(a.attname || ' ' || "
        "format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) FROM pg_attribute a "
        "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) "
        "FROM pg_class c WHERE c.oid = to_regclass({})"
    ).format(sql.Literal(sql.Identifier(table).as_string(None)))


def unchanged_query(table: str, xmin: str) -> sql.Composed:
    """One row: (row count, rows whose creator does not precede ``xmin``, shape) as text."""
    if not xmin.isdigit():
        raise ValueError(f"not a transaction id: {xmin!r}")
    return sql.SQL(
        "SELECT count(*)::text, count(*) FILTER (WHERE age(t.xmin) <= age({}::xid))::text, "
        "({}) FROM {} AS t"
    ).format(sql.Literal(xmin), shape_query(table), sql.Identifier(table))


def proven_unchanged(before: dict[str, str], xmin: str, shapes: dict[str, str],
                     now: dict[str, tuple[str, ...]]) -> bool:
    """True when ``now`` (unchanged_query rows per table) proves every table unchanged."""
    for table, checksum in before.items():
        row = now.get(table)
        if row is None or not xmin.isdigit():
            return False
        count, newer, shape = row
        if count != checksum.split(":", 1)[0] or newer != "0" or shape != shapes.get(table):
            return False
    return True
