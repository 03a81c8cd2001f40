"""Compare a live database's TC schema with the model, and column types with each other.

``reflect`` reads what a server has; ``compare_to_model`` turns the differences
into findings; ``can_hold`` says whether a column can receive every value of
another (used for source-versus-target checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import oracle as sa_oracle

from tcmerge.results import Finding, error, info, warning


@dataclass(frozen=True)
class ColumnShape:
    """A column type reduced to what matters for moving data: its kind and length.

    kinds: varchar, char, text, smallint, integer, bigint, numeric, timestamp,
    timestamptz (with time zone), date, other.
    """

    kind: str
    length: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}({self.length})" if self.length is not None else self.kind


_TEXT_TYPES: tuple[type[sa.types.TypeEngine[Any]], ...] = (
    sa.Text,
    sa_oracle.CLOB,
    sa_oracle.NCLOB,
    sa_oracle.LONG,
)


def shape_of(type_: sa.types.TypeEngine[object]) -> ColumnShape:
    """Classify a model or reflected type."""
    if isinstance(type_, _TEXT_TYPES):
        return ColumnShape("text")
    if isinstance(type_, (sa.CHAR, sa.NCHAR)):
        return ColumnShape("char", type_.length)
    if isinstance(type_, sa.String):
        return ColumnShape("varchar", type_.length) if type_.length else ColumnShape("text")
    if isinstance(type_, sa.BigInteger):
        return ColumnShape("bigint")
    if isinstance(type_, sa.SmallInteger):
        return ColumnShape("smallint")
    if isinstance(type_, sa.Numeric):  # before Integer: Oracle NUMBER derives from both
        # Oracle NUMBER(p,0): sized by its precision. A NUMBER / numeric with neither
        # precision nor scale holds fractions and any magnitude: no integer kind.
        precision, scale = type_.precision, type_.scale
        if precision is None and scale is None:
            return ColumnShape("numeric")
        if not scale:
            if precision is not None and precision <= 4:
                return ColumnShape("smallint")
            if precision is not None and precision <= 9:
                return ColumnShape("integer")
            if precision is not None and precision <= 19:
                return ColumnShape("bigint")
            if precision is None or precision <= 38:
                # NUMBER(*,0) / NUMBER(38) / Oracle INTEGER hold every BIGINT value
                return ColumnShape("bigint")
        return ColumnShape("numeric", precision)
    if isinstance(type_, sa.Integer):
        return ColumnShape("integer")
    if isinstance(type_, sa_oracle.DATE):
        return ColumnShape("date")
    if isinstance(type_, (sa.DateTime, sa.TIMESTAMP)):
        # with a time zone, a value read as the model's timestamp is shifted to the
        # session's zone: another kind, held by neither
        return ColumnShape("timestamptz" if type_.timezone else "timestamp")
    if isinstance(type_, sa.Date):
        return ColumnShape("date")
    return ColumnShape("other")


def why_not_held(target: ColumnShape, source: ColumnShape) -> str:
    """Why ``target`` cannot hold ``source``'s values (see ``can_hold``), in a few words."""
    if "timestamptz" in {target.kind, source.kind}:
        return "with and without a time zone, the values would be shifted"
    return "values may not fit"


_INTEGER_RANK = {"smallint": 1, "integer": 2, "bigint": 3}


def can_hold(target: ColumnShape, source: ColumnShape) -> bool:
    """True when every value of a ``source`` column fits a ``target`` column unchanged."""
    if target.kind == "text":
        return source.kind in {"text", "varchar", "char"}
    if target.kind in {"varchar", "char"}:
        if source.kind not in {"varchar", "char"}:
            return False
        if target.kind == "char" and source.kind == "varchar":
            return False  # CHAR pads: not byte-identical
        return target.length is None or (
            source.length is not None and source.length <= target.length
        )
    if target.kind in _INTEGER_RANK:
        return source.kind in _INTEGER_RANK and _INTEGER_RANK[source.kind] <= _INTEGER_RANK[
            target.kind
        ]
    if target.kind == "timestamp":
        return source.kind in {"timestamp", "date"}
    if target == ColumnShape("numeric"):  # unconstrained: every integer and numeric
        return source.kind in _INTEGER_RANK or source.kind == "numeric"
    return target == source


