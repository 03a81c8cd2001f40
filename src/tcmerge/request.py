"""What the user asked validate/run to do: plain data, built by the CLI or by callers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tcmerge.dburl import DatabaseRef, require_mergeable
from tcmerge.errors import ConfigError
from tcmerge.schema import tc

TRANSPORTS = ("dblink", "copy")


@dataclass(frozen=True)
class MergeRequest:
    """Sources and target of a merge, with options. Inputs in contract order.

    ``services`` maps node name to the state of its Text Conference service, as
    the topology declares it (empty when no topology was given).
    """

    sources: tuple[DatabaseRef, ...]
    target: DatabaseRef
    tables: tuple[sa.Table, ...] = tc.TC_TABLES
    strict: bool = False
    transport: str | None = None
    snapshot: bool = True
    dry_run: bool = False
    group: str | None = None
    services: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("give at least one --source")
        if self.transport is not None and self.transport not in TRANSPORTS:
            raise ConfigError(
                f"--transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}"
            )

    @property
    def databases(self) -> tuple[DatabaseRef, ...]:
        """Every database named: target first, then the sources (duplicates kept)."""
        return (self.target, *self.sources)

    def check_dialects(self) -> str:
        """Refuse MS SQL / unknown / mixed types before any connection (exit 2)."""
        return require_mergeable(self.databases)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for ref in self.databases for s in ref.secrets)

    def describe(self) -> dict[str, Any]:
        """The request without passwords, as stored in job records."""
        return {
            "target": self.target.label,
            "sources": [ref.label for ref in self.sources],
            "tables": [t.name for t in self.tables],
            "strict": self.strict,
            "transport": self.transport,
            "snapshot": self.snapshot,
            "dry_run": self.dry_run,
            "group": self.group,
        }
