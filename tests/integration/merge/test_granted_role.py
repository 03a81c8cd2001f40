"""The administrator's real set-up: tcmerge runs as a non-superuser login role whose
rights on the target are grants, not ownership (tables made by another role)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import sql
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import DatabaseRef
from tcmerge.providers import DatabaseServer
from tcmerge.testing.plugin import unique_name

from .data import TcData

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
PASSWORD = "Gr4nted-role pw"
TC_TABLES = ("tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog")


def url(ref: DatabaseRef) -> str:
    return ref.url.render_as_string(hide_password=False)


def cli(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout), result.stdout + result.stderr


@pytest.fixture
def granted_role(embedded_server: DatabaseServer) -> Iterator[str]:
    """A LOGIN role with no ownership anywhere (dropped afterwards)."""
    role = unique_name("tcgrant")
    embedded_server.create_role(role, PASSWORD)
    yield role
    embedded_server.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
        sql.Identifier(role)).as_string(None))


def as_role(server: DatabaseServer, db: TcData, role: str) -> DatabaseRef:
    assert db.ref.url.database is not None
    return server.ref(db.ref.url.database, user=role, password=PASSWORD)


def grant(db: TcData, role: str, privileges: str, tables: tuple[str, ...]) -> None:
    db.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
        sql.SQL(privileges), sql.SQL(", ").join(sql.Identifier(t) for t in tables),
        sql.Identifier(role)).as_string(None))


def revoke_all(db: TcData, role: str) -> None:
    """Drop the role's grants in a database (the role is dropped by the fixture)."""
    db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)).as_string(None))


def test_restore_without_delete_names_the_grant_and_changes_nothing(
        embedded_server: DatabaseServer, tc_factory: Callable[..., TcData],
        granted_role: str) -> None:
    # the TC tables and tcmerge_jobs belong to the administrator; the role may read,
    # insert and update them (all a merge needs) and create its snapshot tables
    target, source = tc_factory(), tc_factory()
    source.room(ROOM, next_=3)
    source.messages(ROOM, [(1, 0, "one"), (2, 1, "two")])
    grant(target, granted_role, "SELECT, INSERT, UPDATE", (*TC_TABLES, "tcmerge_jobs"))
    target.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
        sql.Identifier(granted_role)).as_string(None))
    try:
        tgt = url(as_role(embedded_server, target, granted_role))
        code, done, _ = cli("run", "--source", url(source.ref), "--target", tgt, "--yes")
        assert code == 0, done
        # said before the merge: it may go ahead, but its restore would be refused
        [warned] = [f for f in done["findings"] if f["code"] == "RESTORE_PRIVILEGE_MISSING"]
        assert warned["severity"] == "warning"
        assert warned["details"]["tables"] == sorted(TC_TABLES)
        assert warned["hint"].startswith("GRANT DELETE ON TABLE public.tc_messages, ")
        assert not [f for f in done["findings"] if f["code"] == "PRIVILEGE_MISSING"]
        job = done["job_id"]
        merged = target.digest()

        code, refused, text = cli("restore", job, "--target", tgt, "--yes")
        assert code == 1, refused
        assert refused["error"]["code"] == "PRIVILEGE_MISSING"
        message = refused["error"]["message"]
        assert "DELETE" in message and "tc_rooms" in message and "tc_msgarchive" in message
        assert "GRANT DELETE ON TABLE" in message and granted_role in message
        assert PASSWORD not in text
        assert target.digest() == merged  # nothing changed
        code, shown, _ = cli("jobs", "show", job, "--target", tgt)
        assert code == 0 and shown["status"] == "succeeded"

        grant(target, granted_role, "DELETE", TC_TABLES)
        code, restored, _ = cli("restore", job, "--target", tgt, "--yes")
        assert code == 0, restored
        assert target.archive(ROOM) == []
        code, checked, _ = cli("validate", "--source", url(source.ref), "--target", tgt)
        assert code == 0 and "RESTORE_PRIVILEGE_MISSING" not in {
            f["code"] for f in checked["findings"]}, checked
    finally:
        revoke_all(target, granted_role)


