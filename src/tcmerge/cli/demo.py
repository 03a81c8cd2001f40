"""``tcmerge demo``: prints each stage of ``tcmerge.demo.run_demo`` as it completes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tcmerge.cli.ha import _print_result as print_simulation
from tcmerge.cli.merge import summary_table
from tcmerge.cli.output import error_boundary, finish, print_findings, print_text, stdout
from tcmerge.cli.validate import _human as print_validation
from tcmerge.merge import MergeResult, VerifyReport

if TYPE_CHECKING:
    from tcmerge.demo import DemoResult
    from tcmerge.generate import GenerationResult


def _generation(result: GenerationResult) -> None:
    # a row per table, a column per database: fits 80 columns with every name whole
    table = Table(title="Generated pre-11.5 node databases (rows)")
    names = list(result.counts[0]) if result.counts else []
    table.add_column("table", no_wrap=True)
    for label in ["tcdb1 (node 1A)", "tcdb2 (node 1B)"][:len(result.counts)]:
        table.add_column(label, justify="right", no_wrap=True)
    for name in names:
        table.add_row(name, *(f"{counts[name]:,}" for counts in result.counts))
    stdout.print(table)
    if len(result.overlap) > 1:
        print_text("overlap made in tcdb2: " + ", ".join(
            f"{k} {v}" for k, v in result.overlap[1].items()))


def _merge(result: MergeResult) -> None:
    print_findings(result.findings + result.verification, "Merge findings")
    stdout.print(summary_table(result))
    data = result.as_dict()
    print_text(f"merge {result.status}: job {result.job_id}, {data['elapsed_seconds']} s, "
               f"{data['rows_per_second']:,.0f} rows/s, transport {data.get('transport')}")


def _verify(report: VerifyReport) -> None:
    print_findings(report.findings, "Verification")
    print_text("verification OK" if report.ok else "verification FAILED")


def _kept(kept: dict[str, str] | None) -> None:
    if kept is None:
        print_text("Removed the demo's databases and topology file, and the server if tcmerge "
                   "started it (the url provider's server stays).")
        return
    print_text("Kept (passwords are in the pgpass file, never printed):")
    for key, value in kept.items():
        print_text(f"  {key}: {value}")


def _stage(as_json: bool) -> Any:
    titles = {"server": "1. Server", "generate": "2. Two pre-11.5 node databases",
              "validate": "3. Validation (nothing changed anywhere)",
              "merge": "4. Merge (one transaction)", "verify": "5. Verification",
              "topology": "6. Topology", "failover": "7. Failover on the merged database",
              "cleanup": "8. Clean-up"}
    printers: dict[str, Any] = {
        "server": lambda v: print_text(f"started {v}"),
        "generate": _generation,
        "validate": print_validation,
        "merge": _merge,
        "verify": _verify,
        "topology": lambda v: print_text("merged database assigned: " + ", ".join(
            f"{node} → {db}" for node, db in v.items())),
        "failover": print_simulation,
        "cleanup": _kept,
    }

    def on_stage(stage: str, payload: Any) -> None:
        if as_json:
            return
        stdout.rule(titles[stage])
        printers[stage](payload)

    return on_stage


def _summary(result: DemoResult) -> None:
    stdout.rule("Summary")
    for stage, seconds in result.seconds.items():
        print_text(f"{stage:>9}: {seconds:6.2f} s")
    print_text("demo OK" if result.ok else "demo FAILED")


def register(root: typer.Typer) -> None:
    @root.command("demo")
    def demo(
        keep: Annotated[bool, typer.Option("--keep", help="Keep the server and databases; "
                                           "print their URLs.")] = False,
        provider: Annotated[str | None, typer.Option(
            help="Database provider (embedded, system, testcontainers, url).")] = None,
        rooms: Annotated[int, typer.Option(help="Rooms per node database.")] = 120,
        messages: Annotated[int, typer.Option(help="Archived messages per room.")] = 150,
        seed: Annotated[int, typer.Option(help="Generator seed.")] = 11,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    ) -> None:
        """The whole story on a throwaway embedded PostgreSQL.

        Generates two node databases, validates, merges, verifies, and fails over
        on the merged database; then removes everything (unless --keep).
        """
        with error_boundary(as_json):
            from tcmerge.demo import default_spec, run_demo  # loaded by this command only

            result = run_demo(keep=keep, provider=provider,
                              spec=default_spec(rooms, messages, seed),
                              on_stage=_stage(as_json))
        finish(result, as_json=as_json, human=lambda: _summary(result))
