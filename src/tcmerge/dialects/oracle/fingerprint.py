"""A fingerprint of everything in an Oracle schema that a merge must leave alone.

The Oracle counterpart of ``tcmerge.dialects.postgresql.fingerprint`` (same shape, same
``differences``), read from the schema's own dictionary views (``USER_*``: a merge works
in the target user's schema):

``tables``, ``views``, ``sequences``, ``indexes``, ``triggers``, ``functions`` (functions,
procedures, packages and their bodies), ``types``, ``others`` (synonyms, materialized
views, ...)
                every object of USER_OBJECTS by type, name, status and the time of its
                last DDL (LAST_DDL_TIME: CREATE OR REPLACE, ALTER, GRANT, REVOKE,
                ENABLE/DISABLE of a trigger all move it) and its specification's
                timestamp; tables also by their columns (USER_TAB_COLUMNS: type,
                length, precision, scale, nullability).
``grants``      USER_TAB_PRIVS_MADE: grantee, privilege, grantable per object.
``comments``    USER_TAB_COMMENTS and USER_COL_COMMENTS.
``sequence values`` LAST_NUMBER of every sequence.
``rows``        per table outside the merged ones (only where an enabled trigger on a
                merged table fires on the merge's writes): its row count and the sum of
                a hash of its rows' addresses (rows inserted or deleted show; a row
                updated in place does not).

Left out: the merged tables' rows, tcmerge's own objects (``TCM_``, ``TCMSNAP_``,
``TCMERGE_``), LOB segments and the system-named objects Oracle makes for them, and the
dropped objects of the recycle bin (``BIN$``).

Compiled and parsed offline (no Oracle server here); it runs on a live server in the
Testcontainers tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tcmerge.dialects.postgresql.fingerprint import assemble

VERSION = 1
KINDS = ("tables", "views", "sequences", "indexes", "triggers", "functions", "types",
         "others", "grants", "comments", "sequence values", "rows")
#: USER_OBJECTS.OBJECT_TYPE -> kind (types not listed are "others")
OBJECT_KINDS = {"TABLE": "tables", "VIEW": "views", "SEQUENCE": "sequences",
                "INDEX": "indexes", "TRIGGER": "triggers", "FUNCTION": "functions",
                "PROCEDURE": "functions", "PACKAGE": "functions", "PACKAGE BODY": "functions",
                "TYPE": "types", "TYPE BODY": "types"}
#: object types that come and go with a table's LOB columns, not with the site
SKIPPED_TYPES = ("LOB", "LOB PARTITION", "LOB SUBPARTITION")
#: tcmerge's own objects and the recycle bin, as LIKE patterns with ``\\`` as the escape
_OURS = ("TCM\\_%", "TCMSNAP\\_%", "TCMERGE\\_%", "BIN$%")


def _not_ours(column: Any) -> Any:
    return sa.and_(*(sa.not_(column.like(p, escape="\\")) for p in _OURS))


def queries(merged: Sequence[str]) -> dict[str, sa.Select[Any]]:
    """The dictionary queries of a fingerprint (no bind variable but the literal names)."""
    names = [m.upper() for m in merged]  # unquoted names: upper-cased in the dictionary
    objects = sa.table("user_objects", sa.column("object_type"), sa.column("object_name"),
                       sa.column("status"), sa.column("last_ddl_time"),
                       sa.column("timestamp"), sa.column("generated"))
    columns = sa.table("user_tab_columns", sa.column("table_name"), sa.column("column_name"),
                       sa.column("column_id"), sa.column("data_type"),
                       sa.column("data_length"), sa.column("data_precision"),
                       sa.column("data_scale"), sa.column("nullable"))
    grants = sa.table("user_tab_privs_made", sa.column("grantee"), sa.column("table_name"),
                      sa.column("privilege"), sa.column("grantable"))
    tab_comments = sa.table("user_tab_comments", sa.column("table_name"),
                            sa.column("comments"))
    col_comments = sa.table("user_col_comments", sa.column("table_name"),
                            sa.column("column_name"), sa.column("comments"))
    sequences = sa.table("user_sequences", sa.column("sequence_name"),
                         sa.column("last_number"))
    triggers = sa.table("user_triggers", sa.column("table_name"), sa.column("status"))
    tables = sa.table("user_tables", sa.column("table_name"))
    return {
        "objects": sa.select(objects.c.object_type, objects.c.object_name, objects.c.status,
                             sa.func.to_char(objects.c.last_ddl_time,
                                             "YYYY-MM-DD HH24:MI:SS"), objects.c.timestamp)
        .where(_not_ours(objects.c.object_name),
               objects.c.object_type.not_in(SKIPPED_TYPES), objects.c.generated == "N")
        .order_by(objects.c.object_type, objects.c.object_name),
        "columns": sa.select(columns.c.table_name, columns.c.column_name,
                             columns.c.data_type, columns.c.data_length,
                             columns.c.data_precision, columns.c.data_scale,
                             columns.c.nullable)
        .where(_not_ours(columns.c.table_name))
        .order_by(columns.c.table_name, columns.c.column_id),
        "grants": sa.select(grants.c.table_name, grants.c.grantee, grants.c.privilege,
                            grants.c.grantable)
        .where(_not_ours(grants.c.table_name))
        .order_by(grants.c.table_name, grants.c.grantee, grants.c.privilege),
        "table comments": sa.select(tab_comments.c.table_name, tab_comments.c.comments)
        .where(tab_comments.c.comments.is_not(None), _not_ours(tab_comments.c.table_name))
        .order_by(tab_comments.c.table_name),
        "column comments": sa.select(col_comments.c.table_name, col_comments.c.column_name,
                                     col_comments.c.comments)
        .where(col_comments.c.comments.is_not(None), _not_ours(col_comments.c.table_name))
        .order_by(col_comments.c.table_name, col_comments.c.column_name),
        "sequence values": sa.select(sequences.c.sequence_name, sequences.c.last_number)
        .where(_not_ours(sequences.c.sequence_name))
        .order_by(sequences.c.sequence_name),
        "fires": sa.select(sa.func.count()).select_from(triggers)
        .where(triggers.c.table_name.in_(names), triggers.c.status == "ENABLED"),
        "row tables": sa.select(tables.c.table_name)
        .where(_not_ours(tables.c.table_name), tables.c.table_name.not_in(names))
        .order_by(tables.c.table_name),
    }


def _digest(values: Sequence[Any]) -> str:
    text = "\x1f".join("" if v is None else str(v) for v in values)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:16]


def rows_digest(table: str) -> sa.Select[Any]:
    """(count, sum of ORA_HASH of each ROWID) of a table."""
    rows = sa.table(table)
    return sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
        sa.func.ora_hash(sa.literal_column("ROWID"))), 0)).select_from(rows)


def catalog_fingerprint(conn: sa.Connection, merged: Sequence[str], *,
                        rows: bool | None) -> dict[str, Any]:
    """The fingerprint of the schema outside the tables ``merged`` and tcmerge's own
    objects; ``rows`` as on PostgreSQL (None: only where a trigger on a merged table
    fires). Reads only."""
    q = queries(merged)
    objects: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    columns: dict[str, list[Any]] = {}
    for table, *rest in conn.execute(q["columns"]):
        columns.setdefault(str(table), []).extend(rest)
    for kind_name, name, *rest in conn.execute(q["objects"]):
        kind = OBJECT_KINDS.get(str(kind_name), "others")
        extra = columns.get(str(name), []) if kind == "tables" else []
        objects[kind][f"{kind_name} {name}"] = _digest([*rest, *extra])
    grants: dict[str, list[Any]] = {}
    for table, *rest in conn.execute(q["grants"]):
        grants.setdefault(str(table), []).extend(rest)
    objects["grants"] = {name: _digest(values) for name, values in grants.items()}
    for table, comment in conn.execute(q["table comments"]):
        objects["comments"][str(table)] = _digest([comment])
    for table, column, comment in conn.execute(q["column comments"]):
        objects["comments"][f"{table}.{column}"] = _digest([comment])
    for name, value in conn.execute(q["sequence values"]):
        objects["sequence values"][str(name)] = str(value)
    fires_on_merge = bool(conn.execute(q["fires"]).scalar())
    if not (fires_on_merge if rows is None else rows):
        del objects["rows"]
    else:
        for (table,) in conn.execute(q["row tables"]).all():
            row = conn.execute(rows_digest(str(table))).one()
            objects["rows"][str(table)] = f"{row[0]}:{row[1]}"
    return assemble(VERSION, merged, fires_on_merge, objects)
