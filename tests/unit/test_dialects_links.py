"""Dialect table, link statements compiled for Oracle, dblink connection strings, transports."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.dialects import oracle

from tcmerge.dburl import parse_database
from tcmerge.dialects import adapter_class, adapter_for
from tcmerge.dialects.oracle.adapter import OracleAdapter, link_kind
from tcmerge.dialects.oracle.ddl import PASSWORD_PARAM, insert_from_link
from tcmerge.dialects.postgresql.adapter import PostgresAdapter
from tcmerge.errors import ConfigError, UnsupportedDatabaseError
from tcmerge.links import (
    PassthroughFacts,
    dblink_conninfo,
    passthrough_statements,
    plan_oracle_link,
)
from tcmerge.schema import tc
from tcmerge.validate import ValidationReport, choose_transport

ORA = oracle.dialect()  # type: ignore[no-untyped-call]
SECRET = "S3cret-pw'x"


def compiled(statement: sa.ClauseElement) -> str:
    return str(statement.compile(dialect=ORA))


def test_adapters_from_the_explicit_table() -> None:
    assert adapter_class("postgresql") is PostgresAdapter
    assert isinstance(adapter_for(parse_database("oracle://u@h:1521/?service_name=X")),
                      OracleAdapter)
    assert PostgresAdapter.supports_dblink and PostgresAdapter.transactional_ddl
    assert not OracleAdapter.transactional_ddl and OracleAdapter.max_identifier_length >= 30
    with pytest.raises(UnsupportedDatabaseError, match="not supported for merging"):
        adapter_class("mssql")
    with pytest.raises(UnsupportedDatabaseError):
        adapter_class("sqlite")


def test_oracle_link_private_when_allowed_public_only_when_it_must() -> None:
    ref = parse_database(f"oracle://tcuser:{SECRET.replace(chr(39), '%27')}@db1:1521/"
                         "?service_name=FREEPDB1")
    private = plan_oracle_link(ref, {"CREATE DATABASE LINK", "CREATE TABLE"}, name="tcm_l1")
    text = compiled(private.create)
    assert text == ("BEGIN EXECUTE IMMEDIATE 'CREATE DATABASE LINK \"TCM_L1\" CONNECT TO "
                    "\"TCUSER\" IDENTIFIED BY \"' || :tcmerge_link_password || '\" USING "
                    "''//db1:1521/FREEPDB1'''; END;")
    assert SECRET not in text and PASSWORD_PARAM in text
    assert compiled(private.drop) == 'DROP DATABASE LINK "TCM_L1"'
    assert compiled(private.probe).replace("\n", " ") == 'SELECT 1  FROM dual@"TCM_L1"'
    public = plan_oracle_link(ref, {"CREATE PUBLIC DATABASE LINK", "DROP PUBLIC DATABASE LINK"})
    assert "CREATE PUBLIC DATABASE LINK" in compiled(public.create)
    assert compiled(public.drop).startswith("DROP PUBLIC DATABASE LINK")
    assert link_kind({"CREATE PUBLIC DATABASE LINK"}) is None
    with pytest.raises(Exception, match="no database link"):
        plan_oracle_link(ref, {"CREATE TABLE"})
    quote_pw = parse_database('oracle://tcuser:a%22b@db1:1521/?service_name=X')
    with pytest.raises(ConfigError, match="double quote"):
        plan_oracle_link(quote_pw, {"CREATE DATABASE LINK"})
    # a wallet or external login serves tcmerge's sessions, not the target's link: refused
    # before any link is made (IDENTIFIED BY "" failed mid-merge with ORA-01741)
    no_pw = parse_database("oracle://tcuser@db1:1521/?service_name=X")
    with pytest.raises(ConfigError, match="needs the source user's password"):
        plan_oracle_link(no_pw, {"CREATE DATABASE LINK"})


def test_oracle_link_names_the_user_and_database_tcmerge_connects_to() -> None:
    # a user name is case-insensitive when tcmerge connects (TcUser logs in as TCUSER), but
    # CONNECT TO "TcUser" is exact: the link failed with ORA-01017 (so did c##tc, quoted
    # lower-case for its '#'); a URL's database part is a SID to SQLAlchemy's Oracle
    # dialect, but the link used it as a service name (ORA-12514 where they differ)
    def create(url: str) -> str:
        return compiled(plan_oracle_link(parse_database(url), {"CREATE DATABASE LINK"},
                                         name="tcm_l1").create)

    assert 'CONNECT TO "TCUSER" IDENTIFIED BY' in create(
        "oracle://TcUser:pw@db1:1521/?service_name=FREEPDB1")
    assert 'CONNECT TO "C##TC" IDENTIFIED BY' in create(
        "oracle://c%23%23tc:pw@db1:1521/?service_name=FREEPDB1")
    assert 'CONNECT TO "MixedCase" IDENTIFIED BY' in create(
        "oracle://%22MixedCase%22:pw@db1:1521/?service_name=FREEPDB1")
    assert ("USING ''(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=db1)(PORT=1521))"
            "(CONNECT_DATA=(SID=ORCL)))''") in create("oracle://tcuser:pw@db1/ORCL")
    assert "USING ''//db1:1522/FREEPDB1''" in create(
        "oracle://tcuser:pw@db1:1522/?service_name=FREEPDB1")
    with pytest.raises(ConfigError, match="service_name or SID"):
        create("oracle://tcuser:pw@mytnsalias")


def test_lobs_move_by_insert_select_over_the_link() -> None:
    text = compiled(insert_from_link("tcm_stage_msgarchive", tc.tc_msgarchive, "TCM_L1"))
    assert text.startswith("INSERT INTO tcm_stage_msgarchive (msg_id, to_jid")
    assert "src.body_text, src.message_text" in text
    assert 'FROM tc_msgarchive@"TCM_L1" src' in text
    timelog = compiled(insert_from_link(tc.tc_timelog, tc.tc_timelog, "TCM_L1"))
    assert 'src."start", src."end"' in timelog


def test_dblink_conninfo_is_read_only_named_and_quoted() -> None:
    ref = parse_database("postgresql://tc%20user:x@db2:5433/tc'db?sslmode=require")
    ref = ref.with_password(SECRET)
    info = conninfo_to_dict(dblink_conninfo(ref, host="10.0.0.9"))
    assert info["host"] == "10.0.0.9" and info["port"] == "5433"
    assert info["user"] == "tc user" and info["dbname"] == "tc'db"
    assert info["password"] == SECRET and info["sslmode"] == "require"
    assert info["application_name"] == "tcmerge"
    assert info["options"] == "-c default_transaction_read_only=on"
    # the merge's dblink transport: its name and session settings, still read-only
    merge = conninfo_to_dict(dblink_conninfo(ref, application_name="tcmerge-dblink",
                                             options="-c DateStyle=ISO,YMD"))
    assert merge["application_name"] == "tcmerge-dblink" and merge["host"] == "db2"
    assert merge["options"] == "-c default_transaction_read_only=on -c DateStyle=ISO,YMD"
    # a socket directory given as a URL parameter is the host; client file paths stay out
    local = parse_database("postgresql://tc@/tc?host=/run/pg&port=5499&sslrootcert=/home/x/ca")
    info = conninfo_to_dict(dblink_conninfo(local))
    assert (info["host"], info["port"]) == ("/run/pg", "5499") and "sslrootcert" not in info


def test_passthrough_server_and_mapping_carry_no_password() -> None:
    ref = parse_database("postgresql://tc%20user:x@db2:5433/tc'db?sslmode=require"
                         "&require_auth=password").with_password(SECRET)
    create, mapping = passthrough_statements("tcmerge_srv_1", ref, host="10.0.0.9",
                                             options="-c DateStyle=ISO,YMD")
    text = create.as_string() + mapping.as_string()
    assert SECRET not in text and "password" not in text
    assert text.startswith('CREATE SERVER "tcmerge_srv_1" FOREIGN DATA WRAPPER "dblink_fdw" '
                           'OPTIONS (')
    for option in ('"host" \'10.0.0.9\'', '"port" \'5433\'', '"dbname" \'tc\'\'db\'',
                   '"sslmode" \'require\'', '"use_scram_passthrough" \'true\'',
                   '"options" \'-c default_transaction_read_only=on -c DateStyle=ISO,YMD\''):
        assert option in create.as_string()
    # dblink sets require_auth itself for pass-through
    assert "require_auth" not in text
    assert mapping.as_string() == ('CREATE USER MAPPING FOR CURRENT_USER SERVER '
                                   '"tcmerge_srv_1" OPTIONS ("user" \'tc user\')')


def test_passthrough_blockers_from_the_catalogs() -> None:
    scram = "scram-sha-256"
    assert PassthroughFacts(180001, "u", True, scram).blocker is None
    assert "PostgreSQL 15" in str(PassthroughFacts(150004, "u", True, scram).blocker)
    assert "no foreign-data wrapper" in str(PassthroughFacts(180001, "u", None, scram).blocker)
    no_usage = PassthroughFacts(180001, "tc user", False, scram)
    assert "USAGE" in str(no_usage.blocker)
    assert no_usage.grant_hint().endswith('TO "tc user";')
    assert "trust" in str(PassthroughFacts(180001, "u", True, None).blocker)
    assert "cert" in str(PassthroughFacts(180001, "u", True, "cert").blocker)


def test_choose_transport() -> None:
    both = ValidationReport(transports={"copy": {"possible": True},
                                        "dblink": {"possible": True}})
    assert choose_transport(both, None) == "copy"
    assert choose_transport(both, "dblink") == "dblink"
    only_link = ValidationReport(transports={"dblink": {"possible": True}}, dialect="oracle")
    assert choose_transport(only_link, None) == "dblink"
    with pytest.raises(ConfigError):
        choose_transport(only_link, "copy")
    with pytest.raises(ConfigError):
        choose_transport(ValidationReport(transports={"copy": {"possible": False}}), None)
    assert ValidationReport().as_dict()["job_id"] is None


def test_oracle_checksum_statement_compiles_without_lob_in_ora_hash() -> None:
    text = str(OracleAdapter().checksum_statement(tc.tc_messages))
    assert "DBMS_LOB.GETLENGTH(x.msg)" in text and "ORA_HASH(x.msg," not in text
