"""The migrations build exactly the model, on every local PostgreSQL version."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.db import connect
from tcmerge.dburl import DatabaseRef
from tcmerge.providers import DatabaseServer
from tcmerge.schema import bookkeeping, manage, tc
from tcmerge.schema.compare import compare_to_model, reflect, shape_of
from tcmerge.testing.plugin import unique_name

pytestmark = pytest.mark.postgresql
MODEL = (*tc.ALL_TABLES, *bookkeeping.metadata.sorted_tables)


def test_migrated_schema_matches_model(tc_database: DatabaseRef) -> None:
    with connect(tc_database) as conn:
        live = reflect(conn, MODEL)
        inspector = sa.inspect(conn)
        for table in MODEL:
            assert table.name in live, table.name
            found = live[table.name]
            assert list(found.columns) == [c.name for c in table.columns], table.name
            for column in table.columns:
                got = found.columns[column.name]
                assert got.shape == shape_of(column.type), (table.name, column.name)
                assert got.nullable == column.nullable, (table.name, column.name)
            assert found.primary_key == tuple(c.name for c in table.primary_key.columns)
            checks = {c.name for c in table.constraints
                      if isinstance(c, sa.CheckConstraint) and c.name}
            assert checks <= found.check_names, table.name
        pk = inspector.get_pk_constraint("aft_log")
        assert pk["name"] == "aft_log_pkey"
    assert compare_to_model(live, MODEL, "db") == []


def test_constraints_enforced(tc_database: DatabaseRef) -> None:
    with connect(tc_database) as conn, pytest.raises(sa.exc.IntegrityError, match="check_role"):
        conn.execute(sa.insert(tc.tc_users).values(
            room_jid="r@conference-1-cup.example.com", real_jid="a@example.com",
            role="overlord", affiliation="member", nick_jid="r@x/a"))


def test_upgrade_downgrade_round_trip(pg_server: DatabaseServer) -> None:
    name = unique_name("rt")
    ref = pg_server.create_database(name)
    try:
        first = manage.upgrade(ref)
        assert (first.before, first.after) == (None, manage.head_revision())
        again = manage.upgrade(ref)
        assert not again.changed
        down = manage.downgrade(ref, "base")
        assert down.after is None
        with connect(ref) as conn:
            left = set(sa.inspect(conn).get_table_names())
        assert left == {"tcmerge_alembic_version"}
        manage.upgrade(ref)
        assert manage.check(ref).findings == []
    finally:
        pg_server.drop_database(name)


def test_upgrade_keeps_tables_made_by_im_and_presence(pg_server: DatabaseServer) -> None:
    """IM&P creates the TC tables itself; upgrading must keep them and their rows."""
    name = unique_name("imp")
    ref = pg_server.create_database(name)
    try:
        with connect(ref) as conn:
            tc.metadata.create_all(conn)
            conn.execute(sa.insert(tc.tc_rooms).values(
                room_jid="ops@conference-1-cup.example.com", creator_jid="a@example.com",
                subject="s", type="persistent", config="<x/>", spacket="<m/>",
                start_msg_id=1, next_msg_id=2))
            conn.commit()
        result = manage.upgrade(ref)
        assert result.after == manage.head_revision()
        with connect(ref) as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(tc.tc_rooms)).scalar() == 1
            assert sa.inspect(conn).has_table("tcmerge_jobs")
    finally:
        pg_server.drop_database(name)


def test_cli_upgrade_and_check(pg_server: DatabaseServer) -> None:
    name = unique_name("cli")
    ref = pg_server.create_database(name)
    url = ref.url.render_as_string(hide_password=False)
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["schema", "upgrade", url, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["after"] == manage.head_revision()
        assert ref.url.password not in result.output

        clean = runner.invoke(app, ["schema", "check", url, "--json"])
        assert clean.exit_code == 0, clean.output
        assert json.loads(clean.stdout)["ok"] is True

        # a table of the same name in another schema does not stand in for a missing one
        pg_server.execute(["ALTER TABLE tc_rooms DROP COLUMN subject",
                           "ALTER TABLE tc_msgarchive ALTER COLUMN to_jid TYPE varchar(64)",
                           "DROP TABLE tc_timelog",
                           "CREATE SCHEMA elsewhere",
                           "CREATE TABLE elsewhere.tc_timelog (real_jid text)"],
                          database=name)
        broken = runner.invoke(app, ["schema", "check", url, "--json"])
        assert broken.exit_code == 1
        report = json.loads(broken.stdout)
        codes = {(f["code"], f["table"]) for f in report["findings"]}
        assert ("SCHEMA_MISSING_COLUMN", "tc_rooms") in codes
        assert ("SCHEMA_TYPE_MISMATCH", "tc_msgarchive") in codes
        assert ("SCHEMA_MISSING_TABLE", "tc_timelog") in codes
        assert ref.url.password not in broken.output

        # already at head, upgrade changes nothing, and says what still differs: exit 1
        again = runner.invoke(app, ["schema", "upgrade", url, "--json"])
        assert again.exit_code == 1, again.output
        upgraded = json.loads(again.stdout)
        assert upgraded["ok"] is False and upgraded["after"] == manage.head_revision()
        assert {(f["code"], f["table"]) for f in upgraded["findings"]} == {
            ("SCHEMA_MISSING_COLUMN", "tc_rooms"), ("SCHEMA_TYPE_MISMATCH", "tc_msgarchive"),
            ("SCHEMA_MISSING_TABLE", "tc_timelog")}
    finally:
        pg_server.drop_database(name)


def test_cli_check_unreachable_database_exits_3() -> None:
    result = CliRunner().invoke(
        app, ["schema", "check", "postgresql://tc:Sup3rSecret@127.0.0.1:1/none", "--json"])
    assert result.exit_code == 3
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["error"]["code"] == "CONNECTION_FAILED"
    assert "Sup3rSecret" not in result.output


def test_downgrade_refuses_tables_with_rows(tc_database: DatabaseRef) -> None:
    from tcmerge.errors import ConfigError

    with connect(tc_database) as conn:
        conn.execute(sa.insert(tc.tc_timelog).values(
            real_jid="a@example.com", room_jid="r@conference-1-cup.example.com",
            start=sa.func.now()))
        conn.commit()
    with pytest.raises(ConfigError, match="tc_timelog"):
        manage.downgrade(tc_database, "base")
    with connect(tc_database) as conn:  # nothing was dropped
        assert {"tc_rooms", "tc_timelog", "tcmerge_jobs"} <= set(
            sa.inspect(conn).get_table_names())
