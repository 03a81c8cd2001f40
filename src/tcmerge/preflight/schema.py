"""Schema checks: each database against the model, and each source against the target;
and the schema of the merge itself (``merge_tables``): the inputs' live columns decide."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tcmerge.dialects.base import DialectAdapter
from tcmerge.preflight.context import Database
from tcmerge.results import Finding, error, info, warning
from tcmerge.schema.compare import (
    ColumnShape,
    LiveColumn,
    LiveTable,
    can_hold,
    compare_to_model,
    reflect,
    required_columns,
    shape_of,
    why_not_held,
)


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
    """What the merge moves, column by column (contract: "The schema of a merge"): a
    column both have, if the target's holds the source's values; a column only the
    source has, an error when it holds values (they would be lost), else a warning; a
    column only the target has, an error when it is NOT NULL without a default (nothing
    can fill it), else its default (or NULL) for that source's rows."""
    findings: list[Finding] = []
    for table in tables:
        src, dst = source.live.get(table.name), target.live.get(table.name)
        if src is None or dst is None:
            continue
        required = required_columns(table)
        for name, column in src.columns.items():
            into = dst.columns.get(name)
            if into is None:
                if name in required:
                    continue  # already reported against the model for the target
                findings.append(_lost_column(source, table.name, name))
                continue
            if not can_hold(into.shape, column.shape):
                fits = _values_fit(source, table.name, name, into.shape, column.shape)
                if fits is not None:
                    findings.append(warning(
                        "SCHEMA_TYPE_MISMATCH",
                        f"{table.name}.{name} is {column.shape} in {source.label} but "
                        f"{into.shape} in the target; every value it holds fits ({fits})",
                        database=source.label, table=table.name,
                        details={"column": name, "source": str(column.shape),
                                 "target": str(into.shape), "values_fit": True}))
                    continue
                findings.append(error(
                    "SCHEMA_TYPE_MISMATCH",
                    f"{table.name}.{name} is {column.shape} in {source.label} but "
                    f"{into.shape} in the target: {why_not_held(into.shape, column.shape)}",
                    database=target.label, table=table.name,
                    hint=f"widen the target column: ALTER TABLE {table.name} ALTER COLUMN "
                         f"{name} TYPE {column.shape} (PostgreSQL) / MODIFY (Oracle)",
                    details={"column": name, "source": str(column.shape),
                             "target": str(into.shape), "source_database": source.label}))
            elif _fraction_digits(into) < _fraction_digits(column):
                findings.extend(_rounded_times(source, table.name, name, into, column))
        for name, column in dst.columns.items():
            if name in src.columns or name in required:
                continue  # a required column missing is reported against the model
            if not column.nullable and not column.has_default:
                findings.append(error(
                    "SCHEMA_MISSING_COLUMN",
                    f"{table.name}.{name} is NOT NULL without a default in the target and "
                    f"{source.label} has no such column: its rows cannot be inserted",
                    database=source.label, table=table.name,
                    hint=f"add {table.name}.{name} to {source.label} with the values its rows "
                         "should have, or give the target's column a default",
                    details={"column": name, "target_database": target.label}))
            else:
                findings.append(info(
                    "SCHEMA_MISSING_COLUMN",
                    f"{table.name}.{name} is not in {source.label}: its rows get the "
                    f"target's {'default' if column.has_default else 'NULL'} there",
                    database=source.label, table=table.name,
                    details={"column": name, "required": False}))
    return findings


def _fraction_digits(column: LiveColumn) -> int:
    """The fractional digits of a time column's seconds, as reflected (PostgreSQL's
    ``timestamp(n)``; without a stated precision 6, also where the type tells none)."""
    if column.shape.kind not in ("timestamp", "timestamptz"):
        return 6
    precision = getattr(column.type_, "precision", None)
    return 6 if precision is None else int(precision)


def _rounded_times(source: Database, table: str, name: str, into: LiveColumn,
                   column: LiveColumn) -> list[Finding]:
    """A target time column with fewer fractional digits than the source's: an error when
    some value would be rounded, a warning that every value fits otherwise."""
    assert source.conn is not None
    value: sa.ColumnClause[Any] = sa.column(name)
    rounded = int(source.conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))
                                      .where(sa.cast(value, into.type_) != value)).scalar()
                  or 0)
    where = {"database": source.label, "table": table}
    details = {"column": name, "source": str(column.shape), "target": str(into.shape),
               "target_fraction_digits": _fraction_digits(into)}
    if rounded:
        return [error(
            "SCHEMA_TYPE_MISMATCH",
            f"{table}.{name} keeps {_fraction_digits(into)} fractional digits of a second in "
            f"the target: {rounded} value(s) of {source.label} would be rounded",
            hint=f"widen the target column: ALTER TABLE {table} ALTER COLUMN {name} TYPE "
                 f"{into.shape.kind}(6)", details={**details, "rounded": rounded}, **where)]
    return [warning(
        "SCHEMA_TYPE_MISMATCH",
        f"{table}.{name} keeps {_fraction_digits(into)} fractional digits of a second in the "
        f"target; every value of {source.label} fits", details=details, **where)]


