"""PostgreSQL through psycopg 3."""

from __future__ import annotations

from tcmerge.dialects.postgresql.adapter import DblinkFacts, PostgresAdapter

__all__ = ["DblinkFacts", "PostgresAdapter"]
