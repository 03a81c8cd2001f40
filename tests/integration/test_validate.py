"""tcmerge validate on real PostgreSQL servers: each case gives its finding and exit code,
and nothing changes anywhere (checksums and table lists equal before and after)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from tcmerge.db import libpq_params
from tcmerge.dburl import DatabaseRef, without_password
from tcmerge.links import dblink_conninfo
from tcmerge.providers.base import DatabaseServer
from tcmerge.request import MergeRequest
from tcmerge.testing.plugin import unique_name
from tcmerge.validate import choose_transport, validate
from tests.integration.validate_helpers import (
    PASSWORD,
    admin_execute,
    make_tc_database,
    run_validate,
    snapshot,
)

pytestmark = pytest.mark.postgresql


@pytest.fixture
def role(pg_server: DatabaseServer) -> str:
    name = unique_name("tcuser")
    pg_server.create_role(name, PASSWORD)
    return name


@pytest.fixture
def dbs(pg_server: DatabaseServer, role: str) -> Iterator[Callable[..., DatabaseRef]]:
    """Make TC databases on the shared server; all dropped afterwards."""
    made: list[str] = []

    def make(prefix: str, **options: object) -> DatabaseRef:
        name = unique_name(prefix)
        made.append(name)
        return make_tc_database(pg_server, name, role, **options)  # type: ignore[arg-type]

    yield make
    for name in made:
        pg_server.drop_database(name)


def via_socket(server: DatabaseServer, ref: DatabaseRef) -> DatabaseRef:
    """The same database reached through the server's Unix socket (another URL text)."""
    socket_dir = str(getattr(server, "socket_dir"))  # noqa: B009
    url = ref.url
    return DatabaseRef(URL.create(url.drivername, username=url.username, password=url.password,
                                  database=url.database,
                                  query={"host": socket_dir, "port": str(url.port)}))


def names(*refs: DatabaseRef) -> list[str]:
    return [str(r.url.database) for r in refs]


def test_clean_inputs_validate_ok_and_change_nothing(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef], role: str) -> None:
    target = dbs("tgt", dblink=True, rooms=())
    s1 = dbs("src", rooms=("a@conference-1.example.com",))
    s2 = dbs("src", rooms=("b@conference-2.example.com",))
    before = snapshot(pg_server, names(target, s1, s2))
    result = run_validate(target, s1, s2)
    assert result.exit_code == 0, result.stdout
    report = result.json
    assert report["ok"] is True and report["job_id"] is None
    assert not [f for f in report["findings"] if f["severity"] != "info"], report["findings"]
    # tcmerge's own sessions and dblink probes are not "other sessions"
    assert "ACTIVE_SESSIONS" not in result.codes()
    assert report["transports"]["copy"]["possible"] is True
    # no live dblink probe without --transport dblink (it would send the passwords to the
    # target server): what the catalogs tell is an info, and dblink is never chosen
    assert report["transports"]["dblink"]["possible"] is False
    assert all(p["probe"] is None for p in report["transports"]["dblink"]["sources"])
    [unprobed] = result.findings("DBLINK_NOT_PROBED")
    assert "as far as the catalogs tell it would work" in unprobed["message"]
    roles = [d["role"] for d in report["databases"]]
    assert roles == ["target", "source 1", "source 2"]
    assert all(d["encoding"] == "UTF8" and d["server_version"] for d in report["databases"])
    # with --transport dblink: a live probe by SCRAM pass-through where the target offers
    # it (PostgreSQL 18), else a warning that the merge would send the password
    pg_server.execute([f"GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {role}"],
                      database=str(target.url.database))
    forced = run_validate(target, s1, s2, extra=["--transport", "dblink"])
    assert forced.exit_code == 0, forced.stdout
    assert "ACTIVE_SESSIONS" not in forced.codes()  # the probe's sessions are tcmerge's
    if int(pg_server.version.split(".")[0]) >= 18:
        assert len(forced.findings("DBLINK_OK")) == 2
        assert not forced.findings("DBLINK_SENDS_PASSWORD")
        probes = [p["probe"] for p in forced.json["transports"]["dblink"]["sources"]]
        assert all(p["ok"] and p["read_only"] and p["address"] for p in probes)
    else:
        assert len(forced.findings("DBLINK_SENDS_PASSWORD")) == 2
    assert forced.json["transports"]["dblink"]["possible"] is True
    assert snapshot(pg_server, names(target, s1, s2)) == before


