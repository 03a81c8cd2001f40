"""A fingerprint of everything in a PostgreSQL database that a merge must leave alone.

"Everything else stays as it was": other tables and their rows, views, sequences,
functions and procedures, triggers, indexes, constraints, grants, comments, types,
extensions and foreign servers of the target are unchanged by ``run`` and ``restore``.
The merge takes this fingerprint in its transaction before it writes anything and
stores it with the job (``counts["catalog_fingerprint"]``); ``verify`` takes it again
and names what differs (``differences``).

What is covered, per kind (objects named schema-qualified, never by OID, so that an
index the merge sets aside and builds again by its own definition is the same object):

``tables``      tables, partitioned, foreign tables and standalone composite types:
                owner, persistence, options, partitioning, every column (name, type,
                NOT NULL, identity, generated, collation, default). The merged TC
                tables are included (their structure; not their rows).
``views``       views and materialized views: their columns and definition.
``sequences``   definition (type, start, increment, bounds, cache, cycle, owner).
``indexes``     pg_get_indexdef, clustered, replica identity, tablespace; on every
                table, the merged ones included.
``constraints`` pg_get_constraintdef, deferrability, validation; on every table.
``triggers``    pg_get_triggerdef and enabled state, on every table; rules (pg_rewrite,
                views' own aside) with pg_get_ruledef.
``functions``   functions, procedures, aggregates: pg_get_functiondef (aggregates: their
                pg_aggregate row), kind and owner; extension members aside.
``types``       domains, enums, ranges, multiranges: base type, default, labels, checks.
``grants``      ACLs of tables, columns, sequences, views, functions, schemas, foreign
                servers, the database, and default privileges.
``comments``    every comment on an object of the site (OID >= 16384) and the database's.
``extensions``  name, version, schema.
``foreign servers`` servers (wrapper, type, version, options but passwords) and which
                user mappings exist (their options are never read: they hold passwords).
``schemas``     schemas and their owners.
``rows``        per table outside the merged ones: ``count:sum of a 64-bit hash of each
                row's text`` (one scan, no sort; the digest of ``TABLE_DIGEST``), or
                ``unreadable`` when the session may not SELECT it.
``sequence values`` last_value of each sequence not owned by a merged table.

Left out: pg_catalog, information_schema, TOAST and temporary schemas (the merge's
staging), tcmerge's own tables (``tcmerge_*``: job history, snapshots, leases, lock,
Alembic version) with their indexes, triggers, constraints and sequences, and objects
that belong to an extension (they change with the extension's version, recorded).

Every object's description is digested in the server (``left(md5(...), 16)``); the
fingerprint holds those digests per kind plus one digest per kind. Sessions opened by
``tcmerge.merge.pg`` fix DateStyle, TimeZone and float output, so row texts compare
across sessions. Cost: catalog queries, and one scan of each table outside the merge.

Oracle: ``tcmerge.dialects.oracle.fingerprint``, the same shape from the schema's
dictionary views; ``differences`` compares either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from tcmerge.dialects.postgresql.digests import TABLE_DIGEST

VERSION = 1

#: every kind, in the order reports name them
KINDS = ("tables", "views", "sequences", "indexes", "constraints", "triggers", "functions",
         "types", "grants", "comments", "extensions", "foreign servers", "schemas", "rows",
         "sequence values")

#: parameters every query takes: the merged tables (their OIDs through the search path)
#: and LIKE patterns (written as parameters: no percent sign in the statements)
_SITE = """
n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
AND n.nspname NOT LIKE %(temp)s AND n.nspname NOT LIKE %(toast_temp)s
"""
_NOT_TCMERGE = "{rel}.relname NOT LIKE %(tcmerge)s"


def _member(classid: str, objid: str) -> str:
    """An object that belongs to an extension."""
    return (f"EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS e WHERE e.classid = "
            f"'{classid}'::regclass AND e.objid = {objid} AND e.deptype = 'e')")


_MERGED = "(SELECT to_regclass(quote_ident(m)) FROM unnest(%(merged)s::text[]) AS m)"
_QNAME = "quote_ident(n.nspname) || '.' || quote_ident({rel}.relname)"

_RELATIONS = f"""
SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'views' WHEN c.relkind = 'S' THEN 'sequences'
            ELSE 'tables' END,
       {_QNAME.format(rel='c')},
       left(md5(concat_ws(E'\\n', c.relkind, pg_get_userbyid(c.relowner), c.relpersistence,
           array_to_string(c.reloptions, ','), pg_get_partkeydef(c.oid),
           pg_get_expr(c.relpartbound, c.oid),
           (SELECT string_agg(concat_ws(' ', quote_ident(a.attname),
                                        format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                        a.attidentity, a.attgenerated, co.collname,
                                        pg_get_expr(d.adbin, d.adrelid)),
                              E'\\n' ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute AS a
            LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid
                 AND d.adnum = a.attnum
            LEFT JOIN pg_catalog.pg_collation AS co ON co.oid = a.attcollation
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
           (SELECT concat_ws(' ', format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                             s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
            FROM pg_catalog.pg_sequence AS s WHERE s.seqrelid = c.oid))), 16)
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'c', 'v', 'm', 'S') AND {_SITE}
  AND {_NOT_TCMERGE.format(rel='c')} AND NOT {_member('pg_class', 'c.oid')}
  AND NOT (c.relkind = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_type AS t
           WHERE t.typrelid = c.oid AND {_member('pg_type', 't.oid')}))
"""

_INDEXES = f"""
SELECT 'indexes', {_QNAME.format(rel='ic')},
       left(md5(concat_ws(E'\\n', pg_get_indexdef(i.indexrelid), i.indisclustered,
                          i.indisreplident, ic.reltablespace)), 16)
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = ic.relnamespace
WHERE {_SITE} AND {_NOT_TCMERGE.format(rel='c')} AND NOT {_member('pg_class', 'c.oid')}
"""

_CONSTRAINTS = f"""
SELECT 'constraints', {_QNAME.format(rel='c')} || '.' || quote_ident(k.conname),
       left(md5(concat_ws(E'\\n', k.contype, pg_get_constraintdef(k.oid), k.condeferrable,
                          k.condeferred, k.convalidated)), 16)
FROM pg_catalog.pg_constraint AS k
JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE {_SITE} AND {_NOT_TCMERGE.format(rel='c')} AND NOT {_member('pg_class', 'c.oid')}
"""

_TRIGGERS = f"""
SELECT 'triggers', {_QNAME.format(rel='c')} || '.' || quote_ident(t.tgname),
       left(md5(pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text), 16)
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND {_SITE} AND {_NOT_TCMERGE.format(rel='c')}
  AND NOT {_member('pg_class', 'c.oid')}
UNION ALL
SELECT 'triggers', 'rule ' || {_QNAME.format(rel='c')} || '.' || quote_ident(r.rulename),
       left(md5(pg_get_ruledef(r.oid) || ' ' || r.ev_enabled::text), 16)
FROM pg_catalog.pg_rewrite AS r
JOIN pg_catalog.pg_class AS c ON c.oid = r.ev_class
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN' AND {_SITE} AND {_NOT_TCMERGE.format(rel='c')}
  AND NOT {_member('pg_class', 'c.oid')}
"""

_FUNCTION_NAME = ("quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' "
                  "|| pg_get_function_identity_arguments(p.oid) || ')'")

_FUNCTIONS = f"""
SELECT 'functions', {_FUNCTION_NAME},
       left(md5(concat_ws(E'\\n', p.prokind, pg_get_userbyid(p.proowner),
           CASE WHEN p.prokind = 'a'
                THEN (SELECT a::text FROM pg_catalog.pg_aggregate AS a
                      WHERE a.aggfnoid = p.oid)
                ELSE pg_get_functiondef(p.oid) END)), 16)
FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE {_SITE} AND NOT {_member('pg_proc', 'p.oid')}
"""

_TYPES = f"""
SELECT 'types', quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       left(md5(concat_ws(E'\\n', t.typtype, pg_get_userbyid(t.typowner),
           format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
           (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder)
            FROM pg_catalog.pg_enum AS e WHERE e.enumtypid = t.oid),
           (SELECT format_type(r.rngsubtype, NULL) FROM pg_catalog.pg_range AS r
            WHERE r.rngtypid = t.oid),
           (SELECT string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), ','
                              ORDER BY k.conname)
            FROM pg_catalog.pg_constraint AS k WHERE k.contypid = t.oid))), 16)
