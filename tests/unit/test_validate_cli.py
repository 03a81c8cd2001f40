"""tcmerge validate refuses MS SQL and mixed inputs with exit 2 before any connection."""

from __future__ import annotations

import json

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


def test_topology_is_not_wired_yet_and_bad_transport_is_usage() -> None:
    code, out = invoke("--source", "postgresql://u@h/a", "--target", "postgresql://u@h/b",
                       "--topology", "cluster.toml", "--group", "g1")
    assert code == 2 and "topology" in out["error"]["message"]  # type: ignore[index]
    code, out = invoke("--source", "postgresql://u@h/a", "--target", "postgresql://u@h/b",
                       "--transport", "ftp")
    assert code == 2 and out["error"]["code"] == "CONFIG_ERROR"  # type: ignore[index]
    code, out = invoke("--source", "oracle://u@h:1521/?service_name=X",
                       "--target", "oracle://u@h:1521/?service_name=Y", "--transport", "copy")
    assert code == 2 and "not available" in out["error"]["message"]  # type: ignore[index]
