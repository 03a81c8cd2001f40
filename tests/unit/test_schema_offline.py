"""The model's DDL per dialect, compiled without a server, and Alembic offline mode."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle, postgresql
from sqlalchemy.schema import CreateTable

from tcmerge.schema import manage, tc


def ddl(table: sa.Table, dialect: sa.Dialect) -> str:
    return str(CreateTable(table).compile(dialect=dialect))


def test_postgresql_types() -> None:
    text = ddl(tc.tc_msgarchive, postgresql.dialect())
    assert "to_jid VARCHAR(3071) NOT NULL" in text
    assert "msg_id BIGINT NOT NULL" in text
    assert "body_text TEXT" in text
    assert "body_string VARCHAR(4000)" in text
    assert "sent_date TIMESTAMP WITHOUT TIME ZONE NOT NULL" in text


def test_oracle_types() -> None:
    text = ddl(tc.tc_rooms, oracle.dialect())
    assert "room_jid VARCHAR2(3071) NOT NULL" in text
    assert "config CLOB NOT NULL" in text
    assert "next_msg_id NUMBER(19) NOT NULL" in text
    assert "CHAR)" not in text  # byte semantics as IM&P creates them


@pytest.mark.parametrize("dialect", [postgresql.dialect(), oracle.dialect()])
def test_timelog_reserved_words_quoted(dialect: sa.Dialect) -> None:
    text = ddl(tc.tc_timelog, dialect)
    assert '"start" TIMESTAMP' in text
    assert '"end" TIMESTAMP' in text
    select = str(sa.select(tc.tc_timelog).compile(dialect=dialect))
    assert '"start"' in select and '"end"' in select


def test_check_constraints_and_keys() -> None:
    rooms = ddl(tc.tc_rooms, postgresql.dialect())
    assert "CONSTRAINT check_type CHECK (type IN ('ad-hoc', 'persistent'))" in rooms
    users = ddl(tc.tc_users, postgresql.dialect())
    assert "CONSTRAINT check_role CHECK (role IN ('none', 'hidden', 'visitor', " \
           "'participant', 'moderator'))" in users
    assert "CONSTRAINT check_affiliation CHECK (affiliation IN ('none', 'outcast', " \
           "'member', 'admin', 'owner'))" in users
    assert "PRIMARY KEY (room_jid, real_jid)" in users
    assert "CONSTRAINT aft_log_pkey PRIMARY KEY (aft_index)" in ddl(tc.aft_log,
                                                                    postgresql.dialect())


@pytest.mark.parametrize(("dialect", "expected"), [
    (postgresql.dialect(), "file_type VARCHAR(10) NOT NULL"),
    (oracle.dialect(), "file_type VARCHAR2(10) NOT NULL")])
def test_model_aft_log_file_type_not_null(dialect: sa.Dialect, expected: str) -> None:
    """Cisco documents aft_log's first nine columns NOT NULL, file_type among them."""
    assert expected in ddl(tc.aft_log, dialect)


@pytest.mark.parametrize(("dialect", "expected"), [
    ("postgresql", "ALTER TABLE aft_log ALTER COLUMN file_type SET NOT NULL;"),
    ("oracle", "ALTER TABLE aft_log MODIFY file_type NOT NULL\n")])
def test_offline_ddl_sets_file_type_not_null(dialect: str, expected: str) -> None:
    text = manage.offline_sql(dialect)
    assert manage.head_revision() == "0005_aft_log_file_type"
    # 0001 creates the column nullable, 0005 sets NOT NULL: the script at head has both
    assert text.index("CREATE TABLE aft_log") < text.index(expected)
    assert "COMMENT ON COLUMN aft_log.file_type IS 'NOT NULL set by tcmerge" in text


def test_offline_oracle_ddl_from_migrations() -> None:
    text = manage.offline_sql("oracle")
    for table in ("tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog", "jm",
                  "aft_log", "tcmerge_jobs"):
        assert re.search(rf"CREATE TABLE {table} \(", text), table
    assert "CLOB" in text and "NUMBER(19)" in text and "VARCHAR2(3071)" in text
    assert "TEXT" not in text and "BIGINT" not in text
    # the version row as a plain INSERT: no RETURNING ... INTO an undeclared :ret_0
    assert "INSERT INTO tcmerge_alembic_version (version_num) VALUES ('0001_tc_schema')\n" in text
    assert "RETURNING" not in text and ":ret" not in text


def test_offline_postgresql_ddl_from_migrations() -> None:
    text = manage.offline_sql("postgresql")
    assert "CREATE TABLE tc_msgarchive" in text
    assert "VARCHAR(3071)" in text and "BIGINT" in text and "TEXT" in text
    assert "CLOB" not in text
    assert ("INSERT INTO tcmerge_alembic_version (version_num) VALUES ('0001_tc_schema');\n"
            in text) and "RETURNING" not in text


def test_offline_sql_refuses_other_dialects() -> None:
    from tcmerge.errors import ConfigError

    with pytest.raises(ConfigError, match="postgresql, oracle"):
        manage.offline_sql("mssql")


def test_tables_for_selection() -> None:
    from tcmerge.errors import ConfigError
    from tcmerge.schema import tables_for

    assert [t.name for t in tables_for("tc")] == [
        "tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog"]
    assert [t.name for t in tables_for("tc,ma,mft")][-2:] == ["jm", "aft_log"]
    with pytest.raises(ConfigError):
        tables_for("tc,xx")


@pytest.mark.parametrize("value", ["", " ", ","])
def test_an_empty_tables_value_is_refused_like_a_comma(value: str) -> None:
    import json

    from typer.testing import CliRunner

    from tcmerge.cli.app import app
    from tcmerge.errors import ConfigError
    from tcmerge.schema import tables_for

    # --tables "" (an unset shell variable) merged the TC tables only, while "," was
    # refused: a script meant some selection, so neither is taken for the default
    with pytest.raises(ConfigError, match="selects no table"):
        tables_for(value)
    result = CliRunner().invoke(app, ["schema", "check", "postgresql://u@h/d", "--tables",
                                      value, "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["message"] == "--tables selects no table"