#: the largest magnitude each integer kind holds (exclusive)
_INTEGER_LIMIT = {"smallint": 2 ** 15, "integer": 2 ** 31, "bigint": 2 ** 63}


def _values_fit(source: Database, table: str, name: str, into: ColumnShape,
                kind: ColumnShape) -> str | None:
    """Types by what they hold: when the target's column is narrower than the source's,
    whether every value the source holds still fits unchanged (a few words saying why),
    or None. Text into a shorter varchar by its longest value; numbers into a smaller
    integer by their range, and only whole numbers. Times with and without a time zone
    never (the values would shift)."""
    assert source.conn is not None
    column: sa.ColumnClause[Any] = sa.column(name)
    rows = sa.table(table)
    if into.kind == "varchar" and into.length and kind.kind in {"varchar", "char", "text"}:
        longest = source.conn.execute(sa.select(sa.func.max(sa.func.length(column)))
                                      .select_from(rows)).scalar()
        if longest is None or int(longest) <= into.length:
            return f"the longest is {int(longest or 0)} characters"
        return None
    if into.kind in _INTEGER_LIMIT and kind.kind in {*_INTEGER_LIMIT, "numeric"}:
        low, high, fractions = source.conn.execute(sa.select(
            sa.func.min(column), sa.func.max(column),
            sa.func.count(sa.case((column != sa.func.floor(column), 1))))
            .select_from(rows)).one()
        limit = _INTEGER_LIMIT[into.kind]
        if not fractions and (low is None or (-limit <= low and high < limit)):
            return "whole numbers" + ("" if low is None else f" from {low} to {high}")
    return None


def _lost_column(source: Database, table: str, name: str) -> Finding:
    """A source column the target lacks: an error if any row has a value in it."""
    assert source.conn is not None
    holds = bool(source.conn.execute(sa.select(sa.exists().where(
        sa.column(name).is_not(None)).select_from(sa.table(table)))).scalar())
    if holds:
        return error(
            "SCHEMA_EXTRA_COLUMN",
            f"{table}.{name} exists in {source.label} and holds values, but the target has "
            "no such column: they would be lost",
            database=source.label, table=table,
            hint=f"add the column to the target: ALTER TABLE {table} ADD COLUMN {name} ...",
            details={"column": name, "holds_values": True})
    return warning(
        "SCHEMA_EXTRA_COLUMN",
        f"{table}.{name} exists in {source.label} but not in the target; it holds no value, "
        "nothing is lost", database=source.label, table=table,
        details={"column": name, "holds_values": False})


def merge_tables(tables: Sequence[sa.Table], databases: Sequence[Database]
                 ) -> tuple[sa.Table, ...]:
    """The tables as this merge moves them: the target's live columns (the model's first,
    in the model's order, then the target's others), each with the type that crosses
    unchanged (the model's where the target's column is of its kind, else the target's
    own), and in ``info`` the inputs that lack it (``absent``: those rows get the target's
    ``default``, or NULL). A table the target lacks stays the model's (validation has
    refused the merge)."""
    target = databases[0]
    metadata = sa.MetaData()
    out: list[sa.Table] = []
    for model in tables:
        live = target.live.get(model.name)
        if live is None:
            out.append(model)
            continue
        names = [c.name for c in model.columns if c.name in live.columns]
        names += [n for n in live.columns if n not in model.c]
        columns = []
        for name in names:
            found = live.columns[name]
            known = model.c.get(name)
            kind = known.type if known is not None and shape_of(known.type) == found.shape \
                else found.type_
            absent = frozenset(i for i, db in enumerate(databases) if i and _lacks(
                db.live.get(model.name), name))
            columns.append(sa.Column(known.name if known is not None else name, kind,
                                     nullable=found.nullable,
                                     info={"absent": absent, "default": found.default}))
        out.append(sa.Table(model.name, metadata, *columns))
    return tuple(out)


def _lacks(live: LiveTable | None, name: str) -> bool:
    return live is not None and name not in live.columns
