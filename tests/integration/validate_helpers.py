"""Helpers for the validate tests: TC databases with small data, checksums, CLI runs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from typer.testing import CliRunner

from tcmerge.checksums import table_checksums
from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef
from tcmerge.providers.base import DatabaseServer
from tcmerge.schema import manage, tc

PASSWORD = "Kn0wn-pa55'w0rd x"

ROOM = "INSERT INTO tc_rooms VALUES ('{room}', 'alice@example.com', 'subject', " \
       "'persistent', '<x/>', '<x/>', 1, 3)"
ARCHIVE = "INSERT INTO tc_msgarchive VALUES ({id}, '{room}', 'alice@example.com', " \
          "'{room}/alice', TIMESTAMP '2024-01-01 10:00:00', 'g', 5, 20, {body}, " \
          "'<message/>', NULL, NULL, NULL)"
USER = "INSERT INTO tc_users VALUES ('{room}', 'bob@example.com', '{role}', 'member', " \
       "'{room}/bob', NULL, NULL)"


def utf8(ref: DatabaseRef) -> DatabaseRef:
    """The same database with client_encoding set (SQLAlchemy cannot read SQL_ASCII otherwise)."""
    return DatabaseRef(ref.url.update_query_dict({"client_encoding": "utf8"}), ref.name)


def make_tc_database(server: DatabaseServer, name: str, user: str, *,
                     encoding: str = "UTF8", dblink: bool = False,
                     rooms: Iterable[str] = ("ops@conference-1.example.com",)) -> DatabaseRef:
    """A TC database owned by ``user`` (schema by the migrations) with a few rows."""
    server.create_database(name, owner=user, encoding=encoding)
    ref = server.ref(name, user=user, password=PASSWORD)
    manage.upgrade(utf8(ref))
    statements = []
    for i, room in enumerate(rooms):
        statements += [ROOM.format(room=room),
                       ARCHIVE.format(id=1, room=room, body="'hello'"),
                       ARCHIVE.format(id=2 + i, room=room, body="'again'"),
                       USER.format(room=room, role="participant")]
    if dblink:
        statements.append("CREATE EXTENSION dblink")
    admin_execute(server, name, statements)
    return ref


def admin_execute(server: DatabaseServer, database: str, statements: Iterable[str]) -> None:
    """Statements as the administrator through psycopg (works on SQL_ASCII databases too)."""
    with server.admin_connection(database) as conn:  # type: ignore[attr-defined]
        for statement in statements:
            conn.execute(statement)


def text_url(ref: DatabaseRef) -> str:
    return ref.url.render_as_string(hide_password=False)


@dataclass
class Snapshot:
    tables: dict[str, list[str]]
    checksums: dict[str, dict[str, str]]
    #: pg_relation_size of every TC table: rows written and rolled back still grow it
    sizes: dict[str, dict[str, int]]


def snapshot(server: DatabaseServer, databases: Iterable[str]) -> Snapshot:
    """Checksums and sizes of every TC table and the list of tables of each database (as
    admin)."""
    tables: dict[str, list[str]] = {}
    sums: dict[str, dict[str, str]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for name in databases:
        engine = sa.create_engine(utf8(server.admin_ref(name)).url)
        try:
            with engine.connect() as conn:
                tables[name] = sorted(sa.inspect(conn).get_table_names())
                sums[name] = table_checksums(conn, tc.ALL_TABLES)
                sizes[name] = {t.name: int(conn.scalar(sa.text(
                    "SELECT pg_relation_size(to_regclass(:t))"), {"t": t.name}) or 0)
                    for t in tc.ALL_TABLES}
        finally:
            engine.dispose()
    return Snapshot(tables, sums, sizes)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def codes(self) -> set[str]:
        return {f["code"] for f in self.json.get("findings", [])}

    def findings(self, code: str) -> list[dict[str, Any]]:
        return [f for f in self.json.get("findings", []) if f["code"] == code]


def run_validate(target: DatabaseRef | str, *sources: DatabaseRef | str,
                 extra: Iterable[str] = (), as_json: bool = True) -> CliResult:
    args = ["validate", "--target", target if isinstance(target, str) else text_url(target)]
    for source in sources:
        args += ["--source", source if isinstance(source, str) else text_url(source)]
    args += list(extra)
    if as_json:
        args.append("--json")
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)