def test_a_schema_of_the_users_own_first_on_the_search_path(
        embedded_server: DatabaseServer, tc_factory: Callable[..., TcData],
        granted_role: str) -> None:
    # PostgreSQL 15+ lets only the database owner create in public; a DBA gives the
    # role a schema of its own, which the default search_path ("$user", public) puts
    # first. The TC tables and the job history stay in public.
    target, source = tc_factory(), tc_factory()
    source.room(ROOM, next_=3)
    source.messages(ROOM, [(1, 0, "one"), (2, 1, "two")])
    grant(target, granted_role, "SELECT, INSERT, UPDATE, DELETE",
          (*TC_TABLES, "tcmerge_jobs"))
    target.execute(sql.SQL("CREATE SCHEMA {0} AUTHORIZATION {0}").format(
        sql.Identifier(granted_role)).as_string(None))
    try:
        tgt = url(as_role(embedded_server, target, granted_role))
        code, checked, _ = cli("validate", "--source", url(source.ref), "--target", tgt)
        assert code == 0, checked  # was INTERNAL_ERROR: "<role>.tc_messages" does not exist
        assert not [f for f in checked["findings"] if f["code"] == "PRIVILEGE_MISSING"]

        code, done, _ = cli("run", "--source", url(source.ref), "--target", tgt, "--yes")
        assert code == 0, done
        # one job history: the one in public, not a new one in the role's schema
        assert target.query("SELECT schemaname FROM pg_tables WHERE tablename = "
                            "'tcmerge_jobs'") == [("public",)]
        assert target.query("SELECT job_id FROM public.tcmerge_jobs") == [(done["job_id"],)]
        code, listed, _ = cli("jobs", "list", "--target", tgt)
        assert code == 0 and [j["job_id"] for j in listed["jobs"]] == [done["job_id"]]
        code, restored, _ = cli("restore", done["job_id"], "--target", tgt, "--yes")
        assert code == 0, restored
        assert target.archive(ROOM) == []

        # a privilege that is missing is named with the schema that holds the table
        target.execute(sql.SQL("REVOKE UPDATE ON tc_rooms FROM {}").format(
            sql.Identifier(granted_role)).as_string(None))
        code, checked, _ = cli("validate", "--source", url(source.ref), "--target", tgt)
        assert code == 1, checked
        [missing] = [f for f in checked["findings"] if f["code"] == "PRIVILEGE_MISSING"]
        assert missing["table"] == "tc_rooms"
        assert missing["hint"] == f"GRANT UPDATE ON TABLE public.tc_rooms TO {granted_role};"
    finally:
        target.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
            sql.Identifier(granted_role)).as_string(None))
        revoke_all(target, granted_role)


def test_tc_tables_off_the_users_search_path_are_named_where_they_are(
        embedded_server: DatabaseServer, tc_factory: Callable[..., TcData],
        granted_role: str) -> None:
    # the role's search_path leaves out public, where the TC tables are: the finding
    # must not send the administrator to `schema upgrade` (a second, empty TC schema)
    target, source = tc_factory(), tc_factory()
    grant(target, granted_role, "SELECT, INSERT, UPDATE", (*TC_TABLES, "tcmerge_jobs"))
    database = target.ref.url.database
    assert database is not None
    target.execute(sql.SQL("CREATE SCHEMA {0} AUTHORIZATION {0}").format(
                       sql.Identifier(granted_role)).as_string(None),
                   sql.SQL("ALTER ROLE {0} IN DATABASE {1} SET search_path = {0}").format(
                       sql.Identifier(granted_role), sql.Identifier(database)).as_string(None))
    try:
        tgt = url(as_role(embedded_server, target, granted_role))
        code, checked, _ = cli("validate", "--source", url(source.ref), "--target", tgt)
        assert code == 1, checked
        missing = {f["table"]: f for f in checked["findings"]
                   if f["code"] == "SCHEMA_MISSING_TABLE"}
        assert sorted(missing) == sorted(TC_TABLES)
        rooms = missing["tc_rooms"]
        assert "not on the search_path" in rooms["message"] and "public" in rooms["message"]
        assert rooms["hint"].startswith(f"ALTER ROLE {granted_role} IN DATABASE {database} "
                                        "SET search_path = public;")
        assert "schema upgrade" not in rooms["hint"]
        assert rooms["details"]["schemas"] == ["public"]
        # schema check says the same (it, too, suggested `schema upgrade`)
        code, checked, _ = cli("schema", "check", tgt)
        assert code == 1, checked
        rooms = next(f for f in checked["findings"]
                     if f["code"] == "SCHEMA_MISSING_TABLE" and f["table"] == "tc_rooms")
        assert "not on the search_path" in rooms["message"]
        assert rooms["details"]["schemas"] == ["public"]
    finally:
        target.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET search_path").format(
                           sql.Identifier(granted_role), sql.Identifier(database)
                       ).as_string(None),
                       sql.SQL("DROP SCHEMA {} CASCADE").format(
                           sql.Identifier(granted_role)).as_string(None))
        revoke_all(target, granted_role)


def test_tc_tables_in_a_schema_the_role_may_not_use_ask_for_usage(
        embedded_server: DatabaseServer, tc_factory: Callable[..., TcData],
        granted_role: str) -> None:
    # public is on the role's search_path, but without USAGE its tables are hidden: the
    # fix is a GRANT USAGE, not a search_path (nor a second TC schema)
    target, source = tc_factory(), tc_factory()
    grant(target, granted_role, "SELECT, INSERT, UPDATE", (*TC_TABLES, "tcmerge_jobs"))
    target.execute("REVOKE USAGE ON SCHEMA public FROM PUBLIC")
    try:
        tgt = url(as_role(embedded_server, target, granted_role))
        code, checked, _ = cli("validate", "--source", url(source.ref), "--target", tgt)
        assert code == 1, checked
        rooms = next(f for f in checked["findings"]
                     if f["code"] == "SCHEMA_MISSING_TABLE" and f["table"] == "tc_rooms")
        assert "may not use (no USAGE)" in rooms["message"]
        assert rooms["hint"].startswith(f"GRANT USAGE ON SCHEMA public TO {granted_role};")
    finally:
        target.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        revoke_all(target, granted_role)
