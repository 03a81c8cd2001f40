"""Order-independent table checksums computed inside the server (PostgreSQL).

A checksum is ``<row count>:<sum of a 64-bit hash of each row's text>``: equal
for the same multiset of rows whatever their physical order, computed in one
scan without sorting. Sessions use ISO DateStyle (see ``pg.SESSION_OPTIONS``)
so the row text is the same in every session.

Written here because ``tcmerge.checksums`` (validate issue) was not on main yet;
the integrator may point callers at that module instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from tcmerge.merge.pg import PgConn


def checksum_query(table: str) -> sql.Composed:
    """One row: (count, hash sum as text) of ``table``."""
    return sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text "
        "FROM {} AS t"
    ).format(sql.Identifier(table))


def table_checksums(conn: PgConn, tables: Iterable[str]) -> dict[str, str]:
    """``{table: "count:hashsum"}`` for each table, in the connection's current snapshot."""
    result: dict[str, str] = {}
    for table in tables:
        row = conn.execute(checksum_query(table)).fetchone()
        assert row is not None
        result[table] = f"{row[0]}:{row[1]}"
    return result