FROM pg_catalog.pg_type AS t JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
WHERE t.typtype IN ('d', 'e', 'r', 'm') AND {_SITE} AND NOT {_member('pg_type', 't.oid')}
"""

_GRANTS = f"""
SELECT 'grants', 'relation ' || {_QNAME.format(rel='c')},
       left(md5(coalesce(c.relacl::text, 'default')), 16)
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {_SITE}
  AND {_NOT_TCMERGE.format(rel='c')} AND NOT {_member('pg_class', 'c.oid')}
UNION ALL
SELECT 'grants', 'column ' || {_QNAME.format(rel='c')} || '.' || quote_ident(a.attname),
       left(md5(a.attacl::text), 16)
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND {_SITE}
  AND {_NOT_TCMERGE.format(rel='c')} AND NOT {_member('pg_class', 'c.oid')}
UNION ALL
SELECT 'grants', 'function ' || {_FUNCTION_NAME},
       left(md5(coalesce(p.proacl::text, 'default')), 16)
FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE {_SITE} AND NOT {_member('pg_proc', 'p.oid')}
UNION ALL
SELECT 'grants', 'schema ' || quote_ident(n.nspname),
       left(md5(coalesce(n.nspacl::text, 'default')), 16)
FROM pg_catalog.pg_namespace AS n WHERE {_SITE}
UNION ALL
SELECT 'grants', 'database', left(md5(coalesce(d.datacl::text, 'default')), 16)
FROM pg_catalog.pg_database AS d WHERE d.datname = current_database()
UNION ALL
SELECT 'grants', 'server ' || quote_ident(s.srvname),
       left(md5(coalesce(s.srvacl::text, 'default')), 16)
