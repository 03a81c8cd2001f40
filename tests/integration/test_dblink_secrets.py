"""No source password in any server's log: servers that log every statement with its
parameters, dblink installed and granted in the target (as Cisco's guide asks).

Without ``--transport dblink`` nothing sends a password inside SQL text or bind
parameters. With it, SCRAM pass-through (PostgreSQL 18) logs the target server in to
the source without one; where pass-through is not possible, DBLINK_SENDS_PASSWORD says
so before anything is done, and validation itself still sends none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef
from tcmerge.providers.base import DatabaseServer
from tcmerge.schema import manage
from tests.integration.validate_helpers import (
    ARCHIVE,
    ROOM,
    USER,
    admin_execute,
    text_url,
    utf8,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

#: every statement with every parameter, whole, in the server's log
LOG_EVERYTHING = {
    "log_statement": "all",
    "log_parameter_max_length": "-1",
    "log_parameter_max_length_on_error": "-1",
    "log_min_error_statement": "info",
}
ROLE = "tcuser"
#: plain letters and digits: found in a log whatever quoting the log applies
TARGET_PASSWORD = "TgtPw7319kq"
SOURCE_PASSWORDS = ("SrcPwA5821zx", "SrcPwB9046mv")
EXPECTED_ARCHIVE_ROWS = 4  # two rooms, two archive rows each


@dataclass
class Setup:
    servers: list[DatabaseServer]
    target: DatabaseRef
    sources: list[DatabaseRef]

    def logs(self) -> list[str]:
        return [Path(getattr(s, "log")).read_text(errors="replace")  # noqa: B009
                for s in self.servers]


def _tc_database(server: DatabaseServer, name: str, password: str, *,
                 rooms: Iterable[str], dblink: bool = False) -> DatabaseRef:
    server.create_database(name, owner=ROLE)
    ref = server.ref(name, user=ROLE, password=password)  # TCP, scram-sha-256
    manage.upgrade(utf8(ref))
    statements = []
    for room in rooms:
        statements += [ROOM.format(room=room), ARCHIVE.format(id=1, room=room, body="'hi'"),
                       ARCHIVE.format(id=2, room=room, body="'again'"),
                       USER.format(room=room, role="participant")]
    if dblink:
        # Cisco's guide: dblink in the target, its connect functions granted to the user
        statements += ["CREATE EXTENSION dblink",
                       f"GRANT EXECUTE ON FUNCTION dblink_connect(text), "
                       f"dblink_connect(text, text) TO {ROLE}"]
    admin_execute(server, name, statements)
    return ref


def _verifier(server: DatabaseServer) -> str:
    with server.admin_connection() as conn:  # type: ignore[attr-defined]
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                           (ROLE,)).fetchone()
    assert row is not None and str(row[0]).startswith("SCRAM-SHA-256$")
    return str(row[0])


def _setup(cluster_factory: Callable[..., DatabaseServer], name: str, *,
           same_secret: bool = False) -> Setup:
    """A target server and one server per source, each logging everything. With
    ``same_secret`` the source role gets the target role's very SCRAM secret (what
    pass-through needs), else a password of its own."""
    target_server = cluster_factory(f"{name}-t", settings=LOG_EVERYTHING)
    target_server.create_role(ROLE, TARGET_PASSWORD)
    servers, sources = [target_server], []
    for i, password in enumerate(SOURCE_PASSWORDS, 1):
        server = cluster_factory(f"{name}-s{i}", settings=LOG_EVERYTHING)
        if same_secret:
            password = TARGET_PASSWORD
            with server.admin_connection() as conn:  # type: ignore[attr-defined]
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(_verifier(target_server))))
        else:
            server.create_role(ROLE, password)
        servers.append(server)
        sources.append(_tc_database(server, "src", password,
                                    rooms=(f"room{i}@conference-{i}.example.com",)))
    target = _tc_database(target_server, "tgt", TARGET_PASSWORD, rooms=(), dblink=True)
    return Setup(servers, target, sources)


def _cli(command: str, setup: Setup, *extra: str) -> tuple[int, dict[str, Any], str]:
    args = [command, "--target", text_url(setup.target)]
    for source in setup.sources:
        args += ["--source", text_url(source)]
    result = CliRunner().invoke(app, [*args, *extra, "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout), result.stdout + result.stderr


def _codes(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] == code]


def _no_password(text: str, passwords: Iterable[str] = SOURCE_PASSWORDS) -> None:
    for password in passwords:
        assert password not in text
    assert "password=" not in text  # no connection string with a password at all


def _archive_rows(setup: Setup) -> int:
    with setup.servers[0].admin_connection("tgt") as conn:  # type: ignore[attr-defined]
        row = conn.execute("SELECT count(*) FROM tc_msgarchive").fetchone()
    assert row is not None
    return int(row[0])


def _leftovers(setup: Setup) -> tuple[int, int]:
    """Foreign servers and user mappings in the target (pass-through's are temporary)."""
    with setup.servers[0].admin_connection("tgt") as conn:  # type: ignore[attr-defined]
        row = conn.execute("SELECT (SELECT count(*) FROM pg_foreign_server), "
                           "(SELECT count(*) FROM pg_user_mappings)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_default_path_sends_no_password_to_any_server(
        cluster_factory: Callable[..., DatabaseServer]) -> None:
    setup = _setup(cluster_factory, "nopw")

    code, report, text = _cli("validate", setup)
    assert code == 0, report
    assert report["transport"] == "copy"
    # what the catalogs tell about dblink is still said, and why no live probe was made
    [unprobed] = _codes(report, "DBLINK_NOT_PROBED")
    assert "would send the source's password" in unprobed["message"]
    assert not _codes(report, "DBLINK_OK")

    code, result, more = _cli("run", setup, "--yes")
    assert code == 0, result
    assert result["status"] == "succeeded"
    assert _archive_rows(setup) == EXPECTED_ARCHIVE_ROWS

    logs = setup.logs()
    # the servers did log every statement and its parameters
    assert all("statement: " in log or "execute " in log for log in logs)
    assert "DETAIL:  Parameters: $1 = " in logs[0]
    for log in [*logs, text, more]:
        _no_password(log, [*SOURCE_PASSWORDS, TARGET_PASSWORD])


def test_transport_dblink_uses_scram_passthrough(
        cluster_factory: Callable[..., DatabaseServer]) -> None:
    setup = _setup(cluster_factory, "scram", same_secret=True)
    if int(setup.servers[0].version.split(".")[0]) < 18:
        pytest.skip("SCRAM pass-through for dblink needs a PostgreSQL 18 target")
    # creating the temporary foreign server needs USAGE on dblink's wrapper
    admin_execute(setup.servers[0], "tgt",
                  [f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {ROLE}"])

    code, report, _ = _cli("validate", setup, "--transport", "dblink")
    assert code == 0, report
    assert not _codes(report, "DBLINK_SENDS_PASSWORD")
    assert len(_codes(report, "DBLINK_OK")) == len(setup.sources)
    paths = report["transports"]["dblink"]["sources"]
    assert [p["auth"] for p in paths] == ["scram-passthrough"] * len(setup.sources)

    code, result, _ = _cli("run", setup, "--transport", "dblink", "--yes")
    assert code == 0, result
    assert result["status"] == "succeeded"
    assert not _codes(result, "DBLINK_SENDS_PASSWORD")
    assert _archive_rows(setup) == EXPECTED_ARCHIVE_ROWS

    target_log = setup.logs()[0]
    assert "use_scram_passthrough" in target_log  # the way in
    assert "dblink_fetch" in target_log  # the merge's rows came through dblink
    for log in setup.logs():
        _no_password(log, [TARGET_PASSWORD])
    assert _leftovers(setup) == (0, 0)  # no foreign server or user mapping remains


def test_transport_dblink_without_passthrough_warns_before_anything_is_done(
        cluster_factory: Callable[..., DatabaseServer]) -> None:
    # the source roles have passwords (SCRAM secrets) of their own: pass-through cannot
    # log in, dblink needs each source's password in its connection string
    setup = _setup(cluster_factory, "warn")

    code, report, _ = _cli("validate", setup, "--transport", "dblink")
    assert code == 0, report
    warned = _codes(report, "DBLINK_SENDS_PASSWORD")
    assert sorted(f["database"] for f in warned) == sorted(s.label for s in setup.sources)
    assert all(f["severity"] == "warning" for f in warned)
    assert "USAGE on the foreign-data wrapper dblink_fdw" in warned[0]["message"]
    assert f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {ROLE}" in warned[0]["hint"]

    admin_execute(setup.servers[0], "tgt",
                  [f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {ROLE}"])
    code, report, _ = _cli("validate", setup, "--transport", "dblink")
    assert code == 0, report
    warned = _codes(report, "DBLINK_SENDS_PASSWORD")
    assert len(warned) == len(setup.sources)
    if int(setup.servers[0].version.split(".")[0]) >= 18:
        assert "pass-through login was refused" in warned[0]["message"]
        assert "SCRAM secret" in warned[0]["hint"]
    assert "--transport copy" in warned[0]["hint"]
    # validation itself sent no password anywhere
    for log in setup.logs():
        _no_password(log)

    code, result, _ = _cli("run", setup, "--transport", "dblink", "--yes")
    assert code == 0, result
    assert result["status"] == "succeeded"
    assert _archive_rows(setup) == EXPECTED_ARCHIVE_ROWS
    # the warning is among the run's findings (before its prompt), and it was true
    assert len(_codes(result, "DBLINK_SENDS_PASSWORD")) == len(setup.sources)
    assert all(p in setup.logs()[0] for p in SOURCE_PASSWORDS)
    assert _leftovers(setup) == (0, 0)
