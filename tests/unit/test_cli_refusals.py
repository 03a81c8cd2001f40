"""Commands that read a target refuse MS SQL with exit 2 before any connection."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app

MSSQL = "mssql+pyodbc://sa:Ms-Pw-1@no-such-host.invalid/tc"


@pytest.mark.parametrize("args", [
    ["jobs", "list", "--target", MSSQL],
    ["jobs", "show", "abc", "--target", MSSQL],
    ["verify", "abc", "--target", MSSQL],
    ["restore", "abc", "--yes", "--target", MSSQL],
    ["run", "--yes", "--source", MSSQL, "--target", MSSQL],
])
def test_mssql_target_refused(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["code"] == "UNSUPPORTED_DATABASE"
    assert "Ms-Pw-1" not in result.output


def test_topology_name_without_topology_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["jobs", "list", "--target", "tcmerged", "--json"])
    assert result.exit_code == 2
    assert "--topology" in json.loads(result.stdout)["error"]["message"]