FROM pg_catalog.pg_foreign_server AS s
UNION ALL
SELECT 'grants', 'default privileges of ' || pg_get_userbyid(d.defaclrole) || ' in '
       || coalesce(quote_ident(n.nspname), 'the database') || ' on ' || d.defaclobjtype::text,
       left(md5(d.defaclacl::text), 16)
FROM pg_catalog.pg_default_acl AS d
LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = d.defaclnamespace
"""

_COMMENTS = """
SELECT 'comments', o.type || ' ' || o.identity, left(md5(d.description), 16)
FROM pg_catalog.pg_description AS d,
     LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) AS o
WHERE d.objoid >= 16384
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS e WHERE e.classid = d.classoid
                  AND e.objid = d.objoid AND e.deptype = 'e')
  AND coalesce(o.schema NOT LIKE %(temp)s AND o.schema NOT LIKE %(toast_temp)s, true)
  AND NOT (d.classoid = 'pg_catalog.pg_class'::regclass AND EXISTS (
           SELECT 1 FROM pg_catalog.pg_class AS c
           WHERE c.oid = d.objoid AND c.relname LIKE %(tcmerge)s))
UNION ALL
SELECT 'comments', 'database', left(md5(s.description), 16)
FROM pg_catalog.pg_shdescription AS s JOIN pg_catalog.pg_database AS db
     ON s.classoid = 'pg_catalog.pg_database'::regclass AND s.objoid = db.oid
WHERE db.datname = current_database()
"""

_OTHERS = f"""
SELECT 'extensions', quote_ident(x.extname),
       left(md5(concat_ws(' ', x.extversion, n.nspname, pg_get_userbyid(x.extowner))), 16)
FROM pg_catalog.pg_extension AS x JOIN pg_catalog.pg_namespace AS n
     ON n.oid = x.extnamespace
UNION ALL
SELECT 'foreign servers', 'server ' || quote_ident(s.srvname),
       left(md5(concat_ws(E'\\n', w.fdwname, s.srvtype, s.srvversion,
           pg_get_userbyid(s.srvowner),
           (SELECT string_agg(o, ',' ORDER BY o) FROM unnest(s.srvoptions) AS o
            WHERE split_part(o, '=', 1) <> 'password'))), 16)
FROM pg_catalog.pg_foreign_server AS s
JOIN pg_catalog.pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
UNION ALL
SELECT 'foreign servers', 'user mapping for ' || u.usename || ' server '
       || quote_ident(u.srvname), 'exists'
FROM pg_catalog.pg_user_mappings AS u
UNION ALL
SELECT 'schemas', quote_ident(n.nspname), left(md5(pg_get_userbyid(n.nspowner)), 16)
FROM pg_catalog.pg_namespace AS n WHERE {_SITE} AND NOT {_member('pg_namespace', 'n.oid')}
UNION ALL
SELECT 'sequence values', quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename),
       coalesce(s.last_value::text, 'unset or unreadable')
FROM pg_catalog.pg_sequences AS s
JOIN pg_catalog.pg_namespace AS n ON n.nspname = s.schemaname
JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = s.sequencename
WHERE {_SITE} AND {_NOT_TCMERGE.format(rel='c')} AND NOT {_member('pg_class', 'c.oid')}
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS o
                  WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objid = c.oid
                    AND o.deptype IN ('a', 'i') AND o.refobjid IN {_MERGED})
