"""tcmerge validate refuses MS SQL and mixed inputs with exit 2 before any connection."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tcmerge.cli.app import app

PW = "Secr3t-mssql"


def invoke(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["validate", *args, "--json"])
    assert PW not in result.stdout + result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_mssql_is_refused_before_any_connection() -> None:
    # the host does not resolve: a connection attempt would fail differently
    code, out = invoke("--source", f"mssql+pyodbc://sa:{PW}@no-such-host.invalid/tc",
                       "--source", "postgresql://u@no-such-host.invalid/a",
                       "--target", "postgresql://u@no-such-host.invalid/b")
    assert code == 2
    assert out == {"ok": False, "error": {"code": "UNSUPPORTED_DATABASE",
                                          "message": out["error"]["message"]}}  # type: ignore[index]


def test_mixed_types_are_refused() -> None:
    code, out = invoke("--source", f"oracle://u:{PW}@no-such-host.invalid:1521/?service_name=X",
                       "--target", "postgresql://u@no-such-host.invalid/b")
    assert code == 2 and out["error"]["code"] == "MIXED_DATABASE_TYPES"  # type: ignore[index]


def test_topology_errors_and_bad_transport_are_usage(tmp_path: Path) -> None:
    code, out = invoke("--target", "postgresql://u@h/b", "--topology",
                       str(tmp_path / "missing.toml"), "--group", "g1")
    assert code == 2 and out["error"]["code"] == "CONFIG_ERROR"  # type: ignore[index]
    code, out = invoke("--source", "postgresql://u@h/a", "--target", "postgresql://u@h/b",
                       "--group", "g1")
    assert code == 2 and "--topology" in out["error"]["message"]  # type: ignore[index]
    code, out = invoke("--source", "postgresql://u@h/a", "--target", "postgresql://u@h/b",
                       "--transport", "ftp")
    assert code == 2 and out["error"]["code"] == "CONFIG_ERROR"  # type: ignore[index]
    code, out = invoke("--source", "oracle://u@h:1521/?service_name=X",
                       "--target", "oracle://u@h:1521/?service_name=Y", "--transport", "copy")
    assert code == 2 and "not available" in out["error"]["message"]  # type: ignore[index]


def test_mssql_database_of_a_topology_is_refused(tmp_path: Path) -> None:
    topology = tmp_path / "cluster.toml"
    topology.write_text("""
[cluster]
name = "cup"
domain = "example.com"
id = "cup"
[databases.tcmssql]
type = "mssql"
host = "no-such-host.invalid"
name = "tc"
user = "sa"
[databases.merged]
url = "postgresql://u@no-such-host.invalid/merged"
[groups.sub1]
high_availability = true
nodes = ["1A", "1B"]
[nodes.1A]
id = 1
group = "sub1"
database = "tcmssql"
text_conference = "stopped"
[nodes.1B]
id = 2
group = "sub1"
database = "tcmssql"
text_conference = "stopped"
""")
    code, out = invoke("--topology", str(topology), "--group", "sub1", "--target", "merged")
    assert code == 2 and out["error"]["code"] == "UNSUPPORTED_DATABASE"  # type: ignore[index]
