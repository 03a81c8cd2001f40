"""Oracle: the merge's statements as SQLAlchemy constructs (compiled and unit-tested offline).

Oracle DDL commits, so the order is: database links and staging tables are made
*before* the merge transaction, rows move with ``INSERT ... SELECT`` over the
links (LOB columns cannot be selected over a link, ORA-22992, but INSERT ... SELECT
works), the merge runs in one transaction, and links and staging tables are
dropped *after* it (also after a failure; leftovers of a killed run carry the
``TCM_`` prefix and are dropped by the next run).

The link's password is never part of SQL text: ``create_link_block`` is a PL/SQL
block taking name, user, password and connect string as bind variables and
building the DDL server-side with DBMS_ASSERT quoting.

Not executed here: no Oracle server is available to prove the whole path, so
``run_merge`` refuses Oracle inputs for now (see the engine).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import TableClause

from tcmerge.schema.types import VarString

PREFIX = "TCM_"


class AtLink(TableClause):
    """``table@link``: a table read through an Oracle database link."""

    inherit_cache = False

    def __init__(self, name: str, link: str, *columns: sa.ColumnClause[Any]) -> None:
        super().__init__(name, *columns)
        self.link = link


@compiles(AtLink, "oracle")
def _at_link_oracle(element: AtLink, compiler: SQLCompiler, **kw: Any) -> str:
    preparer = compiler.preparer
    return f"{preparer.quote(element.name)}@{preparer.quote(element.link)}"


@compiles(AtLink)
def _at_link_default(element: AtLink, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError("database links (table@link) exist only on Oracle")


def link_name(job_token: str, inp: int) -> str:
    return f"{PREFIX}{job_token.upper()}_L{inp}"


def staging_table_name(job_token: str, table: str) -> str:
    return f"{PREFIX}{job_token.upper()}_S_{table.upper()}"[:128]


def create_link_block() -> sa.TextClause:
    """CREATE DATABASE LINK built server-side from bind variables (no secret in SQL text).

    Binds: ``link`` (a simple SQL name), ``username``, ``password``, ``tns`` (connect
    string, e.g. ``//host:1521/FREEPDB1``).
    """
    return sa.text(
        "BEGIN EXECUTE IMMEDIATE 'CREATE DATABASE LINK ' "
        "|| DBMS_ASSERT.SIMPLE_SQL_NAME(:link) "
        "|| ' CONNECT TO ' || DBMS_ASSERT.ENQUOTE_NAME(:username, FALSE) "
        "|| ' IDENTIFIED BY ' || DBMS_ASSERT.ENQUOTE_NAME(:password, FALSE) "
        "|| ' USING ' || DBMS_ASSERT.ENQUOTE_LITERAL(:tns); END;"
    )


def drop_link(link: str) -> sa.TextClause:
    return sa.text("BEGIN EXECUTE IMMEDIATE 'DROP DATABASE LINK ' "
                   "|| DBMS_ASSERT.SIMPLE_SQL_NAME(:link); END;").bindparams(link=link)


def staging_table(model: sa.Table, job_token: str, metadata: sa.MetaData) -> sa.Table:
    """A plain table (not temporary: DDL commits anyway) with ``inp`` and the model's columns."""
    columns: list[sa.Column[Any]] = [sa.Column("inp", sa.Numeric(5, 0), nullable=False)]
    for col in model.columns:
        kind = col.type
        columns.append(sa.Column(col.name, kind if not isinstance(kind, VarString)
                                 else VarString(kind.length or 4000), nullable=True,
                                 quote=col.name.lower() in ("start", "end") or None))
    return sa.Table(staging_table_name(job_token, model.name), metadata, *columns)


def remote(model: sa.Table, link: str) -> Any:
    columns: list[sa.ColumnClause[Any]] = [sa.column(c.name) for c in model.columns]
    return AtLink(model.name, link, *columns).alias("r")


def stage_over_link(model: sa.Table, staging: sa.Table, link: str, inp: int) -> sa.Insert:
    """INSERT INTO staging (inp, cols) SELECT :inp, r.cols FROM table@link r."""
    src = remote(model, link)
    names = [c.name for c in model.columns]
    select = sa.select(sa.literal(inp, sa.Integer()).label("inp"), *(src.c[n] for n in names))
    return sa.insert(staging).from_select(["inp", *names], select)


def lock_target() -> sa.TextClause:
    """One merge at a time: an exclusive, transaction-scoped user lock (DBMS_LOCK)."""
    return sa.text(
        "DECLARE h VARCHAR2(128); r INTEGER; BEGIN "
        "DBMS_LOCK.ALLOCATE_UNIQUE('TCMERGE_MERGE', h); "
        "r := DBMS_LOCK.REQUEST(h, DBMS_LOCK.X_MODE, 0, TRUE); "
        ":result := r; END;"
    ).bindparams(sa.bindparam("result", type_=sa.Integer(), isoutparam=True))


def leftover_objects() -> sa.Select[Any]:
    """Links and staging tables left by a killed run (dropped before the next merge)."""
    tables: Any = sa.select(sa.literal("TABLE").label("kind"),
                       sa.column("table_name").label("name")).select_from(
        sa.table("user_tables", sa.column("table_name"))).where(
        sa.column("table_name").like(PREFIX + "%"))
    links: Any = sa.select(sa.literal("LINK").label("kind"), sa.column("db_link").label("name")
                      ).select_from(sa.table("user_db_links", sa.column("db_link"))).where(
        sa.column("db_link").like(PREFIX + "%"))
    return sa.select(sa.union_all(tables, links).subquery())
