"""Source-side data scans: values breaking the model's constraints and invalid bytes.

Both run inside the source server and bring back only the offending rows' keys
(at most ``SAMPLE`` of them) and counts; for a SQL_ASCII source the rows holding
bytes >= 0x80 are streamed and decoded with the target's encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tcmerge.db import server_reason
from tcmerge.dialects.base import DialectAdapter
from tcmerge.preflight.context import Database
from tcmerge.results import Finding, error, warning

SAMPLE = 20


def _key_columns(table: sa.Table) -> list[sa.Column[Any]]:
    pk = list(table.primary_key.columns)
    return pk or list(table.columns)[:3]


def _key_exprs(adapter: DialectAdapter,
               keys: Sequence[sa.ColumnElement[Any]]) -> list[sa.ColumnElement[Any]]:
    """Key columns as selected: text as its stored bytes (it may not decode)."""
    return [adapter.raw_bytes(k) if isinstance(k.type, sa.String) else k for k in keys]


def _decode_key(value: Any, codec: str | None = None) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(codec or "utf-8", errors="backslashreplace")
    return str(value)


def _live_table(table: sa.Table, db: Database) -> sa.TableClause | None:
    """The model table restricted to the columns the database has (None if absent)."""
    live = db.live.get(table.name)
    if live is None:
        return None
    return sa.table(table.name, *[sa.column(c.name, c.type) for c in table.columns
                                  if c.name in live.columns])


def invalid_values(adapter: DialectAdapter, db: Database,
                   tables: Sequence[sa.Table]) -> list[Finding]:
    """INVALID_VALUE: rows that break a check constraint or a NOT NULL of the model."""
    assert db.conn is not None
    findings: list[Finding] = []
    for table in tables:
        t = _live_table(table, db)
        live = db.live.get(table.name)
        if t is None or live is None:
            continue
        keys = [t.c[c.name] for c in _key_columns(table) if c.name in t.c]
        conditions: list[tuple[str, sa.ColumnElement[bool]]] = []
        for constraint in table.constraints:
            if isinstance(constraint, sa.CheckConstraint):
                names = [c.name for c in table.columns if c.name in str(constraint.sqltext)]
                if all(n in t.c for n in names):
                    expr = sa.literal_column(f"({constraint.sqltext})", sa.Boolean)
                    conditions.append((f"check {constraint.name} ({constraint.sqltext})",
                                       sa.not_(expr)))
        for column in table.columns:
            if not column.nullable and column.name in live.columns \
                    and live.columns[column.name].nullable:
                conditions.append((f"{column.name} is NULL", t.c[column.name].is_(None)))
        for rule, condition in conditions:
            try:
                with db.conn.begin_nested():
                    count = db.conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(condition)).scalar()
                    rows = db.conn.execute(sa.select(*_key_exprs(adapter, keys))
                                           .where(condition).limit(SAMPLE)).all() if count else []
            except sa.exc.DBAPIError as exc:
                findings.append(_check_skipped(db, table, rule, exc))
                continue
            if count:
                sample = [dict(zip([k.name for k in keys], map(_decode_key, r), strict=True))
                          for r in rows]
                findings.append(error(
                    "INVALID_VALUE",
                    f"{count} row(s) of {table.name} break the model's rule: {rule}",
                    database=db.label, table=table.name, count=int(count),
                    hint="correct or delete these rows in the source before merging",
                    details={"rule": rule, "keys": sample}))
    return findings


def _check_skipped(db: Database, table: sa.Table, rule: str,
                   exc: sa.exc.DBAPIError) -> Finding:
    """A value rule that could not be checked (privileges are reported separately)."""
    return warning("VALUE_CHECK_SKIPPED",
                   f"could not check {table.name} for {rule}: {server_reason(exc, db.ref)}",
                   database=db.label, table=table.name,
                   hint="grant SELECT on the table, or check the rule by hand")


def duplicate_keys(adapter: DialectAdapter, db: Database,
                   tables: Sequence[sa.Table]) -> list[Finding]:
    """INVALID_VALUE: rows sharing the model's primary key, in a table whose own primary
    key is another (or none): the target's key would refuse them half-way through."""
    assert db.conn is not None
    findings: list[Finding] = []
    for table in tables:
        t = _live_table(table, db)
        live = db.live.get(table.name)
        names = [c.name for c in table.primary_key.columns]
        if t is None or live is None or not names or set(live.primary_key) == set(names) \
                or not all(n in t.c for n in names):
            continue
        keys = [t.c[n] for n in names]
        groups = (sa.select(*keys, sa.func.count().label("rows")).group_by(*keys)
                  .having(sa.func.count() > 1).subquery())
        rule = f"one row per primary key ({', '.join(names)})"
        try:
            with db.conn.begin_nested():
                found = db.conn.execute(sa.select(
                    sa.func.count(), sa.func.sum(groups.c.rows)).select_from(groups)).one()
                sample = db.conn.execute(sa.select(*_key_exprs(
                    adapter, [groups.c[n] for n in names])).limit(SAMPLE)).all() \
                    if found[0] else []
        except sa.exc.DBAPIError as exc:
            findings.append(_check_skipped(db, table, rule, exc))
            continue
        if found[0]:
            findings.append(error(
                "INVALID_VALUE",
                f"{int(found[1])} row(s) of {table.name} share their key with another row "
                f"({int(found[0])} key(s)); the model allows {rule}",
                database=db.label, table=table.name, count=int(found[1]),
                hint="keep one row per key in the source before merging (its table has no "
                     "such primary key, so the database did not prevent the copies)",
                details={"rule": rule, "keys": [
                    dict(zip(names, map(_decode_key, r), strict=True)) for r in sample]}))
    return findings


