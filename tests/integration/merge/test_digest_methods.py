"""Table digests: the record method where the server and the columns allow it, the text
method otherwise; a stored digest is recomputed by the method that produced it."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tcmerge.merge import pg as mpg
from tcmerge.merge.checksums import (
    RECORD,
    TEXT,
    checksum_query,
    methods_for,
    recorded_methods,
    table_checksums,
)

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


def test_text_digests_do_not_depend_on_the_clients_time_zone_or_date_style(
        tc_factory: Callable[..., TcData], monkeypatch: pytest.MonkeyPatch) -> None:
    """A timestamptz's text depends on TimeZone and DateStyle, which libpq takes from the
    client's PGTZ and PGDATESTYLE over the session's options: merge sessions set them."""
    db = tc_factory()
    db.execute("CREATE TABLE stamps (id int, at timestamptz)",
               "INSERT INTO stamps VALUES (1, '2024-05-01 12:00:00+00')")
    sums = []
    for tz, style in ((None, None), ("Asia/Tokyo", "German, DMY")):
        if tz:
            monkeypatch.setenv("PGTZ", tz)
            monkeypatch.setenv("PGDATESTYLE", style)
        for autocommit in (False, True):
            with mpg.session(db.ref, role="test", autocommit=autocommit) as conn:
                sums.append(table_checksums(conn, ["stamps"], {"stamps": TEXT}))
                row = conn.execute("SELECT current_setting('TimeZone'), "
                                   "current_setting('DateStyle')").fetchone()
                assert row == ("UTC", "ISO, YMD")
    assert all(s == sums[0] for s in sums)
