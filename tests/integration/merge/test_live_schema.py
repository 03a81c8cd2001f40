"""The schema of a merge comes from the inputs (issue 17, items 1-2; contract: "The schema
of a merge"): another column order, an extra column carried through byte for byte,
timestamptz times, and the columns only some inputs have."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tcmerge.testing.site import EXTRA_COLUMN

from .data import TcData
from .test_cli import cli, sources, url
from .test_untouched import (
    ROOM,
    SOLO1,
    SOLO2,
    errors,
    merged_by_the_rules,
    site_state,
    three_sites,
)

pytestmark = pytest.mark.postgresql


def tagged(db: TcData) -> list[tuple[Any, ...]]:
    return db.query(f"SELECT to_jid, msg_id, body_string, {EXTRA_COLUMN}, "
                    "sent_date::text FROM tc_msgarchive ORDER BY to_jid, msg_id")


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_databases_shaped_like_a_site_merge_with_their_extra_column(
        site_factory: Callable[..., TcData], transport: str) -> None:
    """Three site databases whose tc_users has another column order, whose tc_msgarchive
    has an extra nullable column, and whose times are timestamptz: validate finds no
    error, run merges by the contract's rules and carries the extra column's values (and
    the instants) through; verify and restore work; nothing else changes."""
    target, one, two = three_sites(lambda node: site_factory(node, reshaped=True),
                                   transport)
    for db in (target, one, two):  # equal rows get equal tags: still duplicates
        db.execute(f"UPDATE tc_msgarchive SET {EXTRA_COLUMN} = 'tag-' || body_string "
                   "WHERE mod(msg_id, 2) = 1")
    state, before = site_state(target), target.digest()
    args = [*sources(one, two), "--target", url(target.ref), "--transport", transport]

    code, checked = cli("validate", *args)
    assert code == 0 and errors(checked) == [], checked
    warned = {f["code"] for f in checked["findings"] if f["severity"] == "warning"}
    assert "SCHEMA_EXTRA_COLUMN" not in warned  # every input has it: merged, not lost

    code, done = cli("run", *args, "--yes")
    assert code == 0, done
    merged_by_the_rules(done, target)
    rows = tagged(target)
    # the owner's rows and the renumbered ones keep their source's tag, byte for byte,
    # and their instants (timestamptz, read in UTC)
    sent = {r[1]: r[4] for r in tagged(one) if r[0] == ROOM}
    assert (ROOM, 4, "o1", "tag-o1", sent[1]) in rows and sent[1].endswith("+00")
    assert (ROOM, 5, "o2", None, sent[2]) in rows
    assert [r[3] for r in rows if r[0] == SOLO1] == ["tag-s1-1", None, "tag-s1-3", None,
                                                     "tag-s1-5"]
    assert [r[3] for r in rows if r[0] == SOLO2] == ["tag-s2-1", None, "tag-s2-3"]
    assert site_state(target) == state

    code, verified = cli("verify", done["job_id"], "--target", url(target.ref))
    assert code == 0, verified
    code, restored = cli("restore", done["job_id"], "--target", url(target.ref), "--yes")
    assert code == 0, restored
    assert target.digest() == before and site_state(target) == state


def test_a_target_not_null_column_a_source_lacks_is_refused_with_its_name(
        tc_factory: Callable[..., TcData]) -> None:
    target, source = tc_factory(), tc_factory()
    target.execute("ALTER TABLE tc_msgarchive ADD COLUMN retention varchar(16) NOT NULL "
                   "DEFAULT 'keep'", "ALTER TABLE tc_msgarchive ALTER COLUMN retention "
                   "DROP DEFAULT")
    source.room(SOLO1, next_=3)
    source.messages(SOLO1, [(1, 1, "a"), (2, 2, "b")])
    before = target.digest()
    args = ["--source", url(source.ref), "--target", url(target.ref)]
    for command in ("validate", "run"):
        code, out = cli(command, *args, *(["--yes"] if command == "run" else []))
        assert code == 1, out
        [missing] = [f for f in out["findings"] if f["code"] == "SCHEMA_MISSING_COLUMN"
                     and f["severity"] == "error"]
        assert missing["table"] == "tc_msgarchive" and missing["database"] == source.ref.label
        assert "tc_msgarchive.retention is NOT NULL without a default" in missing["message"]
        assert missing["details"]["column"] == "retention"
    assert target.digest() == before
    assert target.query("SELECT count(*) FROM tcmerge_jobs WHERE status = 'succeeded'") \
        == [(0,)]


def test_columns_only_some_inputs_have(tc_factory: Callable[..., TcData]) -> None:
    """A target column a source lacks: its default (or NULL) for that source's rows. A
    source column the target lacks: an error when it holds values, a warning when empty
    (and --strict blocks). An assumed column no input has is not needed."""
    target, source = tc_factory(), tc_factory()
    target.execute("ALTER TABLE tc_msgarchive ADD COLUMN retention varchar(16) NOT NULL "
                   "DEFAULT 'keep'", "ALTER TABLE tc_msgarchive ADD COLUMN note text",
                   "ALTER TABLE tc_msgarchive DROP COLUMN subject")
    source.room(SOLO1, next_=3)
    source.messages(SOLO1, [(1, 1, "a"), (2, 2, "b")])
    source.execute("ALTER TABLE tc_msgarchive DROP COLUMN subject",
                   "ALTER TABLE tc_msgarchive ADD COLUMN origin varchar(16)")
    args = ["--source", url(source.ref), "--target", url(target.ref)]

    code, checked = cli("validate", *args)
    assert code == 0, checked
    extra = [f for f in checked["findings"] if f["code"] == "SCHEMA_EXTRA_COLUMN"
             and f["database"] == source.ref.label and f["severity"] != "info"]
    assert [(f["severity"], f["details"]["column"]) for f in extra] == [("warning", "origin")]
    code, strict = cli("validate", *args, "--strict")
    assert code == 1, strict

    source.execute("UPDATE tc_msgarchive SET origin = 'node1' WHERE msg_id = 2")
    code, refused = cli("run", *args, "--yes")
    assert code == 1, refused
    assert [(f["severity"], f["details"]["column"]) for f in refused["findings"]
            if f["code"] == "SCHEMA_EXTRA_COLUMN" and f["database"] == source.ref.label
            and f["severity"] != "info"] \
        == [("error", "origin")]
    assert target.count("tc_msgarchive") == 0

    source.execute("UPDATE tc_msgarchive SET origin = NULL")
    code, done = cli("run", *args, "--yes")
    assert code == 0, done
    assert target.query("SELECT msg_id, body_string, retention, note FROM tc_msgarchive "
                        "ORDER BY msg_id") == [(1, "a", "keep", None), (2, "b", "keep", None)]


def test_types_are_judged_by_the_values_they_hold(tc_factory: Callable[..., TcData]) -> None:
    """A target column narrower than the source's takes the merge while every value the
    source holds fits unchanged (a warning says so); one value too long or too large is
    the error it always was, before anything moves."""
    target, source = tc_factory(), tc_factory()
    target.execute("ALTER TABLE tc_msgarchive ALTER COLUMN body_string TYPE varchar(20)",
                   "ALTER TABLE tc_msgarchive ALTER COLUMN body_len TYPE smallint")
    source.room(SOLO1, next_=3)
    source.messages(SOLO1, [(1, 1, "short"), (2, 2, "x" * 20)])
    args = ["--source", url(source.ref), "--target", url(target.ref)]

    code, checked = cli("validate", *args)
    assert code == 0, checked
    fits = {f["details"]["column"]: f["message"] for f in checked["findings"]
            if f["code"] == "SCHEMA_TYPE_MISMATCH" and f["database"] == source.ref.label}
    assert set(fits) == {"body_string", "body_len"}, checked["findings"]
    assert "the longest is 20 characters" in fits["body_string"]
    assert "whole numbers from 5 to 20" in fits["body_len"]

    for column, too_big, was in (("body_string", "repeat('y', 21)", "'" + "x" * 20 + "'"),
                                 ("body_len", "40000", "20")):
        source.execute(f"UPDATE tc_msgarchive SET {column} = {too_big} WHERE msg_id = 2")
        code, refused = cli("run", *args, "--yes")
        source.execute(f"UPDATE tc_msgarchive SET {column} = {was} WHERE msg_id = 2")
        assert code == 1, refused
        assert [f["details"]["column"] for f in refused["findings"]
                if f["code"] == "SCHEMA_TYPE_MISMATCH" and f["severity"] == "error"] \
            == [column], refused["findings"]
        assert target.count("tc_msgarchive") == 0

    code, done = cli("run", *args, "--yes")
    assert code == 0, done
    assert target.query("SELECT msg_id, body_string, body_len FROM tc_msgarchive "
                        "ORDER BY msg_id") == [(1, "short", 5), (2, "x" * 20, 20)]


def test_times_with_fewer_fractional_digits_in_the_target(
        tc_factory: Callable[..., TcData]) -> None:
    """A target's timestamp(0) holds a source's whole seconds unchanged (a warning says so),
    not its fractions (an error before anything moves: they would be rounded)."""
    target, source = tc_factory(), tc_factory()
    target.execute("ALTER TABLE tc_msgarchive ALTER COLUMN sent_date TYPE timestamp(0)")
    source.room(SOLO1, next_=3)
    source.messages(SOLO1, [(1, 1, "a"), (2, 2, "b")])
    args = ["--source", url(source.ref), "--target", url(target.ref)]

    code, checked = cli("validate", *args)
    assert code == 0, checked
    [fits] = [f for f in checked["findings"] if f["code"] == "SCHEMA_TYPE_MISMATCH"
              and f["database"] == source.ref.label]
    assert fits["severity"] == "warning" and "every value" in fits["message"]

    source.execute("UPDATE tc_msgarchive SET sent_date = sent_date + interval '0.25 second' "
                   "WHERE msg_id = 2")
    code, refused = cli("run", *args, "--yes")
    assert code == 1, refused
    [rounded] = [f for f in refused["findings"] if f["code"] == "SCHEMA_TYPE_MISMATCH"
                 and f["severity"] == "error"]
    assert rounded["details"] == {"column": "sent_date", "source": "timestamp",
                                  "target": "timestamp", "target_fraction_digits": 0,
                                  "rounded": 1}
    assert target.count("tc_msgarchive") == 0
