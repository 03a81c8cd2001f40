"""What the user asked validate/run to do: plain data, built by the CLI or by callers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tcmerge.dburl import DatabaseRef, parse_database, require_mergeable, same_place
from tcmerge.errors import ConfigError
from tcmerge.schema import tables_for, tc

if TYPE_CHECKING:
    from tcmerge.topology import Topology

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
    #: the topology file the request came from (the merged target is assigned there)
    topology: str | None = None
    #: let the target's triggers and rules on the merged tables fire on the merge's
    #: writes (refused by default: TRIGGER_ON_MERGED_TABLE)
    allow_triggers: bool = False

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

    def sources_named_as_target(self) -> frozenset[int]:
        """The sources (1-based) whose URL, password and driver aside, is the target's:
        the target named among the sources as far as the names tell, without connecting
        (``run --sql``; a run asks the servers: ``dialect_merge.target_mirrors``)."""
        return frozenset(i for i, ref in enumerate(self.sources, 1)
                         if same_place(ref.url, self.target.url))

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
            "topology": self.topology,
            "allow_triggers": self.allow_triggers,
        }


def resolve_database(text: str, topology: Topology | None,
                     environ: Mapping[str, str] | None = None) -> DatabaseRef:
    """A database argument: a URL, or the name of a database declared in the topology."""
    if "://" in text or topology is None:
        return parse_database(text)
    return topology.database_ref(text, environ)


def build_request(
    sources: Sequence[str],
    target: str | None,
    *,
    topology: str | None = None,
    group: str | None = None,
    tables: str = "tc",
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> MergeRequest:
    """A MergeRequest from command-line style arguments; no connection is made.

    With ``topology`` and ``group`` the sources default to the databases assigned
    to the group's nodes and the Text Conference service states come from the
    nodes; database names resolve through the topology's ``databases`` table
    (passwords from the variables its ``password_env`` names, in ``environ``).
    """
    from tcmerge.topology import load_topology

    if group is not None and topology is None:
        raise ConfigError("--group needs --topology FILE")
    topo = load_topology(topology) if topology is not None else None
    services: dict[str, str] = {}
    if topo is not None and group is not None:
        services = topo.stated_text_conference_states(group)
        if not sources:
            sources = topo.group_sources(group)
    if topo is not None and group is None and not sources:
        raise ConfigError("with --topology give --group NAME (or --source)")
    if target is None:
        raise ConfigError("give --target")
    return MergeRequest(
        sources=tuple(resolve_database(s, topo, environ) for s in sources),
        target=resolve_database(target, topo, environ),
        tables=tables_for(tables),
        group=group,
        services=services,
        topology=topology,
        **options,
    )
