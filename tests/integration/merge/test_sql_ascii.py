"""SQL_ASCII databases (Cisco's example encoding) as target and sources: any byte goes
through unchanged, room names included, and the job history reads back as text."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef
from tcmerge.providers import DatabaseServer
from tcmerge.schema import manage
from tcmerge.testing.plugin import unique_name

from ..validate_helpers import admin_execute, utf8

pytestmark = pytest.mark.postgresql

#: 'café' with a Latin-1 é (e9): not UTF-8, legal in SQL_ASCII
ROOM = b"caf\xe9@conference-1-c1.example.com"


def _text(raw: bytes) -> str:
    """A SQL literal of exactly these bytes in a SQL_ASCII database."""
    return f"convert_from('\\x{raw.hex()}'::bytea, 'SQL_ASCII')"


def _archive(msg_id: int, second: int, body: bytes) -> str:
    return (f"INSERT INTO tc_msgarchive VALUES ({msg_id}, {_text(ROOM)}, 'a@example.com', "
            f"'n', TIMESTAMP '2024-01-01 10:00:00' + interval '{second} s', 'g', 4, 4, "
            f"{_text(body)}, 'm', NULL, NULL, NULL)")


@pytest.fixture
def ascii_db(embedded_server: DatabaseServer) -> Iterator[list[DatabaseRef]]:
    made: list[str] = []

    def make(statements: list[str]) -> DatabaseRef:
        name = unique_name("ascii")
        ref = embedded_server.create_database(name, encoding="SQL_ASCII")
        made.append(name)
        manage.upgrade(utf8(ref))
        admin_execute(embedded_server, name, statements)
        return ref

    room = (f"INSERT INTO tc_rooms VALUES ({_text(ROOM)}, 'alice@example.com', {{subject}}, "
            "'persistent', '<x/>', '<x/>', 1, 3)")
    yield [
        make(["CREATE EXTENSION dblink"]),
        make([room.format(subject=_text(b"r\xe9union")), _archive(1, 0, b"one \xe9"),
              _archive(2, 2, b"two \xff")]),
        make([room.format(subject="'other'"), _archive(1, 1, b"three \xe9\xe9"),
              _archive(2, 3, b"four")]),
    ]
    for name in made:
        embedded_server.drop_database(name)


def _cli(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_sql_ascii_target_and_sources_keep_every_byte(
        embedded_server: DatabaseServer, ascii_db: list[DatabaseRef], transport: str) -> None:
    target, one, two = (ref.url.render_as_string(hide_password=False) for ref in ascii_db)
    code, out = _cli("run", "--source", one, "--source", two, "--target", target,
                     "--transport", transport, "--yes")
    assert code == 0 and out["ok"] is True, out
    diverged = [f for f in out["findings"]  # type: ignore[attr-defined]
                if f["code"] == "ROOM_DIVERGED"]
    # the room's own bytes, as the one str that sends them back unchanged
    assert ROOM.decode("utf-8", "surrogateescape") in diverged[0]["message"]
    with embedded_server.admin_connection(str(ascii_db[0].url.database)) as conn:
        rows = conn.execute(
            "SELECT convert_to(to_jid, 'SQL_ASCII'), msg_id, convert_to(body_string, "
            "'SQL_ASCII') FROM tc_msgarchive ORDER BY msg_id").fetchall()
        room = conn.execute("SELECT convert_to(subject, 'SQL_ASCII'), next_msg_id "
                            "FROM tc_rooms").fetchall()
    # source 2's rows renumbered above source 1's, in sent_date order
    assert rows == [(ROOM, 1, b"one \xe9"), (ROOM, 2, b"two \xff"),
                    (ROOM, 3, b"three \xe9\xe9"), (ROOM, 4, b"four")]
    assert room == [(b"r\xe9union", 5)]
    job = out["job_id"]
    assert isinstance(job, str)
    code, listed = _cli("jobs", "list", "--target", target)
    assert code == 0 and [j["job_id"] for j in listed["jobs"]] == [job]  # type: ignore[attr-defined]
    code, shown = _cli("jobs", "show", job, "--target", target)
    assert code == 0 and shown["status"] == "succeeded"
    assert _cli("verify", job, "--target", target)[0] == 0
    human = CliRunner().invoke(app, ["jobs", "list", "--target", target])
    assert human.exit_code == 0 and "succeeded" in human.stdout
