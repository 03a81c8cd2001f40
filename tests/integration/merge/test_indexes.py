"""A message table's indexes set aside during the load and rebuilt (merge/indexes.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tcmerge.merge import indexes
from tcmerge.merge import pg as mpg

from .data import TcData
from .test_engine import ROOM, ROOM2, merge

pytestmark = pytest.mark.postgresql

#: everything a rebuild must give back: definitions, names, constraints, NOT NULL
SHAPE = """
SELECT 'index ' || ic.relname || ': ' || pg_get_indexdef(i.indexrelid)
       || ' primary=' || i.indisprimary || ' unique=' || i.indisunique
FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
WHERE i.indrelid = 'tc_msgarchive'::regclass
UNION ALL SELECT 'constraint ' || conname || ': ' || contype::text || ' '
       || pg_get_constraintdef(oid) || ' index=' || conindid::regclass::text
FROM pg_constraint WHERE conrelid = 'tc_msgarchive'::regclass
UNION ALL SELECT 'column ' || attname || ' not null=' || attnotnull FROM pg_attribute
WHERE attrelid = 'tc_msgarchive'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY 1
"""
#: an index made again has a new oid
OIDS = ("SELECT indexrelid::regclass::text, indexrelid::oid::bigint FROM pg_index "
        "WHERE indrelid = 'tc_msgarchive'::regclass ORDER BY 1")

EXTRA_INDEXES = [
    "CREATE INDEX arch_sent ON tc_msgarchive (sent_date DESC, from_jid) WITH (fillfactor = 70)",
    "CREATE INDEX arch_long ON tc_msgarchive (lower(body_string)) WHERE body_len > 100",
    "CREATE INDEX arch_cover ON tc_msgarchive (to_jid) INCLUDE (msg_type)",
    "ALTER TABLE tc_msgarchive ADD CONSTRAINT arch_uq UNIQUE (msg_id, to_jid)",
]


def fill(db: TcData, room: str, ids: range, text: str) -> None:
    db.room(room, next_=ids.stop)
    db.messages(room, [(i, i, f"{text} {i}") for i in ids])


def test_set_aside_and_rebuild_give_back_every_index_exactly(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    db.execute(*EXTRA_INDEXES)
    shape, oids = db.query(SHAPE), db.query(OIDS)
    with mpg.session(db.ref, role="test") as conn:
        aside = indexes.set_aside(conn, "tc_msgarchive")
        assert aside is not None
        assert {i.name for i in aside.indexes} == {name for name, _ in oids}
        assert conn.execute("SELECT count(*) FROM pg_index "
                            "WHERE indrelid = 'tc_msgarchive'::regclass").fetchone() == (0,)
        indexes.rebuild(conn, aside)
        conn.commit()
    assert db.query(SHAPE) == shape
    assert set(db.query(OIDS)).isdisjoint(oids)  # made again, not left in place


@pytest.mark.parametrize("dependent", [
    "CREATE TABLE arch_ref (to_jid text, msg_id bigint, FOREIGN KEY (to_jid, msg_id) "
    "REFERENCES tc_msgarchive (to_jid, msg_id))",
    "CREATE VIEW arch_by_key AS SELECT to_jid, msg_id, from_jid, count(*) "
    "FROM tc_msgarchive GROUP BY to_jid, msg_id",
    "CLUSTER tc_msgarchive USING tc_msgarchive_pkey",
    "COMMENT ON INDEX tc_msgarchive_pkey IS 'ours'",
    "ALTER TABLE tc_msgarchive REPLICA IDENTITY USING INDEX tc_msgarchive_pkey",
    "CREATE INDEX arch_expr ON tc_msgarchive (lower(from_jid)); "
    "ALTER INDEX arch_expr ALTER COLUMN 1 SET STATISTICS 500",
], ids=["foreign-key", "view", "clustered", "comment", "replica-identity", "statistics"])
def test_indexes_that_would_not_come_back_exactly_stay(
        tc_factory: Callable[..., TcData], dependent: str) -> None:
    db = tc_factory()
    db.execute(*dependent.split("; "))
    oids = db.query(OIDS)
    with mpg.session(db.ref, role="test") as conn:
        assert indexes.set_aside(conn, "tc_msgarchive") is None
        conn.commit()
    assert db.query(OIDS) == oids


def test_a_table_in_use_keeps_its_indexes_without_waiting(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    oids = db.query(OIDS)
    with mpg.session(db.ref, role="reader") as reader, \
            mpg.session(db.ref, role="test") as conn:
        reader.execute("SELECT count(*) FROM tc_msgarchive")  # holds ACCESS SHARE
        conn.execute("SET lock_timeout = '30s'")  # a test without NOWAIT fails, not hangs
        started = time.monotonic()
        assert indexes.set_aside(conn, "tc_msgarchive") is None
        assert time.monotonic() - started < 10
        # the savepoint is gone, the transaction goes on
        assert conn.execute("SELECT count(*) FROM tc_msgarchive").fetchone() == (0,)
        conn.commit()
        reader.rollback()
    assert db.query(OIDS) == oids


def test_merge_into_an_empty_target_rebuilds_its_indexes_the_same(
        tc_factory: Callable[..., TcData]) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    target.execute(*EXTRA_INDEXES)
    fill(one, ROOM, range(1, 6), "one")
    fill(two, ROOM, range(1, 4), "two")  # the same room: renumbered through staging
    fill(two, ROOM2, range(1, 3), "two")
    shape, oids = target.query(SHAPE), target.query(OIDS)
    result = merge(target, one, two)
    assert result.ok, [f.message for f in result.verification]
    assert target.archive(ROOM) == [(i, f"one {i}") for i in range(1, 6)] + [
        (5 + i, f"two {i}") for i in range(1, 4)]
    assert target.query(SHAPE) == shape
    assert set(target.query(OIDS)).isdisjoint(oids)


def test_dry_run_and_a_target_larger_than_the_input_keep_the_indexes(
        tc_factory: Callable[..., TcData]) -> None:
    target, one = tc_factory(), tc_factory()
    fill(one, ROOM2, range(1, 4), "one")
    one.execute("ANALYZE")  # the incoming rows are the sources' planner estimates
    oids = target.query(OIDS)
    dry = merge(target, one, dry_run=True)
    assert dry.ok and dry.status == "dry-run"
    assert target.query(OIDS) == oids and target.count("tc_msgarchive") == 0
    fill(target, ROOM, range(1, 11), "target")  # 10 rows there, 3 coming
    oids = target.query(OIDS)
    result = merge(target, one)
    assert result.ok, [f.message for f in result.verification]
    assert target.query(OIDS) == oids
    assert target.count("tc_msgarchive") == 13
