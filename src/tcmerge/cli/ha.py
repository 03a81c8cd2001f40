"""``tcmerge topology check FILE`` and ``tcmerge ha simulate SCENARIO``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tcmerge.cli.output import (
    PasswordOpt,
    Secrets,
    database,
    error_boundary,
    finish,
    print_findings,
    print_json,
    print_text,
    stdout,
)
from tcmerge.topology import check_topology, load_topology

if TYPE_CHECKING:
    from tcmerge.ha.simulate import SimulationResult

topology_app = typer.Typer(help="Check a cluster topology against the HA rules.",
                           no_args_is_help=True)
ha_app = typer.Typer(help="Simulate failover and fallback of the HA room service.",
                     no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@topology_app.command("check")
def topology_check(
    file: Annotated[str, typer.Argument(help="Topology file (TOML).")],
    strict: Annotated[bool, typer.Option(help="Warnings fail too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check FILE against the HA rules; exit 1 on blocking findings, 2 when unusable."""
    with error_boundary(as_json):
        report = check_topology(load_topology(file), strict=strict)

    def human() -> None:
        # one space between cells: a node's whole chat alias fits in 80 columns
        table = Table(title=f"Cluster {report.cluster}", collapse_padding=True,
                      pad_edge=False)
        for column in ("node", "id", "group", "database", "TC", "aliases", "users"):
            table.add_column(column, overflow="fold", no_wrap=column == "aliases")
        for name, n in report.nodes.items():
            table.add_row(name, str(n["id"]), n["group"] or "-", n["database"] or "-",
                          n["text_conference"], "\n".join(n["aliases"]),
                          ", ".join(n["users"]) or "-")
        stdout.print(table)
        print_findings(report.findings, "Topology findings")
        print_text("topology OK" if report.ok else "topology check FAILED")

    finish(report, as_json=as_json, human=human)


@ha_app.command("simulate")
def simulate(
    scenario: Annotated[str, typer.Argument(
        help="Scenario file (TOML), or the name of a shipped scenario "
             "(see: tcmerge ha scenarios).")],
    db: Annotated[str | None, typer.Option(
        "--database", help="Run against this database URL (it must hold the TC schema; "
        "the scenario's rooms are created when absent and its posts are written). "
        "Default: a temporary embedded PostgreSQL.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    as_json: JsonOpt = False,
    password: PasswordOpt = False,
) -> None:
    """Run a failover/fallback scenario and print its timeline.

    Exit 1 if an expectation fails or an acknowledged message was lost.
    """
    with error_boundary(as_json):
        # the HA model is loaded by the commands that use it: ``tcmerge run`` starts sooner
        from tcmerge.ha.scenario import load_scenario
        from tcmerge.ha.simulate import run_scenario

        loaded = load_scenario(scenario)
        ref = database(db, prompt=password) if db else None
        result = run_scenario(loaded, ref, seed=seed)
    finish(result, as_json=as_json, human=lambda: _print_result(result))


@ha_app.command("scenarios")
def scenarios(as_json: JsonOpt = False) -> None:
    """List the scenarios shipped with tcmerge."""
    with error_boundary(as_json):
        from tcmerge.ha.scenario import load_scenario, shipped_scenarios

        described = {name: load_scenario(path).description
                     for name, path in sorted(shipped_scenarios().items())}
    if as_json:
        print_json({"ok": True, "scenarios": [{"name": name, "description": description}
                                              for name, description in described.items()]})
        return
    for name, description in described.items():
        print_text(f"{name}: {description}")


def _print_result(result: SimulationResult) -> None:
    print_text(f"Scenario {result.scenario} (seed {result.seed}, {result.until:g} simulated s, "
               f"on {Secrets.scrub(result.database)})")
    if result.description:
        print_text(result.description)
    table = Table(title="Timeline")
    for column in ("t (s)", "node", "what", ""):
        table.add_column(column, overflow="fold")
    for entry in result.timeline:
        if entry.kind == "expect" and entry.details.get("ok"):
            continue  # passed expectations are summarised below
        style = {"state": "bold", "expect": "bold red", "detect": "yellow"}.get(entry.kind, "")
        table.add_row(f"{entry.t:g}", entry.node or "-", entry.kind,
                      f"[{style}]{_escape(entry.text)}[/]" if style else _escape(entry.text))
    stdout.print(table)
    if result.moves:
        # fault and done: when; detection and takeover: seconds from the fault. Only the
        # texts wrap: in 80 columns nothing ends in "…".
        moves = Table(title="Failovers and fallbacks (simulated seconds)")
        moves.add_column("kind", no_wrap=True)
        moves.add_column("home → backup", overflow="fold")
        moves.add_column("reason", overflow="fold")
        for column in ("fault", "done", "detection", "takeover", "ok"):
            moves.add_column(column, no_wrap=True)
        for m in result.moves:
            moves.add_row(m.kind, f"{m.home} → {m.backup}", m.reason, f"{m.fault_at:g}",
                          "-" if m.completed_at is None else f"{m.completed_at:g}",
                          f"{m.detection_seconds:g}",
                          "-" if m.takeover_seconds is None else f"{m.takeover_seconds:g}",
                          str(m.ok))
        stdout.print(moves)
    final = ", ".join(f"{n}: {s} ({r})" for n, (s, r) in result.final.items())
    print_text(f"Final states: {final}")
    passed = sum(c.ok for c in result.checks)
    print_text(f"Expectations: {passed}/{len(result.checks)} passed")
    losses = result.losses
    print_text(f"Messages: {losses.acknowledged} acknowledged, {losses.lost} lost, "
               f"{losses.duplicated} duplicated, {losses.out_of_order} out of order")
    for timing in result.load_timings:
        if timing.node != timing.owner:
            print_text(f"Takeover load: {timing.node} loaded {timing.rooms} room(s) of "
                       f"{timing.owner} in {timing.seconds * 1000:.1f} ms (real time)")
    if result.findings:
        print_findings(result.findings, "Simulation findings")
    print_text("simulation OK" if result.ok else "simulation FAILED")


def _escape(text: str) -> str:
    return Secrets.scrub(text).replace("[", r"\[")


def register(root: typer.Typer) -> None:
    root.add_typer(topology_app, name="topology")
    root.add_typer(ha_app, name="ha")
