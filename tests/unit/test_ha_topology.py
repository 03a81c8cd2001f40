"""The topology file: parsing, HA rules (findings and exit codes), writing, database refs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.dburl import require_mergeable
from tcmerge.errors import ConfigError, UnsupportedDatabaseError
from tcmerge.ha.scenario import scenarios_dir
from tcmerge.topology import UNSTATED, assign_database, check_topology, load_topology

runner = CliRunner()

GOOD = """
[cluster]
name = "cup"
domain = "example.com"
id = "cup"

[databases.tcdb1]
url = "postgresql+psycopg://tcuser@db1:5432/tcdb1"
password_env = "TCM_TEST_PW1"

[databases.tcdb2]
type = "postgresql"
host = "db2"
name = "tcdb2"
user = "tcuser"

[databases.merged]
type = "postgresql"
host = "db3"
name = "merged"
user = "tcuser"

[databases.sqlsrv]
type = "mssql"
host = "sql"
name = "tc"
user = "tcuser"

[groups.sub1]
high_availability = true
mode = "balanced"
nodes = ["1A", "1B"]

[nodes.1A]
id = 1
group = "sub1"
database = "tcdb1"
services = { text_conference = "stopped" }
users = ["andy"]
aliases = ["chat.example.com"]

[nodes.1B]
id = 2
group = "sub1"
database = "tcdb1"
users = ["bob"]
"""


def write(tmp_path: Path, text: str, name: str = "topology.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def codes(text: str) -> set[str]:
    import tomllib

    from tcmerge.topology import parse_topology

    return {f.code for f in check_topology(parse_topology(tomllib.loads(text))).findings
            if f.severity == "error"}


def cli(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_good_topology_passes_with_exit_0(tmp_path: Path) -> None:
    code, out = cli("topology", "check", str(write(tmp_path, GOOD)))
    assert code == 0, out
    assert out["ok"] is True
    infos = {f["code"] for f in out["findings"]}  # type: ignore[union-attr,index]
    assert "MSSQL_NOT_MERGEABLE" in infos and "TEXT_CONFERENCE_STOPPED" in infos
    nodes = out["nodes"]
    assert nodes["1A"]["aliases"] == ["conference-1-cup.example.com",  # type: ignore[index]
                                      "chat.example.com"]


RULES = {
    "HA_DATABASE_MISMATCH": GOOD.replace('id = 2\ngroup = "sub1"\ndatabase = "tcdb1"',
                                         'id = 2\ngroup = "sub1"\ndatabase = "tcdb2"'),
    "DUPLICATE_ALIAS": GOOD.replace('users = ["bob"]',
                                    'users = ["bob"]\naliases = ["chat.example.com"]'),
    "ALIAS_EQUALS_DOMAIN": GOOD.replace('aliases = ["chat.example.com"]',
                                        'aliases = ["example.com"]'),
    "DUPLICATE_NODE_ID": GOOD.replace("id = 2\n", "id = 1\n"),
    "NODE_NOT_IN_ONE_GROUP": GOOD + '\n[nodes.1C]\nid = 3\ndatabase = "tcdb2"\n',
    "UNKNOWN_NODE": GOOD.replace('nodes = ["1A", "1B"]', 'nodes = ["1A", "1B", "9Z"]'),
    "GROUP_SIZE": GOOD.replace('nodes = ["1A", "1B"]', 'nodes = ["1A", "1B", "9Z"]'),
    "HA_NEEDS_TWO_NODES": GOOD.replace('nodes = ["1A", "1B"]', 'nodes = ["1A"]'),
    "UNKNOWN_DATABASE": GOOD.replace('database = "tcdb1"\nusers = ["bob"]',
                                     'database = "nope"\nusers = ["bob"]'),
    "TOO_MANY_NODES": GOOD + "".join(
        f'\n[groups.g{i}]\nnodes = ["n{i}"]\n[nodes.n{i}]\nid = {10 + i}\n'
        f'database = "db{i}"\n' for i in range(5)) + "".join(
        f'\n[databases.db{i}]\ntype = "postgresql"\nhost = "h"\nname = "d{i}"\n'
        for i in range(5)),
    "TOO_MANY_GROUPS": GOOD + "".join(
        f'\n[groups.g{i}]\nnodes = ["n{i}"]\n[nodes.n{i}]\nid = {10 + i}\n'
        f'database = "db{i}"\n' for i in range(3)) + "".join(
        f'\n[databases.db{i}]\ntype = "postgresql"\nhost = "h"\nname = "d{i}"\n'
        for i in range(3)),
    "DATABASE_PER_SUBCLUSTER": GOOD + '\n[groups.sub2]\nnodes = ["2A"]\n'
                                      '[nodes.2A]\nid = 3\ndatabase = "tcdb1"\n',
    "DATABASE_PER_NODE": GOOD.replace("high_availability = true", "high_availability = false"),
    "NO_DATABASE": GOOD.replace('database = "tcdb1"\n', ""),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_gives_its_finding_and_exit_1(tmp_path: Path, rule: str) -> None:
    assert rule in codes(RULES[rule])
    code, out = cli("topology", "check", str(write(tmp_path, RULES[rule])))
    assert code == 1
    assert out["ok"] is False
    assert rule in {f["code"] for f in out["findings"]}  # type: ignore[union-attr,index]


def test_the_good_topology_breaks_no_rule() -> None:
    assert codes(GOOD) == set()


@pytest.mark.parametrize("text", [
    "not toml = = =",
    "[databases.x]\nurl = 'postgresql://u@h/d'\n",  # no [cluster]
    GOOD.replace('mode = "balanced"', 'mode = "sideways"'),
    GOOD.replace("id = 1\n", 'id = "one"\n'),
    GOOD.replace('text_conference = "stopped"', 'text_conference = "paused"'),
    GOOD.replace('type = "mssql"', 'type = "db2"'),
    GOOD.replace("postgresql+psycopg://tcuser@db1:5432", "foo://tcuser@db1:5432"),
    GOOD.replace("tcuser@db1:5432", "tcuser@db1:70000"),
    GOOD.replace('url = "postgresql+psycopg://tcuser@db1:5432/tcdb1"',
                 'url = "postgresql+psycopg://tcuser@db1:5432/tcdb1"\nhost = "db9"'),
    GOOD.replace("tcuser@db1", "tcuser:secret123@db1"),
])
def test_unusable_files_exit_2(tmp_path: Path, text: str) -> None:
    code, out = cli("topology", "check", str(write(tmp_path, text)))
    assert code == 2
    assert out["ok"] is False and "error" in out
    assert "secret123" not in json.dumps(out)


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, out = cli("topology", "check", str(tmp_path / "absent.toml"))
    assert code == 2 and out["error"]["code"] == "CONFIG_ERROR"  # type: ignore[index]


def test_integrator_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCM_TEST_PW1", "pw-from-env")
    topo = load_topology(write(tmp_path, GOOD))
    assert topo.group_sources("sub1") == ["tcdb1"]
    # as validation sees them: 1B's entry does not say (the HA model's default is running)
    assert topo.stated_text_conference_states("sub1") == {"1A": "stopped", "1B": UNSTATED}
    ref = topo.database_ref("tcdb1")
    assert ref.url.password == "pw-from-env" and ref.label == "tcdb1"
    assert "pw-from-env" not in str(ref)
    assert topo.database_ref("tcdb2").url.render_as_string() == \
        "postgresql+psycopg://tcuser@db2:5432/tcdb2"
    sql = topo.database_ref("sqlsrv")
    assert sql.url.drivername == "mssql+pyodbc"
    with pytest.raises(UnsupportedDatabaseError) as info:
        require_mergeable([sql])
    assert info.value.code == "UNSUPPORTED_DATABASE"
    with pytest.raises(ConfigError):
        topo.database_ref("nope")
    with pytest.raises(ConfigError):
        topo.group_sources("nogroup")


def test_assign_database_writes_atomically_and_keeps_a_backup(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assign_database(path, "sub1", "merged")
    assert load_topology(path).group_sources("sub1") == ["merged"]
    backup = path.with_name(path.name + ".bak")
    assert backup.read_text(encoding="utf-8") == textwrap.dedent(GOOD)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    with pytest.raises(ConfigError):
        assign_database(path, "sub1", "undeclared")
    assert load_topology(path).group_sources("sub1") == ["merged"]


COMMENTED = """
# Cluster cup: written by hand; keep these notes.
[cluster]
name = "cup"
domain = "example.com"
id = "cup"            # the id in chat aliases

