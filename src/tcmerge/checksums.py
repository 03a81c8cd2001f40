"""Digests of table contents, computed inside the server: did anything change?

``table_checksums`` gives, per table, ``"<row count>:<digest>"``; the digest does
not depend on the physical order of rows, so two databases holding the same
rows agree. Validation uses it to prove it changed nothing; the merge engine to
prove sources are untouched. Rows never travel to Python.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from tcmerge.dialects import adapter_for

MISSING = "missing"


def table_checksums(conn: sa.Connection, tables: Iterable[sa.Table]) -> dict[str, str]:
    """``{table name: "count:digest"}``; a table absent from the database gives ``"missing"``."""
    adapter = adapter_for(conn.dialect.name)
    present = {name.lower() for name in sa.inspect(conn).get_table_names()}
    result: dict[str, str] = {}
    for table in tables:
        if table.name.lower() not in present:
            result[table.name] = MISSING
            continue
        count, digest = conn.execute(adapter.checksum_statement(table)).one()
        result[table.name] = f"{int(count)}:{digest}"
    return result
