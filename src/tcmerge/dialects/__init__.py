"""Dialect adapters: one class per database type, chosen from the URL scheme.

The table below is explicit (no registration by import side effect): a name maps
to ``module:Class`` and the module is imported only when asked. Dialects tcmerge
refuses for merging are listed with their reason in ``tcmerge.dburl``.
Nothing outside this package branches on the database type: callers read the
adapter's capability flags and call its hooks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tcmerge.dburl import MERGEABLE, REFUSED_FOR_MERGE, DatabaseRef
from tcmerge.errors import UnsupportedDatabaseError

if TYPE_CHECKING:
    from tcmerge.dialects.base import DialectAdapter

#: dialect name (the URL scheme's backend) -> "module:Class"
ADAPTERS: dict[str, str] = {
    "postgresql": "tcmerge.dialects.postgresql:PostgresAdapter",
    "oracle": "tcmerge.dialects.oracle:OracleAdapter",
}


def adapter_class(dialect: str) -> type[DialectAdapter]:
    """The adapter class for a dialect name; refused and unknown names raise (exit 2)."""
    if dialect in REFUSED_FOR_MERGE:
        raise UnsupportedDatabaseError(REFUSED_FOR_MERGE[dialect])
    try:
        module_name, class_name = ADAPTERS[dialect].split(":")
    except KeyError:
        raise UnsupportedDatabaseError(
            f"database type {dialect!r} is not supported; tcmerge merges "
            f"{' and '.join(MERGEABLE)} databases"
        ) from None
    cls: type[DialectAdapter] = getattr(importlib.import_module(module_name), class_name)
    return cls


def known_adapter(dialect: str) -> DialectAdapter | None:
    """The adapter of a dialect tcmerge merges, or None (MS SQL, which topologies may
    name for HA, and unknown names): for code that serves any database it can reach."""
    return adapter_class(dialect)() if dialect in ADAPTERS else None


def adapter_for(ref: DatabaseRef | str) -> DialectAdapter:
    """An adapter instance for a database (or a dialect name)."""
    dialect = ref if isinstance(ref, str) else ref.dialect
    return adapter_class(dialect)()


__all__ = ["ADAPTERS", "adapter_class", "adapter_for", "known_adapter"]
