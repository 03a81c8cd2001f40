"""Table digests: the record method where the server and the columns allow it, the text
method otherwise; a stored digest is recomputed by the method that produced it."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from tcmerge.merge import pg as mpg
from tcmerge.merge.checksums import (
    RECORD,
    TEXT,
    checksum_query,
    methods_for,
    recorded_methods,
    table_checksums,
)
from tcmerge.merge.transport import DIGEST_HASH, DIGEST_MD5, keys_select
from tcmerge.providers import DatabaseServer
from tcmerge.schema import tc

from .data import TcData, source_reader

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
TC = ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog"]


def test_tc_tables_use_the_record_method_and_other_columns_fall_back(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    db.execute("CREATE TABLE amounts (id int, value numeric)",
          "CREATE TABLE names (id int, name text COLLATE \"C\")",
          "CREATE TABLE notes (id int, doc xml)")
    with mpg.session(db.ref, role="test") as conn:
        if conn.info.server_version < 140000:
            pytest.skip("the record method needs PostgreSQL 14 (hash_record_extended)")
        methods = methods_for(conn, [*TC, "amounts", "names", "notes"])
    assert {t: methods[t] for t in TC} == dict.fromkeys(TC, RECORD)
    # numeric hashes 1.0 and 1.00 alike; xml has no hash at all; "C" is deterministic
    assert (methods["amounts"], methods["notes"], methods["names"]) == (TEXT, TEXT, RECORD)


def test_a_nondeterministic_collation_falls_back_to_text(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    with mpg.session(db.ref, role="test") as conn:
        if conn.info.server_version < 140000:
            pytest.skip("the record method needs PostgreSQL 14 (hash_record_extended)")
        try:
            conn.execute("CREATE COLLATION nocase (provider = icu, "
                         "locale = 'und-u-ks-level2', deterministic = false)")
            conn.commit()
        except psycopg.errors.FeatureNotSupported as exc:
            pytest.skip(f"nondeterministic collations need ICU: {exc}")
    db.execute("CREATE TABLE people (id int, name text COLLATE nocase)",
          "INSERT INTO people VALUES (1, 'Alice')")
    with mpg.session(db.ref, role="test") as conn:
        assert methods_for(conn, ["people"]) == {"people": TEXT}
        before = table_checksums(conn, ["people"])
        conn.execute("UPDATE people SET name = 'alice'")
        # a case-only change is a change (the collation's hash would not see it)
        assert table_checksums(conn, ["people"]) != before
        conn.rollback()


def test_both_methods_see_every_change_and_stored_values_say_their_method(
        tc_factory: Callable[..., TcData]) -> None:
    db = tc_factory()
    db.room(ROOM, next_=3)
    db.messages(ROOM, [(1, 0, "first"), (2, 1, "second")])
    with mpg.session(db.ref, role="test") as conn:
        if conn.info.server_version < 140000:
            pytest.skip("the record method needs PostgreSQL 14 (hash_record_extended)")
        by = {m: table_checksums(conn, ["tc_msgarchive"], {"tc_msgarchive": m})
              for m in (TEXT, RECORD)}
        assert by[RECORD]["tc_msgarchive"].startswith("2:r")
        assert not by[TEXT]["tc_msgarchive"].split(":")[1].startswith("r")
        for method, values in by.items():
            assert recorded_methods(values) == {"tc_msgarchive": method}
            # recomputed by the recorded method: equal; after a one-character edit: not
            assert table_checksums(conn, ["tc_msgarchive"], recorded_methods(values)) == values
            conn.execute("UPDATE tc_msgarchive SET body_string = 'firsT' WHERE msg_id = 1")
            assert table_checksums(conn, ["tc_msgarchive"], recorded_methods(values)) != values
            conn.rollback()
        # the order of rows does not matter
        row = conn.execute(checksum_query("tc_msgarchive", RECORD)).fetchone()
        assert row is not None and f"{row[0]}:{row[1]}" == by[RECORD]["tc_msgarchive"]


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_a_source_reader_takes_record_digests_in_its_snapshot(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "first")])
    with source_reader(target, one, transport) as reader:
        reader.open()
        reader.prepare_checksums(TC)
        reader.finish()
        reader.send_checksums()
        sums = reader.staged_checksums()
        with mpg.session(one.ref, role="test") as direct:
            expected = table_checksums(direct, TC, recorded_methods(sums))
            modern = direct.info.server_version >= 140000
        assert sums == expected
        assert all(v.split(":")[1].startswith("r") for v in sums.values()) == modern


#: (msg_id, body_string, subject): rows 1 and 2 are equal but for msg_id; the others each
#: differ from one of them by one thing only
KEY_ROWS = [(1, "hello", "s"), (2, "hello", "s"), (3, "hello", None), (4, "hello", ""),
            (5, "Hello", "s"), (6, "hello ", "s"), (7, None, "hello"), (8, "hello", "s\x01")]


@pytest.mark.parametrize("method", [DIGEST_MD5, DIGEST_HASH])
def test_keys_digests_tell_rows_apart_by_every_column_but_msg_id(
        tc_factory: Callable[..., TcData], method: str) -> None:
    db = tc_factory()
    db.execute(*(sql.SQL(
        "INSERT INTO tc_msgarchive (msg_id, to_jid, from_jid, nick_jid, sent_date, msg_type, "
        "body_len, message_len, body_string, subject) VALUES ({}, {}, 'a@example.com', 'a', "
        "timestamp '2024-01-01 10:00', 'g', 5, 5, {}, {})").format(
            i, ROOM, body, subject).as_string(None) for i, body, subject in KEY_ROWS))
    with mpg.session(db.ref, role="test") as conn:
        if method == DIGEST_HASH and conn.info.server_version < 140000:
            pytest.skip("digests by hash need PostgreSQL 14 (hash_record_extended)")
        query = keys_select(tc.tc_msgarchive, 0, None, method=method)
        assert ("hash_record_extended" in query.as_string(conn)) == (method == DIGEST_HASH)
        rows = conn.execute(query).fetchall()
    digests = {int(msg_id): h for _inp, _room, msg_id, _d, h in rows}
    assert digests[1] == digests[2]
    assert len(set(digests.values())) == len(KEY_ROWS) - 1


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_digests_by_hash_only_for_a_source_in_the_targets_encoding(
        embedded_server: DatabaseServer, tc_factory: Callable[..., TcData],
        transport: str) -> None:
    from tcmerge.testing.plugin import unique_name

    target, same = tc_factory(), tc_factory()
    name = unique_name("latin")
    latin = TcData(embedded_server.create_database(name, encoding="LATIN1"))
    try:
        found = []
        for source in (same, latin):
            with source_reader(target, source, transport) as reader:
                reader.open()
                found.append(reader.hash_digest_ok())
        assert found == [True, False]
    finally:
        embedded_server.drop_database(name)