"""

#: tables whose rows are digested: every table outside the merge and tcmerge's own
_ROW_TABLES = f"""
SELECT {_QNAME.format(rel='c')}, n.nspname, c.relname,
       has_table_privilege(c.oid, 'SELECT')
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND {_SITE} AND {_NOT_TCMERGE.format(rel='c')}
  AND NOT {_member('pg_class', 'c.oid')}
  AND c.oid NOT IN (SELECT x FROM {_MERGED} AS r(x) WHERE x IS NOT NULL)
  AND (c.relkind <> 'm' OR c.relispopulated)
ORDER BY 1
"""

#: the merge's inserts fire a trigger or a rule of a merged table: then the merge could
#: have changed anything those do
_FIRES = f"""
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
               WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
                 AND t.tgrelid IN {_MERGED})
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite AS r
               WHERE r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'
                 AND r.ev_class IN {_MERGED})
"""


def _params(merged: Sequence[str]) -> dict[str, Any]:
    return {"merged": list(merged), "temp": "pg\\_temp\\_%",
            "toast_temp": "pg\\_toast\\_temp\\_%", "tcmerge": "tcmerge\\_%"}


def kind_digest(objects: dict[str, str]) -> str:
    return hashlib.md5(json.dumps(sorted(objects.items())).encode(),
                       usedforsecurity=False).hexdigest()[:16]


def assemble(version: int, merged: Sequence[str], fires_on_merge: bool,
             objects: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A fingerprint (either dialect's): per kind its objects' digests and one digest."""
    return {
        "version": version,
        "merged": list(merged),
        "fires_on_merge": fires_on_merge,
        "kinds": {kind: {"digest": kind_digest(found), "objects": found}
                  for kind, found in objects.items()},
    }


def catalog_fingerprint(conn: psycopg.Connection[Any], merged: Sequence[str], *,
                        rows: bool | None = None) -> dict[str, Any]:
    """The fingerprint of the database outside the tables ``merged`` (names found through
    the session's search path, as the merge finds them) and tcmerge's own objects.

    ``rows``: also digest the rows of every other table (a full scan of each). By default
    only where enabled triggers or rules on the merged tables fire on the merge's
    inserts: otherwise no statement of the merge can change another table's rows, and
    the scans would cost the merge transaction the size of the whole database.

    Reads only; run it in the merge transaction before any write, and in verify's."""
    params = _params(merged)
    objects: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for query in (_RELATIONS, _INDEXES, _CONSTRAINTS, _TRIGGERS, _FUNCTIONS, _TYPES,
                  _GRANTS, _COMMENTS, _OTHERS):
        for kind, name, digest in conn.execute(query, params).fetchall():
            objects[str(kind)][str(name)] = str(digest)
    fires = conn.execute(_FIRES, params).fetchone()
    fires_on_merge = bool(fires and fires[0])
    if not (fires_on_merge if rows is None else rows):
        del objects["rows"]
    row_tables = conn.execute(_ROW_TABLES, params).fetchall() if "rows" in objects else []
    for qname, schema, table, readable in row_tables:
        if not readable:
            objects["rows"][str(qname)] = "unreadable"
            continue
        row = conn.execute(sql.SQL(TABLE_DIGEST).format(
            sql.Identifier(str(schema), str(table)))).fetchone()
        assert row is not None
        objects["rows"][str(qname)] = f"{row[0]}:{row[1]}"
    return assemble(VERSION, merged, fires_on_merge, objects)


#: values that say nothing about the content: not compared
_UNCOMPARABLE = ("unreadable", "unset or unreadable")


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Per kind that differs: the objects ``added``, ``removed`` and ``changed`` (sorted).

    Kinds whose digest is equal are not looked into; an object one side could not read
    is not compared."""
    out: dict[str, dict[str, list[str]]] = {}
    was_kinds: dict[str, Any] = before.get("kinds", {})
    now_kinds: dict[str, Any] = after.get("kinds", {})
    # PostgreSQL's kinds in their order, then another dialect's (Oracle's "others")
    for kind in [*KINDS, *sorted((was_kinds.keys() | now_kinds.keys()) - set(KINDS))]:
        was, now = was_kinds.get(kind), now_kinds.get(kind)
        if was is None or now is None or was.get("digest") == now.get("digest"):
            continue
        old: dict[str, str] = was.get("objects", {})
        new: dict[str, str] = now.get("objects", {})
        changed = sorted(name for name in old.keys() & new.keys()
                         if old[name] != new[name] and old[name] not in _UNCOMPARABLE
                         and new[name] not in _UNCOMPARABLE)
        found = {"added": sorted(new.keys() - old.keys()),
                 "removed": sorted(old.keys() - new.keys()), "changed": changed}
        if any(found.values()):
            out[kind] = found
    return out
