"""The generator and the sample fixtures on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ConfigError, DatabaseError
from tcmerge.generate import (
    COLUMNS,
    TABLES,
    GeneratorSpec,
    generate,
    generate_rows,
    libpq_params,
)
from tcmerge.providers import DatabaseServer
from tcmerge.schema import manage
from tcmerge.testing.plugin import unique_name

pytestmark = pytest.mark.postgresql

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SPEC = GeneratorSpec(rooms_per_node=4, messages_per_room=25, recent_per_room=5,
                     timelog_per_room=4, long_body_ratio=0.1, non_ascii_ratio=0.3,
                     shared_rooms=0.5, affiliation_conflicts=2, bans=2, diverged_rooms=1,
                     room_conflicts=1)
KEYS = {"tc_rooms": "room_jid", "tc_users": "room_jid, real_jid",
        "tc_messages": "room_jid, msg_id", "tc_msgarchive": "to_jid, msg_id",
        "tc_timelog": 'room_jid, "start", real_jid'}


@pytest.fixture
def make_database(pg_server: DatabaseServer) -> Iterator[Callable[[bool], DatabaseRef]]:
    """New databases on the shared server, with the migrated TC schema or empty."""
    names: list[str] = []

    def make(schema: bool = True) -> DatabaseRef:
        names.append(unique_name("gen"))
        ref = pg_server.create_database(names[-1])
        if schema:
            manage.upgrade(ref)
        return ref

    yield make
    for name in names:
        pg_server.drop_database(name)


def _query(ref: DatabaseRef, statement: str | sql.Composed) -> list[tuple[Any, ...]]:
    with psycopg.connect(**libpq_params(ref)) as conn:
        return conn.execute(statement).fetchall()


def _table(ref: DatabaseRef, table: str) -> list[tuple[Any, ...]]:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS[table])
    return _query(ref, sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        columns, sql.Identifier(table), sql.SQL(KEYS[table])))


def _checksum(ref: DatabaseRef) -> str:
    parts = []
    for table in TABLES:
        (row,) = _query(ref, sql.SQL(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
        ).format(sql.Identifier(table)))
        parts.append(str(row[0]))
    return ":".join(parts)


def test_generated_rows_load_into_the_migrated_schema_byte_for_byte(
        make_database: Callable[[bool], DatabaseRef]) -> None:
    refs = [make_database(True), make_database(True)]
    result = generate(refs, SPEC, create_schema=False)
    expected = generate_rows(SPEC, 2)
    for ref, rows, counts in zip(refs, expected, result.counts, strict=True):
        assert counts == {t: len(rows[t]) for t in TABLES}
        for table in TABLES:
            key = [COLUMNS[table].index(c.strip().strip('"'))
                   for c in KEYS[table].split(",")]
            wanted = sorted(rows[table], key=lambda r, key=key: tuple(r[i] for i in key))
            # text compared as Python str: every character, including non-ASCII, survives
            assert _table(ref, table) == wanted, table
    assert result.overlap[1]["bans"] == 2 and result.overlap[1]["room_conflicts"] == 1
    assert result.as_dict()["databases"][1]["counts"] == result.counts[1]


def test_invariants_hold_in_the_server(make_database: Callable[[bool], DatabaseRef]) -> None:
    ref = make_database(True)
    generate([ref], SPEC, create_schema=False)
    # next_msg_id above every msg_id of the room, in both message tables
    assert _query(ref, """
        SELECT count(*) FROM tc_rooms r
        WHERE r.next_msg_id <= (SELECT max(msg_id) FROM tc_msgarchive WHERE to_jid = r.room_jid)
           OR r.next_msg_id <= (SELECT max(msg_id) FROM tc_messages WHERE room_jid = r.room_jid)
           OR r.start_msg_id > (SELECT min(msg_id) FROM tc_msgarchive WHERE to_jid = r.room_jid)
    """) == [(0,)]
    (row,) = _query(ref, """
        SELECT count(*) FILTER (WHERE body_text IS NOT NULL),
               count(*) FILTER (WHERE body_text IS NOT NULL AND (length(body_text) <= 4000
                                OR body_string IS NOT NULL OR message_string IS NOT NULL
                                OR length(message_text) <= 4000)),
               count(*) FILTER (WHERE length(coalesce(body_string, body_text)) <> body_len
                                OR length(coalesce(message_string, message_text)) <> message_len),
               count(*) FILTER (WHERE octet_length(coalesce(body_string, body_text))
                                      > length(coalesce(body_string, body_text))),
               count(*) FILTER (
                   WHERE position(to_jid IN coalesce(message_string, message_text)) = 0)
        FROM tc_msgarchive
    """)
    long_bodies, misplaced, wrong_lengths, non_ascii, without_room = row
    assert long_bodies > 0 and non_ascii > 0
    assert (misplaced, wrong_lengths, without_room) == (0, 0, 0)
    # tc_messages holds archive ids only
    assert _query(ref, """
        SELECT count(*) FROM tc_messages m LEFT JOIN tc_msgarchive a
          ON a.to_jid = m.room_jid AND a.msg_id = m.msg_id WHERE a.msg_id IS NULL
    """) == [(0,)]
    assert _query(ref, "SELECT count(DISTINCT role), count(DISTINCT affiliation) FROM tc_users"
                  ) == [(5, 5)]


def test_create_schema_makes_the_model_tables_and_same_seed_same_checksum(
        make_database: Callable[[bool], DatabaseRef]) -> None:
    spec = GeneratorSpec(rooms_per_node=3, messages_per_room=10, recent_per_room=3,
                         timelog_per_room=3)
    first, second, third = make_database(False), make_database(False), make_database(False)
    generate([first], spec)
    generate([second], spec)
    generate([third], GeneratorSpec(**{**spec.__dict__, "seed": 7}))
    report = manage.check(first)
    assert [f for f in report.findings if f.severity == "error"] == []
    assert _checksum(first) == _checksum(second)
    assert _checksum(first) != _checksum(third)


def test_refusals(make_database: Callable[[bool], DatabaseRef]) -> None:
    spec = GeneratorSpec(rooms_per_node=1, messages_per_room=3)
    empty = make_database(False)
    with pytest.raises(ConfigError, match="missing"):
        generate([empty], spec, create_schema=False)
    loaded = make_database(True)
    generate([loaded], spec)
    with pytest.raises(ConfigError, match="already holds rows"):
        generate([loaded], spec)
    with pytest.raises(ConfigError, match="PostgreSQL"):
        generate([DatabaseRef(empty.url.set(drivername="oracle+oracledb"))], spec)
    # nothing is written when a later database or the spec cannot be served
    fresh = make_database(True)
    with pytest.raises(ConfigError, match="already holds rows"):
        generate([fresh, loaded], spec)
    with pytest.raises(ConfigError, match="bans"):
        generate([fresh, empty], GeneratorSpec(rooms_per_node=1, shared_rooms=1.0, bans=40))
    assert _query(fresh, "SELECT count(*) FROM tc_rooms") == [(0,)]
    assert _query(empty, "SELECT to_regclass('tc_rooms')") == [(None,)]


def test_a_wrong_password_is_a_connection_failure_without_the_password(
        make_database: Callable[[bool], DatabaseRef]) -> None:
    ref = make_database(True).with_password("Wr0ng-Secret-xyz")
    with pytest.raises(DatabaseError) as caught:
        generate([ref], GeneratorSpec(rooms_per_node=1))
    assert caught.value.code == "CONNECTION_FAILED"
    assert "Wr0ng-Secret-xyz" not in str(caught.value)


def _load_sql(ref: DatabaseRef, path: Path) -> None:
    with psycopg.connect(**libpq_params(ref), autocommit=True) as conn:
        conn.execute(path.read_text(encoding="utf-8").encode())


def test_sample_fixtures_load_and_hold_the_documented_cases(
        make_database: Callable[[bool], DatabaseRef]) -> None:
    node1, node2 = make_database(True), make_database(True)
    _load_sql(node1, FIXTURES / "sample_node1.sql")
    _load_sql(node2, FIXTURES / "sample_node2.sql")
    count = "SELECT count(*) FROM {}"
    for ref, expected in ((node1, (2, 7, 5, 5, 4)), (node2, (2, 7, 5, 5, 3))):
        got = tuple(_query(ref, sql.SQL(count).format(sql.Identifier(t)))[0][0] for t in TABLES)
        assert got == expected
        # long bodies in *_text, lengths are character lengths, next_msg_id above the ids
        assert _query(ref, """
            SELECT count(*) FILTER (WHERE body_text IS NOT NULL AND body_len > 4000
                                    AND body_string IS NULL AND message_string IS NULL),
                   count(*) FILTER (WHERE length(coalesce(body_string, body_text)) <> body_len),
                   (SELECT count(*) FROM tc_rooms r WHERE next_msg_id <= (
                       SELECT max(msg_id) FROM tc_msgarchive WHERE to_jid = r.room_jid))
            FROM tc_msgarchive""") == [(1, 0, 0)]
    shared = "ops@conference-1-cup.example.com"
    archive = {ref: _query(ref, sql.SQL(
        "SELECT msg_id, from_jid, nick_jid, sent_date, body_len, message_len, body_string, "
        "message_string, body_text, message_text FROM tc_msgarchive WHERE to_jid = {}"
    ).format(sql.Literal(shared))) for ref in (node1, node2)}
    first = {r[0]: r[1:] for r in archive[node1]}
    second = {r[0]: r[1:] for r in archive[node2]}
    assert second[1] == first[2]                       # the exact duplicate
    assert {2, 3} <= set(first) and second[2] != first[2] and second[3] != first[3]
    assert "\\\\fs01\\share" in (first[2][5] or "")     # backslashes survive
    users = {ref: dict(((r[0]), r[1:]) for r in _query(ref, sql.SQL(
        "SELECT real_jid, role, affiliation FROM tc_users WHERE room_jid = {}").format(
            sql.Literal(shared)))) for ref in (node1, node2)}
    assert users[node1]["bob@example.com"] != users[node2]["bob@example.com"]
    assert users[node1]["deborah@example.com"][1] == "none"
    assert users[node2]["deborah@example.com"] == ("none", "outcast")
    rooms = [_query(ref, sql.SQL("SELECT * FROM tc_rooms WHERE room_jid = {}").format(
        sql.Literal(shared))) for ref in (node1, node2)]
    assert rooms[0] == rooms[1]
