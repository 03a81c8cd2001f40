"""``tcmerge schema``: upgrade, sql, check."""

from __future__ import annotations

from typing import Annotated

import typer

from tcmerge.cli.output import (
    PasswordOpt,
    TopologyOpt,
    database,
    error_boundary,
    finish,
    print_findings,
    print_json,
    print_text,
)
from tcmerge.errors import EXIT_FINDINGS
from tcmerge.schema import tables_for

app = typer.Typer(help="Create, print and check the TC schema.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@app.command("upgrade")
def upgrade(db: Annotated[str, typer.Argument(help="Database URL or topology name.")],
            revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
            topology: TopologyOpt = None,
            as_json: JsonOpt = False, password: PasswordOpt = False) -> None:
    """Create or upgrade the TC schema on DB (Alembic, to head); existing tables are kept."""
    with error_boundary(as_json):
        from tcmerge.schema import manage  # Alembic: loaded for schema commands only

        ref = database(db, topology, mergeable=True, prompt=password)
        result = manage.upgrade(ref, revision)
        # tables that existed before are kept as they are (and a revision already at head
        # changes nothing): say where the schema breaks the model
        broken = [f for f in manage.check(ref).findings if f.blocks()] \
            if result.after == manage.head_revision() else []
    if as_json:
        print_json({**result.as_dict(), "ok": not broken,
                    "findings": [f.as_dict() for f in broken]})
    else:
        state = "upgraded" if result.changed else "already at"
        print_text(f"{result.database}: {state} revision {result.after} "
                   f"(was {result.before or 'empty'})")
        if broken:
            print_findings(broken, "The schema differs from the model")
            print_text("schema upgrade INCOMPLETE: the migrations keep existing tables; fix "
                       "these by hand (tcmerge schema sql prints the model's DDL)")
    if broken:
        raise typer.Exit(EXIT_FINDINGS)


@app.command("sql")
def sql(dialect: Annotated[str, typer.Option("--dialect", help="postgresql or oracle.")],
        revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Print the DDL for a dialect, offline (no server needed)."""
    with error_boundary(False):
        from tcmerge.schema import manage  # Alembic: loaded for schema commands only

        text = manage.offline_sql(dialect.lower(), revision)
    print(text, end="")


@app.command("check")
def check(db: Annotated[str, typer.Argument(help="Database URL or topology name.")],
          tables: Annotated[str, typer.Option(help="tc, or tc,ma,mft.")] = "tc,ma,mft",
          strict: Annotated[bool, typer.Option(help="Warnings fail too.")] = False,
          topology: TopologyOpt = None,
          as_json: JsonOpt = False, password: PasswordOpt = False) -> None:
    """Compare the live schema of DB with the model; exit 1 on blocking findings."""
    with error_boundary(as_json):
        from tcmerge.schema import manage  # Alembic: loaded for schema commands only

        report = manage.check(database(db, topology, mergeable=True, prompt=password),
                              tables_for(tables), strict=strict)

    def human() -> None:
        print_text(f"{report.database}: schema revision {report.revision or 'none'} "
                   f"(head {report.head})")
        print_findings(report.findings, "Schema findings")
        print_text("schema OK" if report.ok else "schema check FAILED")

    finish(report, as_json=as_json, human=human)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="schema")