def invalid_encoding(adapter: DialectAdapter, source: Database, target: Database,
                     tables: Sequence[sa.Table]) -> list[Finding]:
    """INVALID_ENCODING: bytes of a source that are not valid in the target's encoding."""
    assert source.conn is not None and source.facts is not None and target.facts is not None
    problem = adapter.conversion_problem(source.conn, source.facts, target.facts)
    if problem is not None:
        return [error(
            "INVALID_ENCODING",
            f"{source.label} is {source.facts.encoding} and the target "
            f"{target.facts.encoding}: the server cannot convert between them ({problem})",
            database=source.label,
            hint=f"merge into a UTF8 target, or into a {source.facts.encoding} one")]
    codec = adapter.encoding_scan_codec(source.facts, target.facts)
    if codec is None:
        return []
    stored = adapter.stored_codec(source.facts)
    if codec == "?":
        return [warning(
            "INVALID_ENCODING",
            f"{source.label} is {source.facts.encoding} and the target "
            f"{target.facts.encoding}: tcmerge cannot check these bytes",
            database=source.label)]
    findings: list[Finding] = []
    text_kinds = {"text", "varchar", "char"}
    for table in tables:
        t = _live_table(table, source)
        live = source.live.get(table.name)
        if t is None or live is None:
            continue
        texts = [t.c[c.name] for c in table.columns
                 if c.name in t.c and live.columns[c.name].shape.kind in text_kinds]
        if not texts:
            continue
        keys = [t.c[c.name] for c in _key_columns(table) if c.name in t.c]
        query = sa.select(*_key_exprs(adapter, keys),
                          *[adapter.raw_bytes(c) for c in texts]).where(
            sa.or_(*[adapter.has_high_bytes(c) for c in texts]))
        bad = 0
        sample: list[dict[str, Any]] = []
        columns_hit: set[str] = set()
        result = source.conn.execution_options(yield_per=1000).execute(query)
        for row in result:
            values = row[len(keys):]
            wrong = []
            for column, value in zip(texts, values, strict=True):
                if value is None:
                    continue
                try:
                    if stored is None:
                        bytes(value).decode(codec)
                    else:
                        bytes(value).decode(stored).encode(codec)
                except UnicodeError:
                    wrong.append(column.name)
            if wrong:
                bad += 1
                columns_hit.update(wrong)
                if len(sample) < SAMPLE:
                    key = dict(zip([k.name for k in keys],
                                   [_decode_key(v, stored) for v in row[:len(keys)]],
                                   strict=True))
                    sample.append({"key": key, "columns": wrong})
        result.close()
        if bad and stored is not None:
            findings.append(error(
                "INVALID_ENCODING",
                f"{bad} row(s) of {table.name} hold characters that {target.facts.encoding} "
                f"(the target's encoding) cannot hold (source encoding "
                f"{source.facts.encoding}) in {', '.join(sorted(columns_hit))}",
                database=source.label, table=table.name, count=bad,
                hint="change or delete these values in the source, or merge into a target "
                     "whose encoding holds them (UTF8 holds every character)",
                details={"keys": sample, "columns": sorted(columns_hit)}))
        elif bad:
            findings.append(error(
                "INVALID_ENCODING",
                f"{bad} row(s) of {table.name} hold bytes that are not valid "
                f"{target.facts.encoding} (source encoding {source.facts.encoding}) in "
                f"{', '.join(sorted(columns_hit))}",
                database=source.label, table=table.name, count=bad,
                # the stored bytes, converted, stored back as they are: in a SQL_ASCII
                # database convert_from(x, 'LATIN1') alone changes nothing
                hint=f"re-encode these values in the source (if they are Latin-1: UPDATE "
                     f"{table.name} SET col = convert_from(convert(convert_to(col, "
                     f"'SQL_ASCII'), 'LATIN1', '{target.facts.encoding}'), 'SQL_ASCII') "
                     f"WHERE ...) or merge into a {source.facts.encoding} target",
                details={"keys": sample, "columns": sorted(columns_hit)}))
    return findings