@dataclass
class LiveColumn:
    name: str
    shape: ColumnShape
    nullable: bool
    has_default: bool
    #: the reflected type and default expression (SQL text), as the server reports them
    type_: sa.types.TypeEngine[Any] = field(default_factory=sa.types.NullType)
    default: str | None = None


#: Columns every input must have: those Cisco's table chapter confirms (all of tc_rooms;
#: five of tc_users; aft_log's nine documented columns) and those the merge rules key on
#: (rooms, msg_id, the dates, aft_index). Every other column of the model is assumed
#: (tc-schema.md's "(A)"): where a database lacks one, it is not merged there.
REQUIRED_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "tc_rooms": None,  # all of them
    "tc_users": ("room_jid", "real_jid", "role", "affiliation", "nick_jid"),
    "tc_msgarchive": ("msg_id", "to_jid", "sent_date"),
    "tc_messages": ("msg_id", "room_jid", "stamp"),
    "tc_timelog": ("room_jid",),
    "jm": (),
    "aft_log": ("aft_index", "jid", "to_jid", "method", "filename", "real_filename",
                "file_type", "chat_type", "file_server", "timestampvalue"),
}
#: kinds of values a rule computes with: a required column of another family is refused
_FAMILIES = ({"smallint", "integer", "bigint", "numeric"}, {"timestamp", "timestamptz", "date"},
             {"varchar", "char", "text"})


def required_columns(table: sa.Table) -> set[str]:
    names = REQUIRED_COLUMNS.get(table.name)
    return {c.name for c in table.columns} if names is None else set(names)


def same_family(a: ColumnShape, b: ColumnShape) -> bool:
    return any(a.kind in f and b.kind in f for f in _FAMILIES) or a == b


@dataclass
class LiveTable:
    name: str
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    check_names: frozenset[str] = frozenset()


def reflect(conn: sa.Connection, tables: Iterable[sa.Table]) -> dict[str, LiveTable]:
    """What the server has for the given model tables (absent tables are left out).

    The inspector's ``get_multi_*`` calls read every table in one catalog query each
    (four catalog queries per PostgreSQL database instead of about fifty).
    """
    inspector = sa.inspect(conn)
    names = [t.name for t in tables]
    columns = {key[1]: cols for key, cols in inspector.get_multi_columns(
        filter_names=names).items()}
    keys = {key[1]: pk for key, pk in inspector.get_multi_pk_constraint(
        filter_names=names).items()}
    try:
        checks = {key[1]: found for key, found in inspector.get_multi_check_constraints(
            filter_names=names).items()}
    except NotImplementedError:
        checks = {}
    live: dict[str, LiveTable] = {}
    for name in names:
        if name not in columns:
            continue
        key = keys.get(name)
        pk = (key.get("constrained_columns") if key else None) or []
        live[name] = LiveTable(
            name,
            {col["name"].lower(): LiveColumn(
                name=col["name"].lower(),
                shape=shape_of(col["type"]),
                nullable=bool(col["nullable"]),
                has_default=col.get("default") is not None,
                type_=col["type"],
                default=col.get("default"),
            ) for col in columns[name]},
            tuple(c.lower() for c in pk),
            frozenset((c.get("name") or "").lower() for c in checks.get(name, [])),
        )
    return live


def compare_to_model(
    live: dict[str, LiveTable], tables: Iterable[sa.Table], database: str | None,
    *, source: bool = False,
) -> list[Finding]:
    """Findings for every difference between a live schema and the model tables.

    A column of another type is an error where values cannot move unchanged: into it
    (it cannot hold the model's values), or, for a ``source`` (only read), out of it
    (the model cannot hold its values); otherwise a warning."""
    findings: list[Finding] = []
    for table in tables:
        found = live.get(table.name)
        if found is None:
            findings.append(
                error(
                    "SCHEMA_MISSING_TABLE",
                    f"table {table.name} does not exist",
                    database=database,
                    table=table.name,
                    hint="assign the database to an IM and Presence node so that it creates "
                    "its schema, or run: tcmerge schema upgrade DB",
                )
            )
            continue
        findings.extend(_compare_table(found, table, database, source))
    return findings


