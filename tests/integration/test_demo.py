"""tcmerge demo: the whole story, and nothing left behind (or everything kept with --keep)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app

pytestmark = pytest.mark.postgresql


def _leftovers() -> set[str]:
    tmp = Path(tempfile.gettempdir())
    return {p.name for p in tmp.glob("tcmerge-pg-demo*")} | {
        p.name for p in tmp.glob("tcmerge-demo-*")}


def test_demo_runs_the_whole_story_and_cleans_up() -> None:
    before = _leftovers()
    result = CliRunner().invoke(app, ["demo", "--json", "--rooms", "30", "--messages", "40"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] is True
    assert out["validation"]["ok"] and out["validation"]["data_checked"]
    codes = {f["code"] for f in out["validation"]["findings"]}
    assert {"MSG_ID_COLLISION", "AFFILIATION_CONFLICT", "ROOM_DIVERGED"} <= codes
    merge = out["merge"]
    assert merge["status"] == "succeeded" and merge["job_id"]
    archive = merge["tables"]["tc_msgarchive"]
    assert archive["read"][0] == 0 and all(n > 0 for n in archive["read"][1:])
    assert archive["duplicates"] > 0 and archive["renumbered"] > 0
    assert sum(archive["read"]) == archive["inserted"] + archive["duplicates"] + \
        archive["conflicts"]
    assert out["verification"]["ok"] is True
    assert out["topology"]["assignment"] == {"1A": "tcmerged", "1B": "tcmerged"}
    failover = out["failover"]
    assert failover["ok"] is True and failover["scenario"] == "failover-use-case"
    assert failover["losses"]["lost"] == 0
    assert out["kept"] is None
    assert _leftovers() == before


def test_demo_keep_leaves_a_usable_server_without_printing_passwords() -> None:
    result = CliRunner().invoke(app, ["demo", "--keep", "--json", "--rooms", "10",
                                      "--messages", "10"])
    assert result.exit_code == 0, result.output
    kept = json.loads(result.stdout)["kept"]
    try:
        pgpass = Path(kept["PGPASSFILE"])
        assert oct(pgpass.stat().st_mode & 0o777) == "0o600"
        password = pgpass.read_text().strip().rsplit(":", 1)[1]
        assert password and password not in result.output
        url = kept["tcmerged"]  # a libpq URI, as psql takes it
        assert url.startswith("postgresql://") and password not in url
        assert kept["psql"] == f"PGPASSFILE={pgpass} psql {url}"
        os.environ["PGPASSFILE"] = str(pgpass)
        try:
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM tc_msgarchive").fetchone()
        finally:
            del os.environ["PGPASSFILE"]
        assert row is not None and row[0] > 0
    finally:
        subprocess.run(kept["stop"], shell=True, check=True, capture_output=True)
    assert not pgpass.parent.exists()
    assert not Path(kept["topology"]).parent.exists()
