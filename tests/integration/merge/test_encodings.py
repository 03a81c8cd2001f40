"""Sources and targets in encodings other than UTF8 and SQL_ASCII (LATIN1, EUC_JP):
text arrives as the same characters, and what the target's encoding cannot hold is an
INVALID_ENCODING finding of validate, never a server conversion error half-way."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef
from tcmerge.providers import DatabaseServer
from tcmerge.schema import manage
from tcmerge.testing.plugin import unique_name

from ..validate_helpers import admin_execute, utf8

pytestmark = pytest.mark.postgresql

CAFE = "café@conference-1-c1.example.com"
KAIGI = "会議室@conference-1-c1.example.com"

Make = Callable[[str, dict[str, list[str]]], DatabaseRef]


def _lit(text: str) -> str:
    """A SQL literal of ``text`` sent as UTF-8 (the session's client_encoding is UTF8)."""
    return f"convert_from('\\x{text.encode('utf-8').hex()}'::bytea, 'UTF8')"


@pytest.fixture
def make_db(embedded_server: DatabaseServer) -> Iterator[Make]:
    """``make_db(encoding, {room: [body, ...]})``: a TC database with dblink."""
    made: list[str] = []

    def make(encoding: str, rooms: dict[str, list[str]]) -> DatabaseRef:
        name = unique_name("enc")
        ref = embedded_server.create_database(name, encoding=encoding)
        made.append(name)
        manage.upgrade(utf8(ref))
        statements = ["CREATE EXTENSION dblink", "SET client_encoding TO 'UTF8'"]
        for room, bodies in rooms.items():
            statements.append(f"INSERT INTO tc_rooms VALUES ({_lit(room)}, 'alice@example.com', "
                              "'s', 'persistent', '<x/>', '<x/>', 1, 3)")
            statements.append(f"INSERT INTO tc_users VALUES ({_lit(room)}, 'bob@example.com', "
                              "'participant', 'member', 'n', NULL, NULL)")
            statements += [
                f"INSERT INTO tc_msgarchive VALUES ({i}, {_lit(room)}, 'a@example.com', 'n', "
                f"TIMESTAMP '2024-01-01 10:00:00' + interval '{i} s', 'g', 4, 4, "
                f"{_lit(body)}, 'm', NULL, NULL, NULL)" for i, body in enumerate(bodies, 1)]
        admin_execute(embedded_server, name, statements)
        return ref

    yield make
    for name in made:
        embedded_server.drop_database(name)


def _cli(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def _url(ref: DatabaseRef) -> str:
    return ref.url.render_as_string(hide_password=False)


def _archive(server: DatabaseServer, ref: DatabaseRef) -> list[tuple[str, int, str]]:
    with server.admin_connection(str(ref.url.database)) as conn:
        conn.execute("SET client_encoding TO 'UTF8'")
        return [tuple(r) for r in conn.execute(
            "SELECT to_jid, msg_id, body_string FROM tc_msgarchive ORDER BY 1, 2").fetchall()]


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_latin1_source_beside_a_japanese_room(embedded_server: DatabaseServer, make_db: Make,
                                              transport: str) -> None:
    """The rooms shared by several inputs are listed in the queries sent to a source; a
    Japanese room name has no LATIN1 equivalent, and a LATIN1 source that does not hold
    that room must not be asked about it."""
    target = make_db("UTF8", {KAIGI: ["日本語のメッセージ"]})
    latin1 = make_db("LATIN1", {CAFE: ["café é", "plain"]})
    japanese = make_db("EUC_JP", {KAIGI: ["日本語のメッセージ", "二番目"]})
    code, out = _cli("run", "--source", _url(latin1), "--source", _url(japanese),
                     "--target", _url(target), "--transport", transport, "--yes")
    assert code == 0 and out["ok"] is True, out
    assert _archive(embedded_server, target) == [
        (CAFE, 1, "café é"), (CAFE, 2, "plain"),
        # the EUC_JP source's first row is the target's own (a duplicate)
        (KAIGI, 1, "日本語のメッセージ"), (KAIGI, 2, "二番目")]
    archive = out["tables"]["tc_msgarchive"]  # type: ignore[index]
    assert archive["duplicates"] == 1 and archive["inserted"] == 3


@pytest.mark.parametrize(("target_encoding", "transport"), [("LATIN1", "copy"),
                                                            ("EUC_JP", "dblink")])
def test_characters_the_target_cannot_hold(embedded_server: DatabaseServer, make_db: Make,
                                           target_encoding: str, transport: str) -> None:
    target = make_db(target_encoding, {})
    source = make_db("UTF8", {"room@conference-1-c1.example.com": ["ok", "emoji 😀 Кириллица"]})
    code, out = _cli("validate", "--source", _url(source), "--target", _url(target))
    assert code == 1 and out["ok"] is False, out
    found = [f for f in out["findings"]  # type: ignore[attr-defined]
             if f["code"] == "INVALID_ENCODING"]
    assert len(found) == 1 and found[0]["severity"] == "error", found
    assert found[0]["table"] == "tc_msgarchive" and found[0]["count"] == 1
    assert found[0]["details"]["keys"] == [{"key": {
        "to_jid": "room@conference-1-c1.example.com", "msg_id": "2"},
        "columns": ["body_string"]}]
    code, out = _cli("run", "--source", _url(source), "--target", _url(target),
                     "--transport", transport, "--yes")
    assert code == 1 and out["ok"] is False, out
    assert "INVALID_ENCODING" in {f["code"] for f in out["findings"]}  # type: ignore[attr-defined]
    assert _archive(embedded_server, target) == []


def test_no_conversion_between_the_encodings(embedded_server: DatabaseServer,
                                            make_db: Make) -> None:
    """PostgreSQL converts nothing between LATIN1 and EUC_JP: a finding, not exit 3."""
    target = make_db("EUC_JP", {})
    source = make_db("LATIN1", {CAFE: ["café"]})
    code, out = _cli("validate", "--source", _url(source), "--target", _url(target))
    assert code == 1 and out["ok"] is False, out
    found = [f for f in out["findings"]  # type: ignore[attr-defined]
             if f["code"] == "INVALID_ENCODING"]
    assert found and "LATIN1" in found[0]["message"] and "EUC_JP" in found[0]["message"]
