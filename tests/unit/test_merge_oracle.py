"""Oracle merge statements, compiled offline (no Oracle server here)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import oracle, postgresql
from sqlalchemy.schema import CreateTable

from tcmerge.merge import oracle as ora
from tcmerge.schema import tc


def text(element: sa.ClauseElement, **kw: object) -> str:
    return str(element.compile(dialect=oracle.dialect(), **kw))


def test_stage_over_link_is_insert_select_from_table_at_link() -> None:
    meta = sa.MetaData()
    staging = ora.staging_table(tc.tc_msgarchive, "ab12cd34", meta)
    sql = text(ora.stage_over_link(tc.tc_msgarchive, staging, "TCM_AB12CD34_L1", 2),
               compile_kwargs={"literal_binds": True})
    assert sql.startswith("INSERT /*+ APPEND */ INTO tcm_ab12cd34_s_arch (inp, msg_id, to_jid")
    assert 'FROM tc_msgarchive@"TCM_AB12CD34_L1" r' in sql
    assert "SELECT 2 AS inp, r.msg_id, r.to_jid" in sql
    assert "r.body_text" in sql and "r.message_text" in sql  # LOBs: fine in INSERT ... SELECT


def test_timelog_reserved_words_stay_quoted_over_the_link() -> None:
    meta = sa.MetaData()
    staging = ora.staging_table(tc.tc_timelog, "ab12cd34", meta)
    sql = text(ora.stage_over_link(tc.tc_timelog, staging, "TCM_AB12CD34_L1", 1),
               compile_kwargs={"literal_binds": True})
    assert 'r."start"' in sql and 'r."end"' in sql


def test_staging_ddl_uses_oracle_types() -> None:
    ddl = text(CreateTable(ora.staging_table(tc.tc_msgarchive, "ab12cd34", sa.MetaData())))
    assert "CREATE TABLE tcm_ab12cd34_s_arch (" in ddl
    assert "inp NUMERIC(5, 0) NOT NULL" in ddl
    assert "to_jid VARCHAR2(3071)" in ddl and "body_text CLOB" in ddl


def test_table_at_link_is_refused_outside_oracle() -> None:
    src = ora.remote(tc.tc_rooms, "L")
    try:
        str(sa.select(src).compile(dialect=postgresql.dialect()))
    except sa.exc.CompileError as exc:
        assert "Oracle" in str(exc)
    else:
        raise AssertionError("table@link compiled for PostgreSQL")


def test_lock_and_cleanup_statements() -> None:
    assert "DBMS_LOCK.REQUEST(h, DBMS_LOCK.X_MODE, 0, TRUE)" in text(ora.lock_target())
    assert "DROP DATABASE LINK" in text(ora.drop_link("TCM_X_L1"))
    cleanup = text(ora.leftover_objects(), compile_kwargs={"literal_binds": True})
    assert "user_db_links" in cleanup and "user_tables" in cleanup and "'TCM_%'" in cleanup
