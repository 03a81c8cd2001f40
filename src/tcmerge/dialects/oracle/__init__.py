"""Oracle through python-oracledb in thin mode (no Oracle client libraries)."""

from __future__ import annotations

from tcmerge.dialects.oracle.adapter import OracleAdapter, link_kind

__all__ = ["OracleAdapter", "link_kind"]
