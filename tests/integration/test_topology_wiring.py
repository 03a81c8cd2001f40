"""validate (and run) take sources, names and service states from a topology file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app
from tcmerge.providers import DatabaseServer
from tcmerge.schema import manage
from tcmerge.testing.plugin import unique_name

pytestmark = pytest.mark.postgresql


def write_topology(path: Path, server: DatabaseServer, names: dict[str, str],
                   tc_state: str) -> None:
    def url(db: str) -> str:
        return server.url(db, user="postgres", password=None).render_as_string(
            hide_password=False)

    path.write_text(f"""
[cluster]
name = "cup"
domain = "example.com"
id = "cup"

[databases.tcdb1]
url = "{url(names['tcdb1'])}"
password_env = "TCM_TEST_PW"

[databases.tcdb2]
url = "{url(names['tcdb2'])}"
password_env = "TCM_TEST_PW"

[databases.merged]
url = "{url(names['merged'])}"
password_env = "TCM_TEST_PW"

[groups.sub1]
high_availability = true
nodes = ["1A", "1B"]

[nodes.1A]
id = 1
group = "sub1"
database = "tcdb1"
text_conference = "{tc_state}"

[nodes.1B]
id = 2
group = "sub1"
database = "tcdb2"
text_conference = "stopped"
""")


@pytest.fixture
def topology_dbs(pg_server: DatabaseServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    assert hasattr(pg_server, "password")
    monkeypatch.setenv("TCM_TEST_PW", pg_server.password)
    names = {key: unique_name(key) for key in ("tcdb1", "tcdb2", "merged")}
    for name in names.values():
        manage.upgrade(pg_server.create_database(name))
    yield names
    for name in names.values():
        pg_server.drop_database(name)


def test_validate_takes_sources_and_services_from_topology(
        tmp_path: Path, pg_server: DatabaseServer, topology_dbs: dict[str, str]) -> None:
    topology = tmp_path / "cluster.toml"
    runner = CliRunner()

    write_topology(topology, pg_server, topology_dbs, tc_state="running")
    running = runner.invoke(app, ["validate", "--topology", str(topology), "--group", "sub1",
                                  "--target", "merged", "--json"])
    report = json.loads(running.stdout)
    assert running.exit_code == 1, running.stdout
    service = [f for f in report["findings"] if f["code"] == "SERVICE_RUNNING"]
    assert len(service) == 1 and "1A" in service[0]["message"]
    roles = {db["database"] for db in report["databases"]}
    assert {"tcdb1", "tcdb2", "merged"} <= roles
    assert pg_server.password not in running.output  # type: ignore[attr-defined]

    write_topology(topology, pg_server, topology_dbs, tc_state="stopped")
    stopped = runner.invoke(app, ["validate", "--topology", str(topology), "--group", "sub1",
                                  "--target", "merged", "--json"])
    assert stopped.exit_code == 0, stopped.stdout
    assert "SERVICE_RUNNING" not in stopped.stdout


def test_a_service_state_the_topology_does_not_give_is_a_warning(
        tmp_path: Path, pg_server: DatabaseServer, topology_dbs: dict[str, str]) -> None:
    """SERVICE_RUNNING is for what the topology says; a node that says nothing gets a
    warning (the sessions check still sees a service at work), which --strict blocks."""
    topology = tmp_path / "cluster.toml"
    write_topology(topology, pg_server, topology_dbs, tc_state="stopped")
    topology.write_text(topology.read_text().replace(
        'database = "tcdb1"\ntext_conference = "stopped"', 'database = "tcdb1"'))
    runner = CliRunner()
    args = ["validate", "--topology", str(topology), "--group", "sub1", "--target", "merged",
            "--json"]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0, plain.stdout
    found = {f["code"]: f for f in json.loads(plain.stdout)["findings"]}
    assert "SERVICE_RUNNING" not in found
    assert found["SERVICE_STATE_UNKNOWN"]["severity"] == "warning"
    assert "1A" in found["SERVICE_STATE_UNKNOWN"]["message"]
    assert "1B" not in found["SERVICE_STATE_UNKNOWN"]["message"]
    assert runner.invoke(app, [*args, "--strict"]).exit_code == 1


def test_a_topology_that_breaks_the_ha_rules_is_refused_and_left_unwritten(
        tmp_path: Path, pg_server: DatabaseServer, topology_dbs: dict[str, str]) -> None:
    """Two nodes with one id: run refuses (exit 1) rather than merge and rewrite a file
    that tcmerge topology check fails; the database rules (each node still on its own
    database before the merge) do not count."""
    topology = tmp_path / "cluster.toml"
    write_topology(topology, pg_server, topology_dbs, tc_state="stopped")
    topology.write_text(topology.read_text().replace("id = 2", "id = 1"))
    original = topology.read_text()
    args = ["--topology", str(topology), "--group", "sub1", "--target", "merged", "--json"]
    checked = CliRunner().invoke(app, ["validate", *args])
    assert checked.exit_code == 1, checked.stdout
    codes = {f["code"] for f in json.loads(checked.stdout)["findings"]
             if f["severity"] == "error"}
    assert codes == {"DUPLICATE_NODE_ID", "DUPLICATE_ALIAS"}  # the alias holds the id
    result = CliRunner().invoke(app, ["run", *args, "--yes"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False
    assert topology.read_text() == original and not (tmp_path / "cluster.toml.bak").exists()


def test_run_assigns_the_merged_target_to_the_group(
        tmp_path: Path, pg_server: DatabaseServer, topology_dbs: dict[str, str]) -> None:
    from tcmerge.topology import load_topology

    topology = tmp_path / "cluster.toml"
    write_topology(topology, pg_server, topology_dbs, tc_state="stopped")
    original = topology.read_text()
    dry = CliRunner().invoke(app, ["run", "--topology", str(topology), "--group", "sub1",
                                   "--target", "merged", "--dry-run", "--yes", "--json"])
    assert dry.exit_code == 0, dry.stdout
    assert topology.read_text() == original  # a dry run assigns nothing

    result = CliRunner().invoke(app, ["run", "--topology", str(topology), "--group", "sub1",
                                      "--target", "merged", "--yes", "--json"])
    assert result.exit_code == 0, result.stdout
    out = json.loads(result.stdout)
    assert out["topology"]["assigned"] is True
    nodes = load_topology(topology).nodes
    assert {n: nodes[n].database for n in ("1A", "1B")} == {"1A": "merged", "1B": "merged"}
    assert (tmp_path / "cluster.toml.bak").read_text() == original
    assert out["topology"]["backup"] == str(tmp_path / "cluster.toml.bak")
    assert pg_server.password not in result.output  # type: ignore[attr-defined]
    import sqlalchemy as sa

    from tcmerge.db import connect

    with connect(pg_server.admin_ref(topology_dbs["merged"])) as conn:
        records = conn.execute(sa.text("SELECT t::text FROM tcmerge_jobs t")).scalars().all()
    assert len(records) == 1 and out["job_id"] in records[0]
    assert pg_server.password not in records[0]  # type: ignore[attr-defined]
    assigned = topology.read_text()
    # the same merge again (it inserts nothing) assigns again: its backup is a new file
    # and the administrator's original stays in cluster.toml.bak; the summary names it
    again = CliRunner().invoke(app, ["run", "--topology", str(topology), "--group", "sub1",
                                     "--source", "tcdb1", "--source", "tcdb2",
                                     "--target", "merged", "--yes"])
    assert again.exit_code == 0, again.output
    assert f"previous file kept as {tmp_path / 'cluster.toml.bak.1'})" in again.stdout
    assert (tmp_path / "cluster.toml.bak.1").read_text() == assigned
    assert (tmp_path / "cluster.toml.bak").read_text() == original


def test_a_target_given_as_a_url_is_assigned_by_its_declared_name(
        tmp_path: Path, pg_server: DatabaseServer, topology_dbs: dict[str, str]) -> None:
    """The target URL names the declared database "merged" (its user and password aside):
    that name is assigned. A target declared nowhere is merged all the same, and a
    warning says the file was not updated (under --strict too: the merge is committed)."""
    from tcmerge.topology import load_topology

    topology = tmp_path / "cluster.toml"
    write_topology(topology, pg_server, topology_dbs, tc_state="stopped")
    password = pg_server.password  # type: ignore[attr-defined]

    def url(name: str) -> str:
        return pg_server.url(name, user="postgres", password=password).render_as_string(
            hide_password=False)

    result = CliRunner().invoke(app, ["run", "--topology", str(topology), "--group", "sub1",
                                      "--target", url(topology_dbs["merged"]), "--yes",
                                      "--json"])
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["topology"]["database"] == "merged"
    nodes = load_topology(topology).nodes
    assert {nodes[n].database for n in ("1A", "1B")} == {"merged"}
    assert password not in result.output

    elsewhere = unique_name("elsewhere")
    manage.upgrade(pg_server.create_database(elsewhere))
    try:
        before = topology.read_text()
        other = CliRunner().invoke(app, ["run", "--topology", str(topology), "--group", "sub1",
                                         "--target", url(elsewhere), "--yes", "--strict",
                                         "--json"])
        out = json.loads(other.stdout)
        assert other.exit_code == 0 and out["ok"] is True, other.stdout
        assert out["topology"]["assigned"] is False and out["job_id"]
        assert "TOPOLOGY_NOT_UPDATED" in {f["code"] for f in out["findings"]}
        assert topology.read_text() == before
    finally:
        pg_server.drop_database(elsewhere)


def test_verify_reads_the_jobs_sources_through_the_topology(
        tmp_path: Path, pg_server: DatabaseServer, topology_dbs: dict[str, str]) -> None:
    """Cisco's flow by topology names, DB1 into DB2 (DB2 named among the sources): verify
    given only --topology and --target finds the sources by the names the job recorded,
    with the topology's passwords, instead of the recorded password-less URLs (which
    could not log in: VERIFY_SOURCE_UNCHECKED)."""
    import sqlalchemy as sa

    from tcmerge.db import connect

    with connect(pg_server.admin_ref(topology_dbs["tcdb1"])) as conn:
        conn.execute(sa.text("INSERT INTO tc_rooms VALUES "
                             "('ops@conference-1-c1.example.com', 'a@example.com', 'ops', "
                             "'persistent', '', '', 1, 1)"))
        conn.commit()
    topology = tmp_path / "cluster.toml"
    write_topology(topology, pg_server, topology_dbs, tc_state="stopped")
    run = CliRunner().invoke(app, ["run", "--topology", str(topology), "--source", "tcdb1",
                                   "--source", "tcdb2", "--target", "tcdb2", "--yes",
                                   "--json"])
    assert run.exit_code == 0, run.stdout
    job = json.loads(run.stdout)["job_id"]
    checked = CliRunner().invoke(app, ["verify", job, "--topology", str(topology),
                                       "--target", "tcdb2", "--json"])
    assert checked.exit_code == 0, checked.stdout
    found = {(f["code"], f.get("database")) for f in json.loads(checked.stdout)["findings"]}
    assert ("VERIFY_SOURCE_UNCHANGED", "tcdb1") in found
    assert ("VERIFY_SOURCE_IS_TARGET", "tcdb2") in found
    assert not [f for f in found if f[0] == "VERIFY_SOURCE_UNCHECKED"]
    assert pg_server.password not in checked.output  # type: ignore[attr-defined]
