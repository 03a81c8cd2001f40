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
