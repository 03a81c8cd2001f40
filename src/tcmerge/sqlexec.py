"""One way to run a SQLAlchemy statement, whichever connection the caller holds.

Code that is written once for every dialect builds SQLAlchemy Core statements and
hands them to a ``Runner``: the runner compiles them for its dialect and runs them
on the connection it wraps. ``SaRunner`` wraps a SQLAlchemy connection (any dialect);
``PsycopgRunner`` a raw psycopg connection, as the PostgreSQL merge holds for its
COPY relay, so that the merge transaction runs the same statements as every other
caller. (Alembic's ``impl._exec`` is the model: one place that runs a statement.)
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Protocol

import psycopg
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

Row = tuple[Any, ...]
#: a Core statement, DDL element or ``sa.text``
Statement = Executable | ClauseElement


class Runner(abc.ABC):
    """Runs Core statements (or ``sa.text``) and returns their rows as tuples."""

    dialect: Dialect

    @property
    def name(self) -> str:
        """The dialect's name: ``postgresql`` or ``oracle``."""
        return str(self.dialect.name)

    @abc.abstractmethod
    def rows(self, statement: Statement,
             params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run ``statement``; its rows ([] for a statement that returns none)."""

    @abc.abstractmethod
    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement that returns no rows; the number of rows it changed (-1: the
        driver does not say)."""

    def scalar(self, statement: Statement, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.rows(statement, params)
        return rows[0][0] if rows else None


class Executes(Protocol):
    """What a runner needs of a SQLAlchemy-style session (``sa.Connection`` fits)."""

    def execute(self, statement: Any, parameters: Any = None) -> Any: ...


class SaRunner(Runner):
    """A SQLAlchemy connection (or a session object like one, with its ``dialect``
    given); its transaction is the caller's."""

    def __init__(self, conn: Executes, dialect: Dialect | None = None) -> None:
        self.conn = conn
        self.dialect = dialect if dialect is not None else conn.dialect  # type: ignore[attr-defined]

    def rows(self, statement: Statement,
             params: Mapping[str, Any] | None = None) -> list[Row]:
        result = self.conn.execute(statement, dict(params) if params else None)
        if result is None or not result.returns_rows:
            return []
        return [tuple(r) for r in result]

    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        result = self.conn.execute(statement, dict(params) if params else None)
        return -1 if result is None else int(result.rowcount)


class PsycopgRunner(Runner):
    """A psycopg connection (PostgreSQL); statements are compiled for psycopg's
    parameter style and run in the connection's current transaction."""

    dialect: Dialect = pg_psycopg.dialect()  # type: ignore[no-untyped-call]

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def rows(self, statement: Statement,
             params: Mapping[str, Any] | None = None) -> list[Row]:
        cursor = self._run(statement, params)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        return int(self._run(statement, params).rowcount)

    def _run(self, statement: Statement,
             params: Mapping[str, Any] | None) -> psycopg.Cursor[Any]:
        compiled = statement.compile(dialect=self.dialect,  # type: ignore[union-attr]
                                     compile_kwargs={"render_postcompile": True})
        values = compiled.construct_params(dict(params) if params else None)
        # a statement's text escapes a literal % as %%, and psycopg reads placeholders
        # only when given a mapping: always one, except for DDL (no parameters, no
        # escaping: None)
        return self.conn.execute(compiled.string.encode(),
                                 None if values is None else dict(values))