def test_target_is_source_is_info_and_duplicate_source_is_an_error(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt")
    other = dbs("src", rooms=("b@conference-2.example.com",))
    # the same database reached through another URL text (Unix socket instead of TCP)
    same = via_socket(pg_server, target)
    assert same.url != target.url
    result = run_validate(target, same, other)
    assert result.exit_code == 0, result.stdout
    assert result.findings("TARGET_IS_SOURCE")[0]["severity"] == "info"
    twice = run_validate(target, other, via_socket(pg_server, other))
    assert twice.exit_code == 1
    assert twice.findings("DUPLICATE_SOURCE")[0]["severity"] == "error"
    # one rule for repeated inputs: the target named twice as a source is a duplicate too
    target_twice = run_validate(target, same, target)
    assert target_twice.exit_code == 1
    assert [f["severity"] for f in target_twice.findings("TARGET_IS_SOURCE")] == ["info"]
    assert [f["severity"] for f in target_twice.findings("DUPLICATE_SOURCE")] == ["error"]
    # the target as its only source: nothing to merge, refused
    alone = run_validate(target, same)
    assert alone.exit_code == 1
    assert alone.findings("NOTHING_TO_MERGE")[0]["severity"] == "error"
    assert not alone.findings("DUPLICATE_SOURCE")


def test_wrong_password_and_missing_database(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    wrong = "Wr0ng-pa55word-xyz"
    bad_password = DatabaseRef(source.url.set(password=wrong))
    result = run_validate(target, bad_password)
    assert result.exit_code == 1
    failed = result.findings("CONNECTION_FAILED")
    assert len(failed) == 1 and "password authentication failed" in failed[0]["message"]
    assert "password" in failed[0]["hint"]
    assert wrong not in result.stdout + result.stderr
    missing = DatabaseRef(source.url.set(database=unique_name("nosuchdb")))
    result = run_validate(target, missing)
    assert result.exit_code == 1
    failed = result.findings("CONNECTION_FAILED")
    assert "does not exist" in failed[0]["message"]
    assert failed[0]["database"] == missing.label


def test_missing_grants_give_the_exact_grant(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef], role: str) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    tgt = str(target.url.database)
    pg_server.execute([
        f'REVOKE INSERT, UPDATE ON tc_rooms FROM "{role}"',
        "REVOKE EXECUTE ON FUNCTION dblink_connect(text, text) FROM PUBLIC",
    ], database=tgt)
    pg_server.execute(f'REVOKE SELECT ON tc_users FROM "{role}"', database=str(source.url.database))
    before = snapshot(pg_server, names(target, source))
    result = run_validate(target, source)
    assert result.exit_code == 1
    hints = {f.get("table"): f["hint"] for f in result.findings("PRIVILEGE_MISSING")}
    assert hints["tc_rooms"] == f"GRANT INSERT, UPDATE ON TABLE public.tc_rooms TO {role};"
    assert hints["tc_users"] == f"GRANT SELECT ON TABLE public.tc_users TO {role};"
    dblink = [f for f in result.findings("PRIVILEGE_MISSING") if "dblink" in f["message"]]
    # the COPY relay will carry the merge: dblink's missing grant only informs
    assert dblink and dblink[0]["severity"] == "info"
    assert "dblink_connect(text, text)" in dblink[0]["hint"]
    assert snapshot(pg_server, names(target, source)) == before


def test_no_dblink_informs_unless_dblink_is_requested(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt")  # no extension, and the non-superuser may not create it
    source = dbs("src")
    result = run_validate(target, source)
    assert result.exit_code == 0, result.stdout
    finding = result.findings("DBLINK_UNAVAILABLE")[0]
    assert finding["severity"] == "info"  # the COPY relay will be used
    assert run_validate(target, source, extra=["--strict"]).exit_code == 0
    skipped = run_validate(target, source, extra=["--transport", "copy"])
    assert skipped.exit_code == 0 and not skipped.findings("DBLINK_UNAVAILABLE")
    assert "CREATE EXTENSION dblink" in finding["hint"]
    assert result.json["transport"] == "copy"
    forced = run_validate(target, source, extra=["--transport", "dblink"])
    assert forced.exit_code == 1
    assert forced.findings("DBLINK_UNAVAILABLE")[0]["severity"] == "error"


def test_another_session_is_named(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    params = libpq_params(source.url)
    with psycopg.connect(**params, application_name="cisco-xcp-text-conf"):
        result = run_validate(target, source)
    sessions = result.findings("ACTIVE_SESSIONS")
    assert len(sessions) == 1, result.findings
    assert sessions[0]["database"] == source.label and sessions[0]["count"] == 1
    assert "cisco-xcp-text-conf" in sessions[0]["message"]
    assert "127.0.0.1" in sessions[0]["message"]
    assert sessions[0]["severity"] == "error" and result.exit_code == 1
    assert run_validate(target, source).exit_code == 0  # the session is gone


def test_sql_ascii_source_with_latin1_bytes(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src", encoding="SQL_ASCII")
    src = str(source.url.database)
    room = "ops@conference-1.example.com"
    # 'café' in Latin-1 (e9), and a valid UTF-8 'é' (c3 a9) that must not be reported
    admin_execute(pg_server, src, [
        "INSERT INTO tc_msgarchive VALUES (7, 'ops@conference-1.example.com', 'a@x', 'n', "
        "TIMESTAMP '2024-01-02 00:00:00', 'g', 4, 4, "
        "convert_from('\\x636166e9'::bytea, 'SQL_ASCII'), 'm', NULL, NULL, NULL)",
        "INSERT INTO tc_msgarchive VALUES (8, 'ops@conference-1.example.com', 'a@x', 'n', "
        "TIMESTAMP '2024-01-02 00:00:01', 'g', 4, 4, "
        "convert_from('\\x636166c3a9'::bytea, 'SQL_ASCII'), 'm', NULL, NULL, NULL)",
    ])
    before = snapshot(pg_server, names(target, source))
    result = run_validate(target, source)
    assert result.exit_code == 1
    found = result.findings("INVALID_ENCODING")
    assert len(found) == 1 and found[0]["table"] == "tc_msgarchive" and found[0]["count"] == 1
    assert found[0]["details"]["keys"] == [
        {"key": {"to_jid": room, "msg_id": "7"}, "columns": ["body_string"]}]
    assert snapshot(pg_server, names(target, source)) == before
    # the hint's statement, applied to that row, is the cure
    statement = found[0]["hint"].split("Latin-1: ")[1].split(") or merge")[0]
    admin_execute(pg_server, src, [statement.replace("SET col", "SET body_string").replace(
        "(col,", "(body_string,").replace("WHERE ...", "WHERE msg_id = 7")])
    assert run_validate(target, source).exit_code == 0


def test_source_column_longer_than_target(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    pg_server.execute("ALTER TABLE tc_rooms ALTER COLUMN subject TYPE varchar(100)",
                      database=str(target.url.database))
    # a subject longer than the target's column (shorter ones would fit: a warning, see
    # merge/test_live_schema.py)
    pg_server.execute("UPDATE tc_rooms SET subject = repeat('s', 150) WHERE room_jid = "
                      "(SELECT min(room_jid) FROM tc_rooms)", database=str(source.url.database))
    result = run_validate(target, source)
    assert result.exit_code == 1
    cross = [f for f in result.findings("SCHEMA_TYPE_MISMATCH")
             if f["details"].get("source_database") == source.label]
    assert len(cross) == 1 and cross[0]["severity"] == "error"
    assert cross[0]["table"] == "tc_rooms" and cross[0]["details"]["column"] == "subject"


def test_invalid_value_in_source(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    src = str(source.url.database)
    pg_server.execute(["ALTER TABLE tc_users DROP CONSTRAINT check_role",
                       "UPDATE tc_users SET role = 'superhero'"], database=src)
    result = run_validate(target, source)
    assert result.exit_code == 1
    found = result.findings("INVALID_VALUE")
    assert len(found) == 1 and found[0]["table"] == "tc_users" and found[0]["count"] == 1
    assert found[0]["details"]["keys"][0]["real_jid"] == "bob@example.com"


def test_timestamp_with_time_zone_in_a_source_is_a_type_mismatch(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    """Moved into the target's timestamp, its values would be shifted to UTC. (Against the
    model alone it is a warning: a target of timestamptz would hold them.)"""
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    pg_server.execute("ALTER TABLE tc_msgarchive ALTER COLUMN sent_date TYPE timestamptz",
                      database=str(source.url.database))
    result = run_validate(target, source)
    assert result.exit_code == 1
    found = [f for f in result.findings("SCHEMA_TYPE_MISMATCH") if f["severity"] == "error"]
    assert [(f["table"], f["details"]["column"]) for f in found] == [
        ("tc_msgarchive", "sent_date")]
    assert "time zone" in found[0]["message"]


def test_rows_sharing_the_model_key_in_a_source_without_that_key(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    """Found by validate (the target's key would refuse them half-way through the run)."""
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    src = str(source.url.database)
    pg_server.execute(["ALTER TABLE tc_msgarchive DROP CONSTRAINT tc_msgarchive_pkey",
                       "INSERT INTO tc_msgarchive SELECT * FROM tc_msgarchive WHERE msg_id = 1",
                       "ALTER TABLE tc_users DROP CONSTRAINT tc_users_pkey"], database=src)
    result = run_validate(target, source)
    assert result.exit_code == 1
    found = result.findings("INVALID_VALUE")
    # tc_users lost its key too, but holds no two rows with one key
    assert [(f["table"], f["count"]) for f in found] == [("tc_msgarchive", 2)]
    assert found[0]["details"]["keys"] == [
        {"to_jid": "ops@conference-1.example.com", "msg_id": "1"}]


def test_service_running_and_choose_transport(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    target = dbs("tgt", dblink=True)
    source = dbs("src")
    request = MergeRequest(sources=(source,), target=target,
                           services={"imp-1a": "running", "imp-1b": "stopped"}, group="sub1")
    report = validate(request)
    assert not report.ok
    running = [f for f in report.findings if f.code == "SERVICE_RUNNING"]
    assert running and running[0].details["nodes"] == ["imp-1a"]
    assert choose_transport(report, None) == "copy"
    assert choose_transport(report, "dblink") == "dblink"
    calls: list[str] = []

    def data_checks(req: MergeRequest, rep: object) -> list:  # type: ignore[type-arg]
        calls.append("called")
        return []

    validate(MergeRequest(sources=(source,), target=target), data_checks=data_checks)
    assert calls == ["called"]
    broken = DatabaseRef(source.url.set(database=unique_name("nosuchdb")))
    skipped = validate(MergeRequest(sources=(broken,), target=target), data_checks=data_checks)
    assert calls == ["called"] and "DATA_NOT_CHECKED" in skipped.codes()


def test_missing_temporary_privilege_on_the_target(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef], role: str) -> None:
    target = dbs("tgt")
    source = dbs("src")
    tgt = str(target.url.database)
    pg_server.execute(f'REVOKE TEMPORARY ON DATABASE "{tgt}" FROM PUBLIC, "{role}"')
    result = run_validate(target, source)
    assert result.exit_code == 1
    temp = [f for f in result.findings("PRIVILEGE_MISSING")
            if f.get("details", {}).get("privilege") == "TEMPORARY"]
    assert len(temp) == 1 and temp[0]["database"] == target.label
    assert temp[0]["hint"] == f"GRANT TEMPORARY ON DATABASE {tgt} TO {role};"
    pg_server.execute(f'GRANT TEMPORARY ON DATABASE "{tgt}" TO "{role}"')
    assert run_validate(target, source).exit_code == 0


def test_merge_in_progress_on_the_target(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef]) -> None:
    from tcmerge.db import MERGE_LOCK_KEY

    target = dbs("tgt")
    source = dbs("src")
    # a merge's session: it holds the target's merge lock (named as tcmerge's sessions are)
    with psycopg.connect(**libpq_params(target.url), application_name="tcmerge-merge") as held:
        held.execute("SELECT pg_advisory_xact_lock(%s)", (MERGE_LOCK_KEY,))
        busy = run_validate(target, source)
    assert busy.exit_code == 1
    assert [f["database"] for f in busy.findings("MERGE_IN_PROGRESS")] == [target.label]
    assert run_validate(target, source).exit_code == 0


def test_dblink_uses_the_password_libpq_finds_in_the_password_file(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The target server cannot read this machine's .pgpass: tcmerge hands dblink the
    password libpq found there (as it hands over one given in the URL)."""
    target = dbs("tgt", dblink=True, rooms=())
    source = dbs("src")
    bare = DatabaseRef(without_password(source.url))
    assert bare.url.password is None
    url = source.url
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{url.host}:{url.port}:{url.database}:{url.username}:"
                        f"{url.password}\n", encoding="utf-8")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    result = run_validate(target, bare, extra=["--transport", "dblink"])
    assert result.exit_code == 0, result.stdout
    assert result.json["transports"]["dblink"]["possible"] is True
    # no pass-through (no USAGE on dblink_fdw): the merge would send the password, and
    # validation says so without sending it
    assert result.findings("DBLINK_SENDS_PASSWORD")
    assert not result.findings("DBLINK_UNAVAILABLE")
    assert PASSWORD not in result.stdout + result.stderr
    assert conninfo_to_dict(dblink_conninfo(bare))["password"] == url.password


def test_a_password_libpq_cannot_find_gets_a_hint_on_where_to_give_it(
        pg_server: DatabaseServer, dbs: Callable[..., DatabaseRef], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """"fe_sendauth: no password supplied" came with the generic "check the URL" hint; a
    password file line naming the host otherwise than the URL is the usual cause."""
    target = dbs("tgt", rooms=())
    bare = DatabaseRef(without_password(dbs("src").url))
    passfile = tmp_path / "pgpass"
    passfile.write_text("elsewhere.example.com:*:*:*:not-this-one\n", encoding="utf-8")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    result = run_validate(target, bare)
    assert result.exit_code == 1, result.stdout
    failed = result.findings("CONNECTION_FAILED")
    assert failed and "no password supplied" in failed[0]["message"]
    assert "password file line whose host is written as in the URL" in failed[0]["hint"]
