"""A message table's indexes set aside while its rows are loaded, rebuilt afterwards.

Rows copied into a table whose btree indexes are kept up to date cost about 2.5 µs
more each (an insert at a random leaf of every index) than building the indexes
afterwards with one sort (about 1.1 µs per row of the whole table; measured at
2,000,000 archive rows). So when the rows coming in cost more that way than a build
over the table they make (``worth_setting_aside``: up to about 1.27 rows held per row
coming in; a million archive rows merged into a million, measured: 3.4 s set aside
against 4.1 s kept), the merge drops its indexes (and their primary-key or unique
constraints) in the merge transaction and creates them again, by the same definitions
and names, once every row is in and before verification. A rollback brings the old
ones back.

Only indexes that come back exactly are set aside: not when another object depends
on one (a foreign key, a view grouping by the key), nor for a clustered,
replica-identity, commented, exclusion or deferrable one, one outside the default
tablespace, one with a per-column statistics target, nor on a partitioned or
inherited table. The table is then loaded with its indexes (slower, same result).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from tcmerge.merge.pg import PgConn

#: µs per row: kept indexes' extra cost of a row coming in, and a build's per row of the table
KEPT_PER_ROW_IN, BUILD_PER_ROW = 2.5, 1.1


def worth_setting_aside(held: int, incoming: int) -> bool:
    """Whether ``incoming`` rows (the sources' planner estimates, 0 when never analysed,
    less the rows of settled rooms) load faster into a table of ``held`` rows with its
    indexes dropped and built again afterwards than with them kept. An empty table's
    indexes cost nothing to build."""
    return held == 0 or BUILD_PER_ROW * (held + incoming) < KEPT_PER_ROW_IN * incoming


#: maintenance_work_mem of the rebuild (when the server's is lower): enough to sort the
#: keys of a few million rows in memory
MAINTENANCE_WORK_MEM = "256MB"

_INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid), c.contype,
       ic.reltablespace <> 0 OR i.indisclustered OR i.indisreplident OR NOT i.indisvalid
       OR NOT i.indisready OR NOT i.indislive OR ic.relkind <> 'i'
       OR coalesce(c.contype NOT IN ('p', 'u') OR c.condeferrable, false)
       OR obj_description(i.indexrelid, 'pg_class') IS NOT NULL
       OR (c.oid IS NOT NULL AND obj_description(c.oid, 'pg_constraint') IS NOT NULL)
       OR EXISTS (SELECT 1 FROM pg_attribute AS a
                  WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
       OR EXISTS (SELECT 1 FROM pg_depend AS d
                  WHERE (d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
                     OR (d.refclassid = 'pg_constraint'::regclass AND d.refobjid = c.oid
                         AND NOT (d.classid = 'pg_class'::regclass
                                  AND d.objid = i.indexrelid)))
       AS kept
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
LEFT JOIN pg_constraint AS c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
     AND c.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %(t)s::regclass
ORDER BY ic.relname
"""

_TABLE_KEPT = """
SELECT t.relkind <> 'r'
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = t.oid OR inhparent = t.oid)
FROM pg_class AS t WHERE t.oid = %(t)s::regclass
"""


@dataclass(frozen=True)
class TableIndex:
    name: str
    #: pg_get_indexdef: CREATE [UNIQUE] INDEX name ON table USING ... (... ) [WITH ...]
    definition: str
    #: "p" primary key, "u" unique constraint, None a plain index
    constraint: str | None


@dataclass(frozen=True)
class SetAside:
    """What ``set_aside`` dropped from ``table``, for ``rebuild``."""

    table: str
    indexes: tuple[TableIndex, ...]


def set_aside(conn: PgConn, table: str) -> SetAside | None:
    """Drop ``table``'s indexes if every one can be made again exactly; None otherwise.

    Needs the table's ACCESS EXCLUSIVE lock: when another session holds any lock on it
    the indexes stay (no waiting). Runs in a savepoint of the caller's transaction."""
    regclass = sql.Identifier(table).as_string(conn)
    row = conn.execute(_TABLE_KEPT, {"t": regclass}).fetchone()
    if row is None or row[0]:
        return None
    found = conn.execute(_INDEXES, {"t": regclass}).fetchall()
    if not found or any(kept for *_, kept in found):
        return None
    indexes = tuple(TableIndex(str(name), str(definition), str(kind) if kind else None)
                    for name, definition, kind, _ in found)
    try:
        with conn.transaction():  # a savepoint: on failure the indexes stay, nothing else
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT").format(
                sql.Identifier(table)))
            for index in indexes:
                if index.constraint:
                    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        sql.Identifier(table), sql.Identifier(index.name)))
                else:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index.name)))
    except (psycopg.errors.LockNotAvailable, psycopg.errors.InsufficientPrivilege,
            psycopg.errors.DependentObjectsStillExist):
        # another session uses the table, the merge's user does not own it, or a
        # dependency the checks above do not know: load with the indexes in place
        return None
    return SetAside(table, indexes)


def rebuild(conn: PgConn, aside: SetAside) -> None:
    """Create the indexes ``set_aside`` dropped, under their names and constraints.

    A unique index that its rows now violate fails here, and the merge rolls back."""
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true) "
                 "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) "
                 "< pg_size_bytes(%s)", (MAINTENANCE_WORK_MEM, MAINTENANCE_WORK_MEM))
    for index in aside.indexes:
        # the server's own text, sent back in the session's encoding
        conn.execute(index.definition.encode(conn.info.encoding))
        if index.constraint:
            kind = "PRIMARY KEY" if index.constraint == "p" else "UNIQUE"
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                sql.Identifier(aside.table), sql.Identifier(index.name), sql.SQL(kind),
                sql.Identifier(index.name)))
