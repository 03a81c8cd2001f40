"""The migrations build exactly the model, on every local PostgreSQL version."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.db import connect
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ConfigError
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
        # what blocks a merge (a narrower to_jid does not: the sources' columns are
        # judged against it when merging)
        assert {(f["code"], f["table"]) for f in upgraded["findings"]} == {
            ("SCHEMA_MISSING_COLUMN", "tc_rooms"), ("SCHEMA_MISSING_TABLE", "tc_timelog")}
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


def _file_type_nullable(ref: DatabaseRef) -> bool:
    with connect(ref) as conn:
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns("aft_log")}
    return bool(columns["file_type"]["nullable"])


def _aft_row(index: int, file_type: str | None) -> str:
    value = "NULL" if file_type is None else f"'{file_type}'"
    return ("INSERT INTO aft_log VALUES ("
            f"{index}, 'a@example.com', 'b@example.com', 'POST', 'f{index}', 'f{index}.txt', "
            f"{value}, 'im', 'fs', '/files/f{index}', 10, 10, now())")


def test_file_type_not_null_on_tables_tcmerge_made(pg_server: DatabaseServer) -> None:
    """0005 sets aft_log.file_type NOT NULL on the aft_log 0001 made; NULLs refuse the
    upgrade with their count (no value is invented); the downgrade undoes it."""
    name = unique_name("ft")
    ref = pg_server.create_database(name)
    try:
        manage.upgrade(ref, "0004_merge_lock")
        assert _file_type_nullable(ref)
        pg_server.execute([_aft_row(1, None), _aft_row(2, None), _aft_row(3, "txt")],
                          database=name)
        with pytest.raises(ConfigError, match=r"aft_log holds 2 row\(s\) whose file_type is "
                                              r"NULL.*not applied"):
            manage.upgrade(ref)
        with connect(ref) as conn:
            assert manage.current_revision(conn) == "0004_merge_lock"
        assert _file_type_nullable(ref)
        pg_server.execute(["UPDATE aft_log SET file_type = 'txt' WHERE file_type IS NULL"],
                          database=name)
        assert manage.upgrade(ref).after == "0005_aft_log_file_type"
        assert not _file_type_nullable(ref)
        with connect(ref) as conn, pytest.raises(sa.exc.IntegrityError, match="file_type"):
            conn.execute(sa.text(_aft_row(4, None)))
        assert manage.check(ref).findings == []
        manage.downgrade(ref, "0004_merge_lock")
        assert _file_type_nullable(ref)
        with connect(ref) as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM aft_log")).scalar() == 3
    finally:
        pg_server.drop_database(name)


def test_file_type_of_tables_tcmerge_did_not_make_is_left_alone(
        pg_server: DatabaseServer) -> None:
    """An aft_log IM&P (or a site) made is not altered: a nullable file_type in a table of
    another shape stays nullable (schema check says so), and a NOT NULL one made NOT NULL
    by IM&P stays NOT NULL through a downgrade."""
    name = unique_name("ftimp")
    ref = pg_server.create_database(name)
    try:
        with connect(ref) as conn:
            tc.metadata.create_all(conn, tables=[t for t in tc.ALL_TABLES
                                                 if t is not tc.aft_log])
            conn.execute(sa.text(
                "CREATE TABLE aft_log (aft_index bigint PRIMARY KEY, jid varchar(3071) NOT "
                "NULL, to_jid varchar(3071) NOT NULL, method varchar(63) NOT NULL, filename "
                "varchar(511) NOT NULL, real_filename varchar(511) NOT NULL, file_type "
                "varchar(10), chat_type varchar(10) NOT NULL, file_server varchar(511) NOT "
                "NULL, file_path varchar(1024) NOT NULL, file_size bigint NOT NULL, "
                "bytes_transferred bigint NOT NULL, timestampvalue timestamp NOT NULL)"))
            conn.execute(sa.text(_aft_row(1, None)))
            conn.commit()
        assert manage.upgrade(ref).after == manage.head_revision()
        assert _file_type_nullable(ref)
        assert "SCHEMA_NULLABILITY_MISMATCH" in {f.code for f in manage.check(ref).findings}
    finally:
        pg_server.drop_database(name)
    name = unique_name("ftimp")
    ref = pg_server.create_database(name)
    try:
        with connect(ref) as conn:
            tc.metadata.create_all(conn)  # the model: file_type NOT NULL as IM&P makes it
            conn.commit()
        manage.upgrade(ref)
        manage.downgrade(ref, "0004_merge_lock")
        assert not _file_type_nullable(ref)
    finally:
        pg_server.drop_database(name)
