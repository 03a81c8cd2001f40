"""``tcmerge run``, ``jobs list|show``, ``verify`` and ``restore``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tcmerge import api
from tcmerge.cli.output import (
    PasswordOpt,
    Secrets,
    TopologyOpt,
    database,
    error_boundary,
    finish,
    print_findings,
    print_json,
    print_text,
    stderr,
    stdout,
)
from tcmerge.cli.validate import AllowTriggersOpt, build_request
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from tcmerge.merge import MergeFailed, MergeResult, restore_job, verify_job
from tcmerge.merge import jobs as jobs_mod
from tcmerge.results import sort_findings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
TargetOpt = Annotated[str, typer.Option(
    "--target", help="Target database: URL, or a name declared in the --topology file.")]

jobs_app = typer.Typer(help="The job history kept in the target.", no_args_is_help=True)


class LiveProgress:
    """Per table rows and rate on a terminal (stderr), as the engine reports them."""

    def __init__(self) -> None:
        self.bar = self._new_bar()
        self.tasks: dict[tuple[str, str], Any] = {}

    @staticmethod
    def _new_bar() -> Progress:
        return Progress(SpinnerColumn(), TextColumn("{task.description}"),
                        TextColumn("{task.completed:,.0f} rows"), TimeElapsedColumn(),
                        TextColumn("{task.fields[rate]}"), console=stderr, transient=False)

    def __call__(self, what: str, where: str, rows: int) -> None:
        bar, key = self.bar, (what, where)
        if key not in self.tasks:
            for task in bar.tasks:
                bar.update(task.id, rate="")
            label = f"{what} ← {Secrets.scrub(where)}" if rows or what.startswith(
                "tc_") or what in ("jm", "aft_log") else f"{what}…"
            self.tasks[key] = bar.add_task(label, total=None, rate="")
        task_id = self.tasks[key]
        elapsed = bar.tasks[task_id].elapsed or 0.0
        rate = f"{rows / elapsed:,.0f} rows/s" if elapsed > 0.2 and rows else ""
        bar.update(task_id, completed=rows, rate=rate)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing (a question is being asked), then go on with an empty display:
        the lines before the question stay as they were, none is drawn again."""
        self.bar.stop()
        try:
            yield
        finally:
            self.bar, self.tasks = self._new_bar(), {}
            self.bar.start()


@contextmanager
def live_progress(enabled: bool) -> Iterator[LiveProgress | None]:
    """A LiveProgress on a terminal; None (silent) otherwise."""
    if not enabled:
        yield None
        return
    progress = LiveProgress()
    progress.bar.start()
    try:
        yield progress
    finally:
        progress.bar.stop()  # the one drawing now (a question starts a new one)


