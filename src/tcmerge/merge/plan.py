"""The merge as plain data: per table the rule that applies, and the exact counts.

A ``MergePlan`` is built before any data moves (which inputs, which rule per
table, which transport) and filled with exact counts by the analysis, so that
``run --dry-run`` and ``validate`` can show exactly what a run would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tcmerge.results import Finding, blocking, sort_findings


@dataclass(frozen=True)
class TableRule:
    """How one table is merged (contract rules 1 to 6)."""

    table: str
    key: tuple[str, ...]
    owner: str
    duplicates: str
    renumbering: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": list(self.key),
            "owner": self.owner,
            "duplicates": self.duplicates,
            "renumbering": self.renumbering,
        }


_SAME_BUT_ID = "a later input's row equal to a present row in every column but {id}"

RULES: dict[str, TableRule] = {
    "tc_rooms": TableRule(
        "tc_rooms", ("room_jid",),
        "one row per room, from its owner (the first input holding the room); "
        "counters repaired (next_msg_id above every id and never below the owner's, "
        "start_msg_id the lowest id kept)",
        "rows equal to the owner's except for the counters",
        None,
    ),
    "tc_users": TableRule(
        "tc_users", ("room_jid", "real_jid"),
        "the owner's row wins; an outcast from any input beats a non-outcast source row; "
        "target rows are never altered",
        "identical rows collapse",
        None,
    ),
    "tc_msgarchive": TableRule(
        "tc_msgarchive", ("to_jid", "msg_id"),
        "the owner's rows keep their ids",
        _SAME_BUT_ID.format(id="msg_id"),
        "other inputs' rows of a shared room get ids above the room's highest id, in "
        "(sent_date, input order, old msg_id) order",
    ),
    "tc_messages": TableRule(
        "tc_messages", ("room_jid", "msg_id"),
        "the owner's rows keep their ids",
        _SAME_BUT_ID.format(id="msg_id"),
        "the archive's id mapping; ids without an archive row are numbered with them",
    ),
    "tc_timelog": TableRule(
        "tc_timelog", (), "union", "rows equal in every column", None,
    ),
    "jm": TableRule("jm", (), "union", "rows equal in every column", None),
    "aft_log": TableRule(
        "aft_log", ("aft_index",),
        "rows keep their aft_index unless it is already taken",
        _SAME_BUT_ID.format(id="aft_index"),
        "colliding aft_index values get new ones above the highest, in "
        "(timestampvalue, input order, old aft_index) order",
    ),
}


@dataclass
class TableCounts:
    """Exact counts for one table. ``read[0]`` is the target's existing rows (input 0),
    ``read[i]`` the rows of source i. Every source row is inserted, a duplicate or a
    conflict (a different row that lost to the owner's or to a ban)."""

    table: str
    read: list[int]
    inserted: int = 0
    duplicates: int = 0
    renumbered: int = 0
    conflicts: int = 0
    updated: int = 0

    @property
    def source_rows(self) -> int:
        return sum(self.read[1:])

    @property
    def accounted(self) -> bool:
        return self.source_rows == self.inserted + self.duplicates + self.conflicts

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "read": list(self.read),
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "renumbered": self.renumbered,
            "conflicts": self.conflicts,
        }
        if self.table == "tc_rooms":
            record["counters_updated"] = self.updated
        return record

    @classmethod
    def from_dict(cls, table: str, data: dict[str, Any]) -> TableCounts:
        return cls(
            table=table,
            read=[int(x) for x in data.get("read", [])],
            inserted=int(data.get("inserted", 0)),
            duplicates=int(data.get("duplicates", 0)),
            renumbered=int(data.get("renumbered", 0)),
            conflicts=int(data.get("conflicts", 0)),
            updated=int(data.get("counters_updated", 0)),
        )


@dataclass
class MergePlan:
    """Inputs (target first), transport, the rule per table, and (after analysis) counts."""

    inputs: list[str]
    transport: str
    tables: list[str]
    counts: dict[str, TableCounts] = field(default_factory=dict)
    #: the sources (1-based) that are the target itself, not read again
    #: (``dialect_merge.target_mirrors``)
    mirrors: frozenset[int] = frozenset()

    @property
    def rules(self) -> list[TableRule]:
        return [RULES[name] for name in self.tables]

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "transport": self.transport,
            "tables": [
                {**RULES[name].as_dict(),
                 **({"counts": self.counts[name].as_dict()} if name in self.counts else {})}
                for name in self.tables
            ],
        }


@dataclass
class MergeResult:
    """What ``run_merge`` / ``analyse_merge`` return; ``as_dict`` is the contract's JSON."""

    status: str  # succeeded | dry-run | validated | refused | verification-failed
    findings: list[Finding] = field(default_factory=list)
    plan: MergePlan | None = None
    job_id: str | None = None
    strict: bool = False
    elapsed: float = 0.0
    verification: list[Finding] = field(default_factory=list)
    snapshot: dict[str, str] = field(default_factory=dict)
    #: seconds per phase (stage, analyse, snapshot, apply, verify, commit)
    timings: dict[str, float] = field(default_factory=dict)
    #: what ``api.run`` did to the topology file after a successful run
    topology_assignment: dict[str, Any] | None = None
    #: findings made after the commit: shown, but they cannot undo the merge (not in ``ok``)
    after_commit: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in {"succeeded", "dry-run", "validated"} and not blocking(
            [*self.findings, *self.verification], strict=self.strict
        )

    @property
    def rows_read(self) -> int:
        if self.plan is None:
            return 0
        return sum(c.source_rows for c in self.plan.counts.values())

    def as_dict(self) -> dict[str, Any]:
        rate = self.rows_read / self.elapsed if self.elapsed > 0 else 0.0
        record: dict[str, Any] = {
            "ok": self.ok,
            "job_id": self.job_id,
            "status": self.status,
            "findings": [f.as_dict() for f in sort_findings(
                [*self.findings, *self.verification, *self.after_commit])],
            "tables": {} if self.plan is None else {
                name: counts.as_dict() for name, counts in self.plan.counts.items()
            },
            "elapsed_seconds": round(self.elapsed, 3),
            "rows_per_second": round(rate, 1),
        }
        if self.plan is not None:
            record["inputs"] = list(self.plan.inputs)
            record["transport"] = self.plan.transport
            record["plan"] = self.plan.as_dict()["tables"]
        if self.snapshot:
            record["snapshot"] = dict(self.snapshot)
        if self.timings:
            record["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        if self.topology_assignment is not None:
            record["topology"] = dict(self.topology_assignment)
        return record