def _compare_table(found: LiveTable, table: sa.Table, database: str | None,
                   source: bool = False) -> list[Finding]:
    """One database's table against the model. Only what no merge could work around is an
    error here: a required column missing, or of a kind the rules cannot compute with.
    Everything else is judged between the inputs (``tcmerge.preflight.schema``): an
    assumed column a database lacks, another type that holds the values, an extra
    column (carried through where the target has it)."""
    findings: list[Finding] = []
    where = {"database": database, "table": table.name}
    required = required_columns(table)
    for column in table.columns:
        model_shape = shape_of(column.type)
        live_col = found.columns.get(column.name)
        if live_col is None:
            if column.name not in required:
                findings.append(info(
                    "SCHEMA_MISSING_COLUMN",
                    f"column {table.name}.{column.name} ({model_shape}) is not here; an "
                    "assumed column, not merged where the target lacks it",
                    details={"column": column.name, "expected": str(model_shape),
                             "required": False}, **where))
                continue
            findings.append(
                error(
                    "SCHEMA_MISSING_COLUMN",
                    f"column {table.name}.{column.name} ({model_shape}) is missing",
                    hint=f"add the column {column.name} as in the model "
                    "(tcmerge schema sql shows the DDL)",
                    details={"column": column.name, "expected": str(model_shape),
                             "required": True},
                    **where,
                )
            )
            continue
        if live_col.shape != model_shape:
            into, out_of = ((model_shape, live_col.shape) if source
                            else (live_col.shape, model_shape))
            unusable = column.name in required and not same_family(live_col.shape,
                                                                   model_shape)
            holds = can_hold(into, out_of)
            findings.append(
                (error if unusable else warning)(
                    "SCHEMA_TYPE_MISMATCH",
                    f"column {table.name}.{column.name} is {live_col.shape}, the model has "
                    f"{model_shape}"
                    + (": the merge rules cannot compute with it" if unusable else
                       "" if holds else f" ({why_not_held(into, out_of)}); values are "
                       "judged against the other inputs' columns"),
                    details={
                        "column": column.name,
                        "expected": str(model_shape),
                        "actual": str(live_col.shape),
                    },
                    **where,
                )
            )
        if live_col.nullable != column.nullable:
            findings.append(
                warning(
                    "SCHEMA_NULLABILITY_MISMATCH",
                    f"column {table.name}.{column.name} is "
                    f"{'NULL' if live_col.nullable else 'NOT NULL'}, the model has "
                    f"{'NULL' if column.nullable else 'NOT NULL'}",
                    details={"column": column.name},
                    **where,
                )
            )
    model_names = {c.name for c in table.columns}
    for name, live_col in found.columns.items():
        if name in model_names:
            continue
        findings.append(info(
            "SCHEMA_EXTRA_COLUMN",
            f"column {table.name}.{name} ({live_col.shape}) is not in the model; merged "
            "where the target has it"
            + ("" if live_col.nullable or live_col.has_default else
               " (NOT NULL without a default: every source must have it)"),
            details={"column": name}, **where))
    model_pk = tuple(c.name for c in table.primary_key.columns)
    if model_pk and found.primary_key != model_pk:
        findings.append(
            info(
                "SCHEMA_KEY_MISMATCH",
                f"{table.name} has primary key ({', '.join(found.primary_key) or 'none'}), "
                f"the model has ({', '.join(model_pk)})",
                **where,
            )
        )
    for constraint in table.constraints:
        if (
            isinstance(constraint, sa.CheckConstraint)
            and constraint.name
            and str(constraint.name).lower() not in found.check_names
        ):
                findings.append(
                    info(
                        "SCHEMA_MISSING_CONSTRAINT",
                        f"{table.name} has no check constraint {constraint.name}; values are "
                        "checked by validation instead",
                        **where,
                    )
                )
    return findings