def summary_table(result: MergeResult, *, title: str = "Merge summary",
                  inserted: str = "inserted") -> Table:
    data = result.as_dict()
    table = Table(title=title)
    # names and counts whole; the per-input counts wrap when the terminal is narrow
    table.add_column("table", no_wrap=True)
    inputs = data.get("inputs", [])
    table.add_column("read (" + ", ".join(["target", *[f"src{i}" for i in
                                                         range(1, len(inputs))]]) + ")",
                     overflow="fold")
    for col in (inserted, "duplicates", "renumbered", "conflicts"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, c in data["tables"].items():
        table.add_row(name, " / ".join(f"{n:,}" for n in c["read"]), f"{c['inserted']:,}",
                      f"{c['duplicates']:,}", f"{c['renumbered']:,}", f"{c['conflicts']:,}")
    return table


#: how jobs list and show name a job whose rows the target does not hold
JOB_STATES = {"failed": "failed, rolled back", "restored": "restored"}


def _short_name(source: dict[str, Any]) -> str:
    """A job's source as the list shows it: its topology name, else host:port/database
    (the whole URL, with its user, is in jobs show)."""
    if source.get("name"):
        return str(source["name"])
    try:
        url = make_url(str(source.get("url")))
    except ArgumentError:
        return str(source.get("label", "?"))
    if not url.database:
        return str(source.get("label", "?"))
    if not url.host:  # a Unix socket: the database's name says enough
        return url.database
    return f"{url.host}:{url.port or 5432}/{url.database}"


def _interactive() -> bool:
    """Someone can answer a prompt. With --json too: the prompt and what it shows go to
    stderr, stdout keeps its one object. Without a terminal the command does not ask."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def register(root: typer.Typer) -> None:
    @root.command("run")
    def run(
        target: TargetOpt,
        source: Annotated[list[str] | None, typer.Option(
            "--source", help="A source database: URL, or a name declared in the --topology "
            "file (repeat for each source, in merge order).")] = None,
        topology: Annotated[str | None, typer.Option(help="A topology file (TOML).")] = None,
        group: Annotated[str | None, typer.Option(
            help="A presence redundancy group (its nodes' databases are the sources).")]
        = None,
        tables: Annotated[str, typer.Option(help="tc (default) or tc,ma,mft.")] = "tc",
        strict: Annotated[bool, typer.Option(help="Warnings block too.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Do the whole merge, "
                                              "report exact counts, roll back.")] = False,
        allow_triggers: AllowTriggersOpt = False,
        as_sql: Annotated[bool, typer.Option(
            "--sql", help="Print the whole merge as a SQL script for the inputs' dialect "
            "(for change control); connects to nothing, no password in it.")] = False,
        no_snapshot: Annotated[bool, typer.Option("--no-snapshot", help="Take no snapshot: "
                                                  "faster, but the job cannot be restored.")]
        = False,
        transport: Annotated[str | None, typer.Option(
            help="PostgreSQL: dblink or copy (default: chosen automatically).")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="No confirmation prompt.")]
        = False,
        as_json: JsonOpt = False,
        password: PasswordOpt = False,
    ) -> None:
        """Validate, then merge in one transaction, then verify.

        On a terminal it asks first, showing findings and counts (not with --yes).

        Exit 0 when merged (or the dry run done), 1 on blocking findings, a
        refusal or "no" at the prompt, 2 for usage errors or an unsupported
        database (MS SQL), 3 on a failure while working (target unchanged).
        """
        with error_boundary(as_json):
            request = build_request(source or [], target, tables, strict, transport, topology,
                                    group, snapshot=not no_snapshot, dry_run=dry_run,
                                    prompt=password and not as_sql,
                                    allow_triggers=allow_triggers)
            if as_sql:
                script = api.run_sql(request)
                if as_json:
                    print_json(script.as_dict())
                else:
                    sys.stdout.write(script.sql)
                raise typer.Exit(EXIT_OK)
            # the question and what it shows go to the terminal (stderr), also when stdout
            # is redirected; at the end, what it showed is not printed again on the same
            # terminal (a redirected stdout still gets the whole report)
            shown: list[MergeResult] = []
            try:
                with live_progress(sys.stderr.isatty() and not as_json) as progress:
                    confirm = None
                    if not yes and _interactive():
                        def confirm(pending: MergeResult) -> bool:
                            with progress.paused() if progress else nullcontext():
                                print_findings(pending.findings, "Validation findings",
                                               err=True)
                                stderr.print(summary_table(pending))
                                if sys.stdout.isatty():
                                    shown.append(pending)
                                return typer.confirm(
                                    f"Merge into {Secrets.scrub(request.target.label)}?",
                                    default=False, err=True)
                    result = api.run(request, progress=progress, confirm=confirm)
            except MergeFailed as exc:
                message = Secrets.scrub(exc.message)
                if as_json:
                    print_json({"ok": False, "job_id": exc.job_id,
                                "findings": [f.as_dict() for f in sort_findings(exc.findings)],
                                "error": {"code": exc.code, "message": message}})
                else:
                    stderr.print(f"[bold red]error[/] [{exc.code}]: ", end="")
                    stderr.print(message, markup=False)
                    if exc.job_id:
                        print_text(f"job {exc.job_id} recorded as failed", err=True)
                raise typer.Exit(EXIT_FAILURE) from None

        def human() -> None:
            seen = shown[0].findings if shown else []
            new = [f for f in result.findings if f not in seen]
            if new or result.verification or result.after_commit or not shown:
                print_findings(new + result.verification + result.after_commit, "Findings")
            counts = result.plan.counts if result.plan is not None else {}
            if counts and not (shown and shown[0].plan is not None
                               and shown[0].plan.counts == counts):
                stdout.print(summary_table(result))
            data = result.as_dict()
            # a rate only for rows that moved: a refused or cancelled run moved none
            moved = result.status in ("succeeded", "dry-run")
            print_text(f"{result.status}: {data['elapsed_seconds']} s"
                       + (f", {data['rows_per_second']:,.0f} rows/s" if moved else "")
                       + (f", job {result.job_id}" if result.job_id else ""))
            assignment = result.topology_assignment
            if assignment is not None:
                print_text(f"topology: {assignment['database']} assigned to group "
                           f"{assignment['group']} (previous file kept as "
                           f"{assignment['backup']})" if assignment["assigned"]
                           else f"topology not updated: {assignment['reason']}")

        finish(result, as_json=as_json, human=human)

    @jobs_app.command("list")
    def jobs_list(target: TargetOpt, topology: TopologyOpt = None,
                  as_json: JsonOpt = False, password: PasswordOpt = False) -> None:
        """The merges recorded in the target, oldest first."""
        with error_boundary(as_json):
            ref = database(target, topology, mergeable=True, prompt=password)
            records = jobs_mod.history(ref)
        if as_json:
            print_json({"ok": True, "jobs": [j.as_dict(full=False) for j in records]})
            return
        table = Table(title=f"Jobs in {Secrets.scrub(ref.label)}", pad_edge=False)
        # the id is what jobs show, verify and restore take: never cut. It begins with
        # the start time (UTC), so the times are left to jobs show, and the sources are
        # named short: the table fits 80 columns.
        table.add_column("job (started UTC)", no_wrap=True,
                         min_width=max((len(j.job_id) for j in records), default=3))
        table.add_column("status", no_wrap=True)
        table.add_column("sources", overflow="fold")
        # what the target holds from each job: a failed job's attempt counted rows, then
        # rolled back, and a restored job's rows were taken out again
        table.add_column("inserted", justify="right", no_wrap=True)
        for j in records:
            held = j.rows_in_target
            table.add_row(j.job_id, JOB_STATES.get(j.status, j.status),
                          Secrets.scrub("\n".join(_short_name(s) for s in
                                                  j.inputs.get("sources", []))),
                          "—" if held is None or j.status in JOB_STATES else f"{held:,}")
        stdout.print(table)

    @jobs_app.command("show")
    def jobs_show(job_id: Annotated[str, typer.Argument(help="Job id (or unique prefix).")],
                  target: TargetOpt, topology: TopologyOpt = None,
                  as_json: JsonOpt = False, password: PasswordOpt = False) -> None:
        """One job's full record."""
        with error_boundary(as_json):
            ref = database(target, topology, mergeable=True, prompt=password)
            job = jobs_mod.find_job(ref, job_id)
        record = job.as_dict()
        if as_json:
            print_json({"ok": True, **record})
            return
        for key in ("job_id", "status", "started_at", "finished_at", "tcmerge_version",
                    "error"):
            if record[key] is not None:  # a job that succeeded has no error
                print_text(f"{key}: {record[key]}")
        print_text(f"target: {job.inputs.get('target', {}).get('label')}")
        for i, s in enumerate(job.inputs.get("sources", []), 1):
            print_text(f"source {i}: {s.get('label')}"
                       + (" (the target itself, not read again)" if s.get("is_target") else ""))
        held = job.rows_in_target
        if held is not None:
            print_text(f"rows in target: {held:,}" + (
                f" ({JOB_STATES[job.status]}: none of its rows are in the target)"
                if job.status in JOB_STATES else ""))
        result = MergeResult(status=job.status)
        from tcmerge.merge.plan import MergePlan, TableCounts

        result.plan = MergePlan(inputs=["target", *[s.get("label", "") for s in
                                                   job.inputs.get("sources", [])]],
                                transport=str(job.options.get("transport")),
                                tables=list(job.counts.get("tables", {})),
                                counts={n: TableCounts.from_dict(n, c) for n, c in
                                        job.counts.get("tables", {}).items()})
        if job.status == "failed":
            table = summary_table(result, title="Counted by the failed attempt (rolled back)",
                                  inserted="counted")
        elif job.status == "restored":
            table = summary_table(result, title="Inserted by the merge (taken out again)")
        else:
            table = summary_table(result)
        stdout.print(table)

    @root.command("verify")
    def verify(job_id: Annotated[str, typer.Argument(help="Job id (or unique prefix).")],
               target: TargetOpt,
               source: Annotated[list[str] | None, typer.Option(
                   "--source", help="The job's sources again, in order (for passwords).")]
               = None,
               topology: TopologyOpt = None,
               as_json: JsonOpt = False, password: PasswordOpt = False) -> None:
        """Re-check a finished job's invariants; exit 1 when one fails."""
        def declared(name: str) -> DatabaseRef | None:
            # the job's sources by the names it recorded, where the topology has them
            try:
                return database(name, topology, prompt=password)
            except ConfigError:
                return None

        with error_boundary(as_json):
            report = verify_job(database(target, topology, mergeable=True, prompt=password),
                                job_id, [database(s, topology, prompt=password)
                                         for s in source or []] or None,
                                declared=declared if topology else None)

        def human() -> None:
            print_findings(report.findings, f"Verification of job {report.job_id}")
            print_text("verification OK" if report.ok else "verification FAILED")

        finish(report, as_json=as_json, human=human)

    @root.command("restore")
    def restore(job_id: Annotated[str, typer.Argument(help="Job id (or unique prefix).")],
                target: TargetOpt,
                yes: Annotated[bool, typer.Option("--yes", "-y", help="No prompt.")] = False,
                force: Annotated[bool, typer.Option(
                    "--force", help="Restore even when the target changed after the job "
                    "(those changes are discarded).")] = False,
                topology: TopologyOpt = None,
                as_json: JsonOpt = False, password: PasswordOpt = False) -> None:
        """Put the target's TC tables back as they were before job ID (one transaction)."""
        with error_boundary(as_json):
            ref = database(target, topology, mergeable=True, prompt=password)

            def confirm(job: jobs_mod.JobRecord, discarded: dict[str, str]) -> bool:
                # asked once the job is known to be restorable, not before
                for name, what in discarded.items():
                    typer.echo(f"{name}: changed after the job, discarded by --force "
                               f"({what})", err=as_json)
                return typer.confirm(
                    f"Restore {Secrets.scrub(ref.label)} to before job {job.job_id}?",
                    default=False, err=as_json)

            result = restore_job(ref, job_id, force=force,
                                 confirm=None if yes or not _interactive() else confirm)
        if as_json:
            print_json(result.as_dict())
        else:
            for name, n in result.tables.items():
                print_text(f"{name}: {n:,} rows restored")
            for name, what in result.changes_discarded.items():
                print_text(f"{name}: changes made after the job discarded ({what})")
            print_text(f"job {result.job_id} restored; checksums match the state before it")
        raise typer.Exit(EXIT_OK)

    root.add_typer(jobs_app, name="jobs")
