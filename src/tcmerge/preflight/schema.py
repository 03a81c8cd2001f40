"""Schema checks: each database against the model, and each source against the target."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from tcmerge.dialects.base import DialectAdapter
from tcmerge.preflight.context import Database
from tcmerge.results import Finding, error, warning
from tcmerge.schema.compare import can_hold, compare_to_model, reflect, why_not_held


def schema_findings(adapter: DialectAdapter, databases: Sequence[Database],
                    tables: Sequence[sa.Table]) -> list[Finding]:
    findings: list[Finding] = []
    for n, db in enumerate(databases):
        if not db.connected or db.same_as is not None:
            if db.same_as is not None:
                db.live = db.same_as.live
            continue
        assert db.conn is not None
        db.live = reflect(db.conn, tables)
        # a source is only read: a narrower column than the model's is no obstacle
        for finding in compare_to_model(db.live, tables, db.label, source=n > 0):
            if finding.code == "SCHEMA_MISSING_TABLE" and db.facts is not None:
                # a table the session does not see may still be elsewhere in the database
                finding = adapter.missing_table(db.conn, db.facts, finding)
            findings.append(finding)
    target = databases[0]
    if not target.connected:
        return findings
    for source in databases[1:]:
        if not source.connected or source.same_as is target:
            continue
        findings.extend(_against_target(source, target, tables))
    return findings


def _against_target(source: Database, target: Database,
                    tables: Sequence[sa.Table]) -> list[Finding]:
    findings: list[Finding] = []
    for table in tables:
        src, dst = source.live.get(table.name), target.live.get(table.name)
        if src is None or dst is None:
            continue
        for name, column in src.columns.items():
            into = dst.columns.get(name)
            if into is None:
                if name in table.columns:
                    continue  # already reported against the model for the target
                findings.append(warning(
                    "SCHEMA_EXTRA_COLUMN",
                    f"{table.name}.{name} exists in the source but not in the target; its "
                    "values are not merged",
                    database=source.label, table=table.name, details={"column": name}))
                continue
            if not can_hold(into.shape, column.shape):
                findings.append(error(
                    "SCHEMA_TYPE_MISMATCH",
                    f"{table.name}.{name} is {column.shape} in {source.label} but "
                    f"{into.shape} in the target: {why_not_held(into.shape, column.shape)}",
                    database=target.label, table=table.name,
                    hint=f"widen the target column: ALTER TABLE {table.name} ALTER COLUMN "
                         f"{name} TYPE {column.shape} (PostgreSQL) / MODIFY (Oracle)",
                    details={"column": name, "source": str(column.shape),
                             "target": str(into.shape), "source_database": source.label}))
    return findings