[databases.tcdb1]
url = "postgresql+psycopg://tcuser@db1:5432/tcdb1"
[databases.tcdb2]
url = "postgresql+psycopg://tcuser@db2:5432/tcdb2"
[databases.merged]
url = "postgresql+psycopg://tcuser@db3:5432/merged"

[groups.sub1]
high_availability = true
nodes = [ "1A",  "1B" ]   # odd spacing, on purpose

[nodes.1A]
id = 1
group = "sub1"
database = "tcdb1"    # 1A's pre-11.5 database
text_conference = "stopped"

[nodes.1B]
  # indented note
  id = 2
  group = "sub1"
  database = "tcdb2"
  text_conference = "stopped"
"""


def test_assign_database_keeps_comments_and_never_overwrites_a_backup(
        tmp_path: Path) -> None:
    """Only the database values change; each run's backup is a new file (F.bak, then the
    first free F.bak.N), so the administrator's original survives any number of runs."""
    path = write(tmp_path, COMMENTED)
    original = path.read_text(encoding="utf-8")
    unrelated = path.with_name(path.name + ".bak.1")
    unrelated.write_text("someone else's file\n", encoding="utf-8")

    first = assign_database(path, "sub1", "merged")
    assert first == path.with_name(path.name + ".bak")
    assert first.read_text(encoding="utf-8") == original
    assert path.read_text(encoding="utf-8") == original.replace(
        'database = "tcdb1"    # 1A', 'database = "merged"    # 1A').replace(
        '  database = "tcdb2"', '  database = "merged"')
    after_first = path.read_text(encoding="utf-8")

    second = assign_database(path, "sub1", "tcdb2")
    assert second == path.with_name(path.name + ".bak.2")  # .bak.1 was taken
    assert second.read_text(encoding="utf-8") == after_first
    assert first.read_text(encoding="utf-8") == original  # never overwritten
    assert unrelated.read_text(encoding="utf-8") == "someone else's file\n"
    third = assign_database(path, "sub1", "merged")
    assert third == path.with_name(path.name + ".bak.3")
    assert path.read_text(encoding="utf-8") == after_first
    assert "# Cluster cup: written by hand; keep these notes." in path.read_text()
    assert load_topology(path).group_sources("sub1") == ["merged"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_array_of_tables_form_is_accepted(tmp_path: Path) -> None:
    text = """
    [cluster]
    domain = "example.com"
    id = "c1"
    [[databases]]
    name = "tc"
    type = "oracle"
    host = "ora"
    database = "FREEPDB1"
    [[groups]]
    name = "g"
    high_availability = true
    nodes = ["a", "b"]
    [[nodes]]
    name = "a"
    id = 1
    database = "tc"
    [[nodes]]
    name = "b"
    id = 2
    database = "tc"
    """
    path = write(tmp_path, text)
    topo = load_topology(path)
    assert topo.generated_alias("b") == "conference-2-c1.example.com"
    assert topo.database_ref("tc").url.query["service_name"] == "FREEPDB1"
    assert check_topology(topo).ok
    assign_database(path, "g", "tc")
    assert load_topology(path).group_sources("g") == ["tc"]


def test_shipped_topologies_pass_the_check() -> None:
    for name in ("seed-topology.toml", "nonha-topology.toml"):
        code, out = cli("topology", "check", str(scenarios_dir() / name))
        assert code == 0, out


def test_declared_name_finds_the_one_database_at_the_same_place(tmp_path: Path) -> None:
    from tcmerge.dburl import parse_database

    path = tmp_path / "t.toml"
    path.write_text("""[cluster]
name = "c"
domain = "example.com"
id = "c"
[databases.merged]
type = "postgresql"
host = "DB1"
name = "tcdb"
user = "tc"
[databases.other]
url = "postgresql://tc@db2:5433/tcdb"
[databases.twin]
url = "postgresql://tc@db3/tcdb"
[databases.twin2]
url = "postgresql://tc@db3:5432/tcdb"
""")
    topo = load_topology(path)

    def name(url: str) -> str | None:
        return topo.declared_name(parse_database(url))

    # user, password, driver, host case and the default port aside
    assert name("postgresql+psycopg://admin:pw@db1/tcdb") == "merged"
    assert name("postgresql://x@db1:5432/tcdb") == "merged"
    assert name("postgresql://x@db2:5433/tcdb") == "other"
    assert name("postgresql://x@db2/tcdb") is None             # another port
    assert name("postgresql://x@db1:5432/other") is None       # another database
    assert name("oracle://x@db1/?service_name=tcdb") is None   # another type
    assert name("postgresql://x@db3/tcdb") is None             # two entries: not one


def test_human_check_keeps_chat_aliases_whole_in_80_columns() -> None:
    result = runner.invoke(app, ["topology", "check",
                                 str(scenarios_dir() / "seed-topology.toml")],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    for n in range(1, 5):
        assert f"conference-{n}-cup.example.com" in result.stdout, result.stdout
    assert "…" not in result.stdout


def test_a_group_without_ha_listing_an_undeclared_node_is_a_finding(tmp_path: Path) -> None:
    text = GOOD.replace("high_availability = true", "high_availability = false").replace(
        'nodes = ["1A", "1B"]', 'nodes = ["1A", "9Z"]')
    code, out = cli("topology", "check", str(write(tmp_path, text)))
    assert code == 1, out  # was an IndexError (exit 3)
    assert "UNKNOWN_NODE" in {f["code"] for f in out["findings"]}  # type: ignore[union-attr,index]


@pytest.mark.parametrize("stated", ['router = "stopped"', 'xcp_router = "stopped"',
                                    'services = { router = "stopped" }',
                                    'services = { xcp_router = "stopped" }'])
def test_a_critical_service_has_one_name_in_topologies_and_the_simulation(
        stated: str) -> None:
    """The file took ``router`` and the HA model ``xcp_router``: a node stated with
    ``router = "stopped"`` started the simulation with its router running, and
    ``xcp_router = "stopped"`` was refused. Both names now mean the same service."""
    import tomllib

    from tcmerge.ha.scenario import parse_scenario
    from tcmerge.ha.simulate import _groups
    from tcmerge.topology import parse_topology

    text = GOOD.replace('users = ["bob"]', f'users = ["bob"]\n{stated}')
    assert parse_topology(tomllib.loads(text)).nodes["1B"].services == {
        "xcp_router": "stopped"}
    topology = tomllib.loads(text)
    topology.pop("databases")["tcdb1"].pop("url")
    topology["databases"] = {"tcdb1": {"type": "postgresql", "host": "db1", "name": "t"}}
    scenario = parse_scenario({"topology": topology, "rooms": [{"name": "ops", "node": "1A"}],
                               "events": [{"at": 1, "do": "service_start", "node": "1B",
                                           "service": "router"}]})
    (group,) = _groups(scenario)
    assert dict(group.nodes[1].services) == {"xcp_router": "stopped"}
    assert scenario.events[0].service == "xcp_router"


def test_an_unknown_service_name_is_refused(tmp_path: Path) -> None:
    # a misspelt service was taken as stated and then ignored (TC counted as unstated)
    text = GOOD.replace('services = { text_conference = "stopped" }',
                        'services = { text_conferense = "stopped" }')
    code, out = cli("topology", "check", str(write(tmp_path, text)))
    assert code == 2 and "text_conferense" in out["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize(("text", "code"), [
    # aliases that cannot be the domain part of a room JID were accepted
    (GOOD.replace('aliases = ["chat.example.com"]', 'aliases = ["not a valid alias!"]'),
     "INVALID_ALIAS"),
    (GOOD.replace('aliases = ["chat.example.com"]', 'aliases = ["chat..example.com"]'),
     "INVALID_ALIAS"),
    (GOOD.replace('id = "cup"', 'id = "c u/p"'), "INVALID_ALIAS"),  # the generated ones
    # a trailing dot names the same DNS domain
    (GOOD.replace('aliases = ["chat.example.com"]', 'aliases = ["example.com."]'),
     "ALIAS_EQUALS_DOMAIN"),
    (GOOD.replace('users = ["bob"]', 'users = ["bob"]\naliases = ["Chat.Example.com."]'),
     "DUPLICATE_ALIAS"),
    # a user is homed on one node (the simulation failed on it at run time)
    (GOOD.replace('users = ["bob"]', 'users = ["bob", "Andy"]'), "USER_HOMED_TWICE"),
])
def test_aliases_and_homed_users_follow_the_ha_rules(tmp_path: Path, text: str,
                                                     code: str) -> None:
    assert code in codes(text)
    exit_code, out = cli("topology", "check", str(write(tmp_path, text)))
    assert exit_code == 1
    assert code in {f["code"] for f in out["findings"]}  # type: ignore[union-attr,index]
