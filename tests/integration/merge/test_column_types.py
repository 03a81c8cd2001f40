"""Values that the model's columns cannot hold unchanged are refused by validation, never
changed on the way (rule 7)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef

from .data import TcData

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"


def url(ref: DatabaseRef) -> str:
    return ref.url.render_as_string(hide_password=False)


def cli(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("value", ["1.5", "1e20"])
def test_an_unconstrained_numeric_id_is_not_taken_for_a_bigint(
        tc_factory: Callable[..., TcData], value: str) -> None:
    """A source whose tc_messages.msg_id is a plain ``numeric``: 1.5 was rounded to 2 in
    the target without a word, and 1e20 ended validate with exit 3 (bigint out of range)."""
    target, one = tc_factory(), tc_factory()
    one.execute("ALTER TABLE tc_messages ALTER COLUMN msg_id TYPE numeric",
                f"INSERT INTO tc_messages (msg_id, room_jid, stamp, msg) "
                f"VALUES ({value}, '{ROOM}', now(), 'm')")
    before = target.digest()
    for command in (["validate"], ["run", "--yes"]):
        code, out = cli(*command, "--source", url(one.ref), "--target", url(target.ref))
        assert code == 1, out
        mismatch = [f for f in out["findings"] if f["code"] == "SCHEMA_TYPE_MISMATCH"
                    and f["severity"] == "error" and f.get("table") == "tc_messages"]
        assert mismatch and "numeric" in mismatch[0]["message"], out["findings"]
    assert target.digest() == before


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_a_source_column_narrower_than_the_model_does_not_block(
        tc_factory: Callable[..., TcData], transport: str) -> None:
    """A source's integer msg_id or varchar(64) packet holds nothing the model's bigint or
    text cannot: it was an error ("values may not fit") that refused the merge."""
    target, one = tc_factory(), tc_factory()
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    one.execute("ALTER TABLE tc_messages ALTER COLUMN msg_id TYPE integer",
                "ALTER TABLE tc_messages ALTER COLUMN msg TYPE varchar(64)")
    one.room(ROOM, next_=3)
    one.messages(ROOM, [(1, 0, "é ' \\N"), (2, 1, "two")])
    code, out = cli("run", "--yes", "--transport", transport, "--source", url(one.ref),
                    "--target", url(target.ref))
    assert code == 0, out
    narrower = [f for f in out["findings"] if f["code"] == "SCHEMA_TYPE_MISMATCH"]
    assert {f["severity"] for f in narrower} == {"warning"}, narrower
    assert out["tables"]["tc_messages"]["inserted"] == 2
    assert target.query("SELECT msg_id, msg FROM tc_messages ORDER BY msg_id") == [
        (1, "<m>é ' \\N</m>"), (2, "<m>two</m>")]
