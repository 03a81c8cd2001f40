"""Every shipped scenario passes step by step on a real PostgreSQL, with no message lost."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.db import create_engine
from tcmerge.dburl import DatabaseRef
from tcmerge.ha.scenario import load_scenario, shipped_scenarios
from tcmerge.ha.simulate import Simulation
from tcmerge.providers import DatabaseServer
from tcmerge.schema import manage
from tcmerge.testing.plugin import unique_name

pytestmark = pytest.mark.postgresql


@pytest.fixture
def engine(tc_database: DatabaseRef) -> Iterator[sa.Engine]:
    eng = create_engine(tc_database)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("name", sorted(shipped_scenarios()))
def test_shipped_scenario_passes_step_by_step(engine: sa.Engine, name: str) -> None:
    result = Simulation(load_scenario(name), engine).run()
    failed = [c.as_dict() for c in result.checks if not c.ok]
    assert failed == []
    assert len(result.checks) >= 5
    assert result.losses.lost == 0 and result.losses.duplicated == 0
    assert result.losses.out_of_order == 0 and result.losses.acknowledged >= 1
    assert result.ok and result.findings == []


def test_seed_failover_use_case_facts(engine: sa.Engine) -> None:
    result = Simulation(load_scenario("failover-use-case"), engine).run()
    failover, fallback = result.moves
    assert (failover.kind, failover.home, failover.backup) == ("failover", "1A", "1B")
    assert failover.detection_seconds == 90 and failover.ok
    assert (fallback.kind, fallback.ok) == ("fallback", True)
    states = [(e.t, e.node, e.details.get("target")) for e in result.timeline
              if e.kind == "state"]
    assert (190.0, "1A", "Failed Over with Critical Services not Running") in states
    assert (192.0, "1B", "Running in Backup Mode") in states
    assert (900, "1A", "Taking Back") in states and (900, "1B", "Falling Back") in states
    # 1B loaded 1A's room on failover (real time measured)
    assert any(t.node == "1B" and t.owner == "1A" and t.rooms == 1
               for t in result.load_timings)


def test_same_seed_gives_the_same_timeline(engine: sa.Engine,
                                           pg_server: DatabaseServer) -> None:
    scenario = load_scenario("failover-use-case")
    first = Simulation(scenario, engine).run()
    name = unique_name("tc")
    other_ref = pg_server.create_database(name)
    try:
        manage.upgrade(other_ref)
        other = create_engine(other_ref)
        try:
            second = Simulation(scenario, other).run()
            third = Simulation(scenario, other, seed=scenario.seed + 1).run()
        finally:
            other.dispose()
    finally:
        pg_server.drop_database(name)
    assert first.comparable() == second.comparable()
    assert first.comparable()["timeline"] != third.comparable()["timeline"]


def test_cli_simulates_against_a_database_url(tc_database: DatabaseRef) -> None:
    url = tc_database.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["ha", "simulate", "manual-failover", "--database", url,
                                      "--json"])
    assert result.exit_code == 0, result.stdout
    out = json.loads(result.stdout)
    assert out["ok"] is True and out["findings"] == []
    assert out["losses"]["lost"] == 0
    assert any(e["kind"] == "state" for e in out["timeline"])
    password = tc_database.url.password
    assert password and password not in result.stdout
    # the same scenario again on the same database: the earlier run's posts are not
    # this run's copies
    again = CliRunner().invoke(app, ["ha", "simulate", "manual-failover", "--database", url,
                                     "--json"])
    assert again.exit_code == 0, again.stdout
    rerun = json.loads(again.stdout)
    assert rerun["losses"] == {**out["losses"], "details": []} and rerun["ok"] is True


def test_cli_human_timeline(tc_database: DatabaseRef) -> None:
    url = tc_database.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["ha", "simulate", "double-failure", "--database", url],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stdout
    assert "Running in Failed Mode" in result.stdout
    assert "0 lost" in result.stdout
    # in 80 columns the texts wrap: no column of the timeline or the moves is cut
    assert "…" not in result.stdout, result.stdout


def test_cli_exit_1_when_an_expectation_fails(tc_database: DatabaseRef, tmp_path: object
                                              ) -> None:
    from pathlib import Path

    from tcmerge.ha.scenario import scenarios_dir

    assert isinstance(tmp_path, Path)
    text = (scenarios_dir() / "double-failure.toml").read_text(encoding="utf-8")
    text = text.replace('topology = "seed-topology.toml"',
                        f'topology = "{(scenarios_dir() / "seed-topology.toml").as_posix()}"')
    text = text.replace('at = 500\ndo = "expect"\nstates = { "1A" = "Running in Failed Mode"',
                        'at = 500\ndo = "expect"\nstates = { "1A" = "Normal"')
    path = tmp_path / "wrong.toml"
    path.write_text(text, encoding="utf-8")
    url = tc_database.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["ha", "simulate", str(path), "--database", url, "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["ok"] is False
    assert [f["code"] for f in out["findings"]] == ["HA_EXPECTATION_FAILED"]
