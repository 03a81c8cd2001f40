"""Oracle database-link statements as constructs compiled for the Oracle dialect.

``CREATE DATABASE LINK`` is DDL and cannot take bind variables, yet its
password must never appear in SQL text tcmerge sends. The construct therefore
compiles to an anonymous PL/SQL block whose ``EXECUTE IMMEDIATE`` concatenates
the password from a bind variable on the server. A password containing a double
quote cannot be written in ``IDENTIFIED BY "..."`` and is refused.

``LinkedTable`` renders ``table@link`` so that ``INSERT ... SELECT`` can read a
remote table through a link: selecting LOB columns over a link directly fails
with ORA-22992, while INSERT ... SELECT moves them inside the servers.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import oracle
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import Executable, TableClause

from tcmerge.errors import ConfigError

PASSWORD_PARAM = "tcmerge_link_password"
_PREPARER = oracle.dialect().identifier_preparer  # type: ignore[no-untyped-call]


def _literal(text: str) -> str:
    """A PL/SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def oracle_quote(name: str) -> str:
    return str(_PREPARER.quote(name))


def create_if_absent(table: sa.Table) -> sa.TextClause:
    """CREATE TABLE unless it exists (ORA-00955 ignored): Oracle has no IF NOT EXISTS
    before 23ai. The DDL is the model's, compiled for Oracle, inside a PL/SQL literal."""
    ddl = str(CreateTable(table).compile(dialect=_PREPARER.dialect)).strip()
    return sa.text(
        f"BEGIN EXECUTE IMMEDIATE {_literal(ddl)}; EXCEPTION WHEN OTHERS THEN "
        "IF SQLCODE != -955 THEN RAISE; END IF; END;")


def check_link_password(password: str) -> None:
    if not password:
        # a wallet or an external login serves tcmerge's own sessions, not the link that
        # the target opens (IDENTIFIED BY "" fails there with ORA-01741, mid-merge)
        raise ConfigError(
            "an Oracle database link needs the source user's password: give it in the URL "
            "or by the topology's password_env"
        )
    if '"' in password:
        raise ConfigError(
            "an Oracle database link cannot use a password that contains a double quote; "
            "change the source user's password"
        )


class CreateDatabaseLink(Executable, ClauseElement):
    """CREATE [PUBLIC] DATABASE LINK name CONNECT TO user IDENTIFIED BY :password USING '...'."""

    inherit_cache = False

    def __init__(self, name: str, user: str, using: str, *, public: bool = False) -> None:
        self.name = name
        self.user = user
        self.using = using
        self.public = public


class DropDatabaseLink(Executable, ClauseElement):
    """DROP [PUBLIC] DATABASE LINK name."""

    inherit_cache = False

    def __init__(self, name: str, *, public: bool = False) -> None:
        self.name = name
        self.public = public


@compiles(CreateDatabaseLink, "oracle")
def _create_link(element: CreateDatabaseLink, compiler: SQLCompiler, **kw: Any) -> str:
    head = (
        f"CREATE {'PUBLIC ' if element.public else ''}DATABASE LINK "
        f"{oracle_quote(element.name)} CONNECT TO {oracle_quote(element.user)} IDENTIFIED BY \""
    )
    tail = f'" USING {_literal(element.using)}'
    password = compiler.process(sa.bindparam(PASSWORD_PARAM, type_=sa.String()), **kw)
    return (f"BEGIN EXECUTE IMMEDIATE {_literal(head)} || {password} || {_literal(tail)}; "
            "END;")


@compiles(DropDatabaseLink, "oracle")
def _drop_link(element: DropDatabaseLink, compiler: SQLCompiler, **kw: Any) -> str:
    return f"DROP {'PUBLIC ' if element.public else ''}DATABASE LINK {oracle_quote(element.name)}"


class LinkedTable(TableClause):
    """A table read through a database link: renders ``name@link``."""

    __visit_name__ = "linked_table"
    inherit_cache = False

    def __init__(self, name: str, link: str, *columns: sa.ColumnClause[Any]) -> None:
        super().__init__(name, *columns)
        self.link = link


@compiles(LinkedTable, "oracle")
def _linked_table(element: LinkedTable, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.preparer.quote(element.name)}@{oracle_quote(element.link)}"


def linked(table: sa.Table, link: str) -> LinkedTable:
    """The remote twin of a model table, read through ``link``."""
    columns = [sa.column(c.name, c.type) for c in table.columns]
    return LinkedTable(table.name, link, *columns)


def insert_from_link(target: str | TableClause, source: sa.Table, link: str) -> sa.Insert:
    """INSERT INTO target (cols) SELECT cols FROM source@link: LOBs move inside the servers.

    ``target`` is a table or the name of a staging table shaped like ``source``.
    """
    names = [c.name for c in source.columns]
    if isinstance(target, str):
        target = sa.table(target, *[sa.column(c.name, c.type) for c in source.columns])
    remote = linked(source, link).alias("src")
    return sa.insert(target).from_select(names, sa.select(*[remote.c[n] for n in names]))


def probe_link(link: str) -> sa.Select[Any]:
    """SELECT 1 FROM dual@link: opens the link's session once."""
    return sa.select(sa.literal_column("1")).select_from(LinkedTable("dual", link))
