"""Scenario files: the shipped ones load; broken ones are configuration errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.errors import ConfigError
from tcmerge.ha.scenario import load_scenario, scenarios_dir, shipped_scenarios

SHIPPED = {"failover-use-case", "peer-loss-heartbeat", "manual-failover", "double-failure",
           "recovery", "automatic-fallback", "non-ha", "network-loss",
           "database-unreachable-takeover"}


def test_every_required_scenario_is_shipped_and_loads() -> None:
    assert set(shipped_scenarios()) == SHIPPED
    for name in SHIPPED:
        scenario = load_scenario(name)
        assert scenario.events and scenario.rooms
        assert any(e.do == "expect" for e in scenario.events)


def test_events_are_ordered_by_time_then_file_order() -> None:
    scenario = load_scenario("failover-use-case")
    keys = [(e.at, e.index) for e in scenario.events]
    assert keys == sorted(keys)
    assert scenario.room("ops").jid == "ops@conference-1-cup.example.com"


BASE = f"""
[scenario]
name = "t"
topology = "{(scenarios_dir() / 'seed-topology.toml').as_posix()}"
[[rooms]]
name = "ops"
node = "1A"
"""


@pytest.mark.parametrize("events", [
    '[[events]]\nat = 1\ndo = "explode"\n',
    '[[events]]\nat = 1\ndo = "crash"\nnode = "9Z"\n',
    '[[events]]\nat = -1\ndo = "crash"\nnode = "1A"\n',
    '[[events]]\nat = 1\ndo = "post"\nuser = "zed"\nroom = "ops"\n',
    '[[events]]\nat = 1\ndo = "post"\nuser = "andy"\nroom = "nope"\n',
    '[[events]]\nat = 1\ndo = "expect"\nstates = { "1A" = "Sleeping" }\n',
    '[[events]]\nat = 1\ndo = "service_stop"\nnode = "1A"\nservice = "dns"\n',
    '[[events]]\nat = 1\ndo = "crash"\nnode = "1A"\ncolour = "red"\n',
])
def test_broken_scenarios_are_refused(tmp_path: Path, events: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE + events, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert info.value.exit_code == 2
    result = CliRunner().invoke(app, ["ha", "simulate", str(path), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "SCENARIO_INVALID"


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    result = CliRunner().invoke(app, ["ha", "simulate", "no-such-scenario", "--json"])
    assert result.exit_code == 2
    assert "failover-use-case" in json.loads(result.stdout)["error"]["message"]


def test_simulation_refuses_mssql_before_connecting() -> None:
    result = CliRunner().invoke(app, ["ha", "simulate", "failover-use-case", "--database",
                                      "mssql+pyodbc://u:pw@host/db", "--json"])
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["error"]["code"] == "UNSUPPORTED_DATABASE"
    assert "pw@" not in result.stdout


def test_a_topology_that_breaks_the_ha_rules_is_not_simulated(tmp_path: Path) -> None:
    seed = (scenarios_dir() / "seed-topology.toml").read_text(encoding="utf-8")
    broken = seed.replace('[nodes.1B]\nid = 2\ngroup = "sub1"\ndatabase = "tcdb1"',
                          '[nodes.1B]\nid = 2\ngroup = "sub1"\ndatabase = "tcdb2"')
    assert broken != seed
    (tmp_path / "topology.toml").write_text(broken, encoding="utf-8")
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace((scenarios_dir() / "seed-topology.toml").as_posix(),
                                 "topology.toml")
                    + '[[events]]\nat = 100\ndo = "crash"\nnode = "1A"\n', encoding="utf-8")
    # 1B would load 1A's rooms from a database that is not 1A's
    result = CliRunner().invoke(app, ["ha", "simulate", str(path), "--json"])
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "SCENARIO_INVALID" and "HA_DATABASE_MISMATCH" in error["message"]


def _refused(path: Path, words: str) -> None:
    """Refused by the loader and by ``ha simulate --json``: exit 2, SCENARIO_INVALID,
    a message naming the problem, never a crash or a simulation that runs forever."""
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert info.value.exit_code == 2
    assert words in info.value.message
    result = CliRunner().invoke(app, ["ha", "simulate", str(path), "--json"])
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "SCENARIO_INVALID" and words in error["message"]


@pytest.mark.parametrize(("text", "words"), [
    # nan made an exit 3 (time cannot go back); inf ran forever
    (BASE + '[[events]]\nat = nan\ndo = "crash"\nnode = "1A"\n', "at must be"),
    (BASE + '[[events]]\nat = inf\ndo = "crash"\nnode = "1A"\n', "at must be"),
    (BASE.replace('name = "t"', 'name = "t"\nuntil = nan'), "until must be"),
    (BASE + '[timers]\nheartbeat_interval = nan\n', "heartbeat_interval"),
    (BASE + '[timers]\nheartbeat_timeout = inf\n', "heartbeat_timeout"),
])
def test_numbers_that_are_not_finite_are_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    _refused(path, words)


@pytest.mark.parametrize(("text", "words"), [
    # a misspelt key was ignored: "untill" ran with the default end, "nodee" put the
    # room on no node the writer meant
    (BASE.replace('name = "t"', 'name = "t"\nuntill = 50'), "untill"),
    (BASE + 'nodee = "1B"\n', "nodee"),
    # a second room of the same name replaced the first one without a word
    (BASE + '[[rooms]]\nname = "ops"\nnode = "1B"\n', "declared twice"),
])
def test_misspelt_keys_and_repeated_rooms_are_refused(tmp_path: Path, text: str,
                                                     words: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    _refused(path, words)


def test_an_event_after_until_is_refused(tmp_path: Path) -> None:
    # the expectation at 100 never ran and the simulation said "ok"
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace('name = "t"', 'name = "t"\nuntil = 50')
                    + '[[events]]\nat = 100\ndo = "expect"\nstates = { "1A" = "Idle" }\n',
                    encoding="utf-8")
    _refused(path, "after until")


def test_events_out_of_time_order_are_refused(tmp_path: Path) -> None:
    # a timeline read top to bottom: an entry earlier than the one above it is a typo
    # (at = 10 for 100), not an instruction to reorder
    path = tmp_path / "s.toml"
    path.write_text(BASE + '[[events]]\nat = 100\ndo = "crash"\nnode = "1A"\n'
                    '[[events]]\nat = 10\ndo = "expect"\nstates = { "1A" = "Unknown" }\n',
                    encoding="utf-8")
    _refused(path, "before events[0]")


def test_scenarios_lists_as_one_json_object() -> None:
    """Like every command that reports, ``ha scenarios`` takes --json: one object."""
    result = CliRunner().invoke(app, ["ha", "scenarios", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    names = [s["name"] for s in data["scenarios"]]
    assert "failover-use-case" in names and names == sorted(names)
    assert all(s["description"] for s in data["scenarios"])
