"""Column types of the TC schema, one logical type per row of the reference's type table.

| logical      | PostgreSQL     | Oracle          |
|--------------|----------------|-----------------|
| jid / string | VARCHAR(n)     | VARCHAR2(n)     |
| long text    | TEXT           | CLOB            |
| counter      | BIGINT         | NUMBER(19)      |
| time         | TIMESTAMP      | TIMESTAMP       |

``VarString`` exists because SQLAlchemy renders ``String(n)`` on Oracle as
``VARCHAR2(n CHAR)``; IM&P's schema uses the default (byte) length semantics.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import TypeCompiler

JID_LENGTH = 3071


class VarString(sa.String):
    """VARCHAR(n) on PostgreSQL, VARCHAR2(n) on Oracle, NVARCHAR(n) on MS SQL."""

    __visit_name__ = "tc_varstring"

    def __init__(self, length: int) -> None:
        super().__init__(length)


@compiles(VarString)
def _varstring_default(type_: VarString, compiler: TypeCompiler, **kw: Any) -> str:
    return f"VARCHAR({type_.length})"


@compiles(VarString, "oracle")
def _varstring_oracle(type_: VarString, compiler: TypeCompiler, **kw: Any) -> str:
    return f"VARCHAR2({type_.length})"


@compiles(VarString, "mssql")
def _varstring_mssql(type_: VarString, compiler: TypeCompiler, **kw: Any) -> str:
    return f"NVARCHAR({type_.length})"


def jid() -> VarString:
    """A JID: VARCHAR(3071) / VARCHAR2(3071)."""
    return VarString(JID_LENGTH)


def short_string(length: int) -> VarString:
    return VarString(length)


def long_text() -> sa.Text:
    """TEXT on PostgreSQL, CLOB on Oracle (SQLAlchemy's own mapping)."""
    return sa.Text()


def counter() -> sa.BigInteger:
    """BIGINT on PostgreSQL, NUMBER(19) on Oracle."""
    return sa.BigInteger()


def timestamp() -> sa.TIMESTAMP:
    """TIMESTAMP on both (plain DateTime would be DATE on Oracle)."""
    return sa.TIMESTAMP()
