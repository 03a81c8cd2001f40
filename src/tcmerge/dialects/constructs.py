"""SQL that truly differs between the dialects, as constructs compiled per dialect.

Code written once for every dialect uses these inside Core statements; each has a
compilation for PostgreSQL and one for Oracle (``@compiles``), and no default: a
dialect without one fails at compile time, not with wrong SQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class PairDigest(FunctionElement[str]):
    """Over a set of rows: a digest of their (a, b) pairs independent of row order (the
    sum of a 64-bit hash of each pair, as text; ``0`` for no rows). Equal sets give equal
    digests in one dialect; the digests of two dialects are not comparable."""

    name = "pair_digest"
    inherit_cache = True
    type = sa.String()


def pair_digest(a: Any, b: Any) -> PairDigest:
    return PairDigest(a, b)


def _two(element: PairDigest, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    a, b = list(element.clauses)
    return compiler.process(a, **kw), compiler.process(b, **kw)


@compiles(PairDigest, "postgresql")
def _pair_digest_postgresql(element: PairDigest, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = _two(element, compiler, **kw)
    return (f"coalesce(sum(hashtextextended(ROW(CAST({a} AS TEXT), CAST({b} AS TEXT))::text, "
            "0)::numeric), 0)::text")


@compiles(PairDigest, "oracle")
def _pair_digest_oracle(element: PairDigest, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = _two(element, compiler, **kw)
    return (f"TO_CHAR(NVL(SUM(ORA_HASH({a}, 4294967295, 1) * 4294967296 "
            f"+ ORA_HASH({b}, 4294967295, 2)), 0))")


# -- row equality -------------------------------------------------------------------------
class RowHash(FunctionElement[Any]):
    """A hash of a row's values (NULL distinct from every value), equal for equal rows.

    A *prefilter*: rows with equal hashes are candidates, confirmed by ``same_value``
    column by column, so that a collision costs a comparison and never a wrong answer.
    PostgreSQL hashes the row's text form (``ROW(...)::text``: NULL and '' differ,
    separators quoted); Oracle cannot hash or concatenate a CLOB, so a CLOB contributes
    its length and the MD5 of its first 1000 characters.
    """

    name = "row_hash"
    inherit_cache = False

    def __init__(self, columns: list[tuple[Any, bool]], *, by_type: bool = False) -> None:
        self.lobs = tuple(lob for _, lob in columns)
        #: PostgreSQL 14+: the values hashed by their types' own hash functions
        self.by_type = by_type
        super().__init__(*(c for c, _ in columns))


def row_hash(columns: list[tuple[Any, bool]], *, by_type: bool = False) -> RowHash:
    """``columns``: (expression, is a LOB) in a fixed order; ``by_type``: where the
    server can hash every value by its type (PostgreSQL 14+, see checksums.py)."""
    return RowHash(columns, by_type=by_type)


@compiles(RowHash, "postgresql")
def _row_hash_postgresql(element: RowHash, compiler: SQLCompiler, **kw: Any) -> str:
    parts = ", ".join(compiler.process(c, **kw) for c in element.clauses)
    if element.by_type:
        # two 64-bit hashes of the values by their types' hash functions (seeds 0 and
        # 1), 128 bits as md5 gives, without writing the row as text (several times
        # cheaper); NULL hashes apart from every value
        halves = [f"lpad(to_hex(hash_record_extended(ROW({parts}), {seed})), 16, '0')"
                  for seed in (0, 1)]
        return f"CAST({halves[0]} || {halves[1]} AS uuid)"
    # as uuid: compared byte for byte, not by the database's collation as md5's text
    return f"CAST(md5(ROW({parts})::text) AS uuid)"


@compiles(RowHash, "oracle")
def _row_hash_oracle(element: RowHash, compiler: SQLCompiler, **kw: Any) -> str:
    parts = []
    for column, lob in zip(element.clauses, element.lobs, strict=True):
        ref = compiler.process(column, **kw)
        if lob:
            parts.append(
                f"CASE WHEN {ref} IS NULL THEN '-' WHEN DBMS_LOB.GETLENGTH({ref}) = 0 "
                f"THEN '0' ELSE DBMS_LOB.GETLENGTH({ref}) || ':' || RAWTOHEX(STANDARD_HASH("
                f"DBMS_LOB.SUBSTR({ref}, 1000, 1), 'MD5')) END")
        else:
            parts.append(f"CASE WHEN {ref} IS NULL THEN '-' "
                         f"ELSE RAWTOHEX(STANDARD_HASH({ref}, 'MD5')) END")
    return "STANDARD_HASH(" + " || '|' || ".join(parts) + ", 'MD5')"


class SameValue(FunctionElement[bool]):
    """Two values are equal, NULL equal to NULL (a condition)."""

    name = "same_value"
    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, a: Any, b: Any, lob: bool) -> None:
        self.lob = lob
        super().__init__(a, b)


def same_value(a: Any, b: Any, lob: bool = False) -> SameValue:
    return SameValue(a, b, lob)


@compiles(SameValue, "postgresql")
def _same_value_postgresql(element: SameValue, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"({a} IS NOT DISTINCT FROM {b})"


@compiles(SameValue, "oracle")
def _same_value_oracle(element: SameValue, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    if element.lob:  # a CLOB cannot be DECODEd or compared with =
        return f"(({a} IS NULL AND {b} IS NULL) OR DBMS_LOB.COMPARE({a}, {b}) = 0)"
    return f"DECODE({a}, {b}, 1, 0) = 1"


# -- rows without a key -------------------------------------------------------------------
class RowPointer(sa.sql.expression.ColumnElement[Any]):
    """The physical address of a row of the table aliased ``alias`` (PostgreSQL ``ctid``,
    Oracle ``ROWID``): stable within the merge transaction, which updates no row it
    points at. Rows of tc_timelog, jm and aft_log have no key; work tables point at
    them with this."""

    inherit_cache = False
    type = sa.types.NullType()

    def __init__(self, alias: str) -> None:
        self.alias = alias


@compiles(RowPointer, "postgresql")
def _row_pointer_postgresql(element: RowPointer, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.preparer.quote(element.alias)}.ctid"


@compiles(RowPointer, "oracle")
def _row_pointer_oracle(element: RowPointer, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.preparer.quote(element.alias)}.ROWID"


# -- work tables ----------------------------------------------------------------------------
class CreateWorkTable(sa.schema.ExecutableDDLElement):
    """An empty table with the columns of ``query``; ``fill`` puts the rows in later.

    PostgreSQL: a TEMP table dropped at COMMIT, made inside the merge transaction (its
    DDL is transactional). Oracle: a plain table made before the merge transaction (DDL
    commits; dropped by the executor afterwards); DDL takes no bind variables (ORA-01027),
    so the query's literals are written out.
    """

    inherit_cache = False

    def __init__(self, name: str, query: sa.Select[Any]) -> None:
        self.name = name
        self.query = query


def _inner(element: CreateWorkTable, compiler: Any, **kw: Any) -> str:
    return str(compiler.sql_compiler.process(element.query, literal_binds=True))


@compiles(CreateWorkTable, "postgresql")
def _create_work_postgresql(element: CreateWorkTable, compiler: Any, **kw: Any) -> str:
    name = compiler.preparer.quote(element.name)
    return (f"CREATE TEMP TABLE {name} ON COMMIT DROP AS {_inner(element, compiler)} "
            "WITH NO DATA")


@compiles(CreateWorkTable, "oracle")
def _create_work_oracle(element: CreateWorkTable, compiler: Any, **kw: Any) -> str:
    name = compiler.preparer.quote(element.name)
    return f"CREATE TABLE {name} AS SELECT * FROM ({_inner(element, compiler)}) WHERE 1 = 0"


# -- a refusal inside a script ------------------------------------------------------------
class RefuseIf(sa.schema.ExecutableDDLElement):
    """Stop the script with ``message`` when ``count`` (a one-row count query) is above 0:
    what the merge would refuse (a blocking finding) also stops its script."""

    inherit_cache = False

    def __init__(self, count: sa.Select[Any], message: str) -> None:
        self.count = count
        self.message = message


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@compiles(RefuseIf, "postgresql")
def _refuse_postgresql(element: RefuseIf, compiler: Any, **kw: Any) -> str:
    query = compiler.sql_compiler.process(element.count, literal_binds=True)
    return (f"DO $tcmerge$ BEGIN IF ({query}) > 0 THEN RAISE EXCEPTION '%', "
            f"{_literal(element.message)}; END IF; END $tcmerge$")


@compiles(RefuseIf, "oracle")
def _refuse_oracle(element: RefuseIf, compiler: Any, **kw: Any) -> str:
    query = compiler.sql_compiler.process(element.count, literal_binds=True)
    return (f"DECLARE n NUMBER; BEGIN SELECT ({query}) INTO n FROM dual; IF n > 0 THEN "
            f"RAISE_APPLICATION_ERROR(-20001, {_literal(element.message)}); END IF; END;")


# -- an update joined to a query --------------------------------------------------------------
class UpdateFrom(sa.schema.ExecutableDDLElement):
    """UPDATE ``table`` (aliased ``t``) from the rows of ``source`` (aliased ``i``) that
    match on ``key``: each of ``values`` (column -> expression over ``t`` and ``i``) set
    where ``where`` holds. PostgreSQL: UPDATE ... FROM; Oracle (no joined UPDATE): MERGE
    ... WHEN MATCHED THEN UPDATE. Core's UPDATE has neither form for both dialects, and
    correlated subqueries would scan the source once per row."""

    inherit_cache = False

    def __init__(self, table: sa.Table, source: sa.Select[Any], key: str,
                 values: dict[str, Any], where: Any) -> None:
        self.table, self.source, self.key = table, source, key
        self.values, self.where = values, where


def update_aliases(table: sa.Table, source: sa.Select[Any]) -> tuple[Any, Any]:
    """The aliases ``t`` (the table) and ``i`` (the source) that an ``UpdateFrom``'s
    expressions are written over."""
    return table.alias("t"), source.subquery("i")


def _update_parts(element: UpdateFrom, compiler: Any) -> tuple[str, str, list[str], str]:
    sql = compiler.sql_compiler
    quote = compiler.preparer.quote
    source = sql.process(element.source, literal_binds=True)
    sets = [f"{quote(name)} = {sql.process(expr, literal_binds=True)}"
            for name, expr in element.values.items()]
    where = sql.process(element.where, literal_binds=True)
    return quote(element.table.name), source, sets, where


@compiles(UpdateFrom, "postgresql")
def _update_from_postgresql(element: UpdateFrom, compiler: Any, **kw: Any) -> str:
    table, source, sets, where = _update_parts(element, compiler)
    key = compiler.preparer.quote(element.key)
    return (f"UPDATE {table} AS t SET {', '.join(sets)} FROM ({source}) AS i "
            f"WHERE t.{key} = i.{key} AND ({where})")


@compiles(UpdateFrom, "oracle")
def _update_from_oracle(element: UpdateFrom, compiler: Any, **kw: Any) -> str:
    table, source, sets, where = _update_parts(element, compiler)
    key = compiler.preparer.quote(element.key)
    return (f"MERGE INTO {table} t USING ({source}) i ON (t.{key} = i.{key}) "
            f"WHEN MATCHED THEN UPDATE SET {', '.join('t.' + s for s in sets)} "
            f"WHERE ({where})")
