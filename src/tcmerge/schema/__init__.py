"""The schema model: TC tables (``tc``) and tcmerge's own tables (``bookkeeping``)."""

from __future__ import annotations

from tcmerge.schema import bookkeeping, tc
from tcmerge.schema.tc import ALL_TABLES, TC_TABLES, tables_for

__all__ = ["ALL_TABLES", "TC_TABLES", "bookkeeping", "tables_for", "tc"]
