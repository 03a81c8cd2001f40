"""``tcmerge validate``: preflight + validation; changes nothing anywhere."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer

from tcmerge.api import validate
from tcmerge.cli.output import (
    PasswordOpt,
    Passwords,
    Secrets,
    error_boundary,
    finish,
    print_findings,
    print_text,
)
from tcmerge.request import MergeRequest
from tcmerge.request import build_request as make_request
from tcmerge.validate import ValidationReport

SourceOpt = Annotated[list[str], typer.Option(
    "--source", help="A source database: URL, or a name declared in the --topology file "
    "(repeat for each source, in merge order).")]
TargetOpt = Annotated[str | None, typer.Option(
    "--target", help="The target database: URL, or a name declared in the --topology file.")]
TablesOpt = Annotated[str, typer.Option("--tables", help="tc (default) or tc,ma,mft.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Warnings block too.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
AllowTriggersOpt = Annotated[bool, typer.Option(
    "--allow-triggers", help="Let the target's triggers and rules on the merged tables fire "
    "on the merge's writes (refused by default: TRIGGER_ON_MERGED_TABLE).")]
TransportOpt = Annotated[str | None, typer.Option(
    "--transport", help="PostgreSQL: dblink or copy (default: chosen automatically).")]
TopologyOpt = Annotated[str | None, typer.Option("--topology", help="A topology file (TOML).")]
GroupOpt = Annotated[str | None, typer.Option("--group", help="A presence redundancy group.")]


def build_request(sources: list[str], target: str | None, tables: str, strict: bool,
                  transport: str | None, topology: str | None,
                  group: str | None, *, prompt: bool = False,
                  **options: Any) -> MergeRequest:
    """A MergeRequest from the command-line options (no connection made). A password in
    a URL is warned about (once); ``prompt`` (-W) asks for each one missing."""
    request = make_request(sources, target, topology=topology, group=group, tables=tables,
                           strict=strict, transport=transport, **options)
    Secrets.add(*request.secrets)
    target_ref, *source_refs = Passwords.complete(request.databases, prompt=prompt)
    if prompt:
        request = replace(request, target=target_ref, sources=tuple(source_refs))
    return request


def _human(report: ValidationReport) -> None:
    for db in report.databases:
        facts = (f"{db.get('dialect')} {db.get('server_version')}, encoding "
                 f"{db.get('encoding')}, user {db.get('user')}" if db.get("connected")
                 else "not reachable")
        same = f" (same database as the {db['same_as']})" if db.get("same_as") else ""
        print_text(f"{db['role']}: {db['database']} — {facts}{same}")
    for name, transport in report.transports.items():
        state = "possible" if transport.get("possible") else \
            f"not possible ({transport.get('reason') or 'see findings'})"
        print_text(f"transport {name}: {state}")
    print_findings(report.findings, "Validation findings")
    if report.ok:
        print_text(f"validation OK; the merge would use the {report.transport} transport")
    else:
        print_text("validation FAILED: fix the errors above" +
                   (" (warnings block with --strict)" if report.strict else ""))


def register(root: typer.Typer) -> None:
    @root.command("validate")
    def validate_command(
        source: SourceOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        target: TargetOpt = None,
        tables: TablesOpt = "tc",
        strict: StrictOpt = False,
        as_json: JsonOpt = False,
        transport: TransportOpt = None,
        topology: TopologyOpt = None,
        group: GroupOpt = None,
        password: PasswordOpt = False,
        allow_triggers: AllowTriggersOpt = False,
    ) -> None:
        """Check sources and target before a merge; changes nothing anywhere.

        Exit 0 when nothing blocks, 1 on blocking findings, 2 for usage errors or an
        unsupported database (MS SQL), 3 on a failure while working.
        """
        with error_boundary(as_json):
            request = build_request(source, target, tables, strict, transport, topology, group,
                                    prompt=password, allow_triggers=allow_triggers)
            report = validate(request)
        finish(report, as_json=as_json, human=lambda: _human(report))
