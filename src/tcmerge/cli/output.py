"""Rendering and the one error boundary of the CLI.

Human output goes to stdout through rich; with ``--json`` stdout carries exactly
one JSON object and everything else (progress, logs) goes to stderr. Every text
that leaves the process passes through ``Secrets.scrub``.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, ClassVar, NoReturn, Protocol

import typer
from rich.console import Console, Group, RenderableType
from rich.text import Text

from tcmerge.dburl import DatabaseRef, require_mergeable, scrub
from tcmerge.errors import EXIT_FAILURE, EXIT_FINDINGS, EXIT_OK, TcmergeError
from tcmerge.results import Finding, sort_findings


class Secrets:
    """Every password the command has seen; scrubbed from all output."""

    values: ClassVar[set[str]] = set()

    @classmethod
    def add(cls, *secrets: str | None) -> None:
        cls.values.update(s for s in secrets if s)

    @classmethod
    def scrub(cls, text: str) -> str:
        return scrub(text, cls.values)


class _ScrubbingFormatter(logging.Formatter):
    """Scrubs the whole formatted record: message, exception text and stack."""

    def format(self, record: logging.LogRecord) -> str:
        return Secrets.scrub(super().format(record))


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tcmerge")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def database(text: str, topology: str | None = None, *,
             mergeable: bool = False) -> DatabaseRef:
    """A database argument: a URL, or a name declared in the ``--topology`` file.

    Its password is remembered for scrubbing. ``mergeable`` refuses MS SQL and other
    types tcmerge cannot merge (exit 2) before any connection is attempted.
    """
    from tcmerge.request import resolve_database
    from tcmerge.topology import load_topology

    ref = resolve_database(text, load_topology(topology) if topology else None)
    Secrets.add(*ref.secrets)
    if mergeable:
        require_mergeable([ref])
    return ref


TopologyOpt = Annotated[str | None, typer.Option(
    "--topology", help="Topology file whose database names may stand for URLs.")]


class HasDict(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


#: JSON objects printed so far (``--json`` prints exactly one)
_printed = [0]


def print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(Secrets.scrub(json.dumps(payload, indent=2, default=str)) + "\n")
    sys.stdout.flush()
    _printed[0] += 1


def json_printed() -> bool:
    return _printed[0] > 0


def print_text(text: str = "", *, err: bool = False) -> None:
    (stderr if err else stdout).print(Secrets.scrub(text), markup=False)


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def findings_view(findings: Iterable[Finding], title: str = "Findings", *,
                  width: int = 80) -> Group | None:
    """Findings grouped by database, most severe first, as lines of at most ``width``.

    A table squeezed codes and URLs into 80 columns ("AFFILIATION_CO/NFLICT"); here the
    code, the severity and the table share a line and the message wraps below them.
    """
    ordered = sort_findings(findings)
    if not ordered:
        return None
    ordered.sort(key=lambda f: f.database or "")  # stable: most severe first per database
    counts = Counter(str(f.severity) for f in ordered)
    parts: list[RenderableType] = [Text(f"{title}: " + ", ".join(
        f"{counts[s]} {s}" for s in SEVERITY_STYLE if counts[s]), style="bold")]
    shown: str | None = None  # findings of no one database come first, under the title
    for f in ordered:
        if f.database is not None and f.database != shown:
            parts.append(Text(Secrets.scrub(f.database), style="bold"))
            shown = f.database
        head = Text("  ")
        head.append(f"{f.severity:<7}", style=SEVERITY_STYLE[str(f.severity)])
        head.append(f" {f.code}")
        if f.table:
            head.append(f"  {f.table}", style="dim")
        parts.append(head)
        for text in (f.message, f.hint and "→ " + f.hint):
            for paragraph in Secrets.scrub(text or "").splitlines():
                parts.extend(Text(line) for line in textwrap.wrap(
                    paragraph, width=max(width, 40), initial_indent="    ",
                    subsequent_indent="    ", break_on_hyphens=False))
    return Group(*parts)


def print_findings(findings: Iterable[Finding], title: str = "Findings", *,
                   err: bool = False) -> None:
    console = stderr if err else stdout
    view = findings_view(findings, title, width=console.width)
    console.print("No findings." if view is None else view)


def finish(result: HasDict, *, as_json: bool, human: Callable[[], None]) -> NoReturn:
    """Print a result (JSON or human) and exit 0 when ``ok`` else 1."""
    payload = result.as_dict()
    if as_json:
        print_json(payload)
    else:
        human()
    raise typer.Exit(EXIT_OK if payload.get("ok", True) else EXIT_FINDINGS)


@contextmanager
def error_boundary(as_json: bool) -> Iterator[None]:
    """Turn tcmerge errors into the contract's output and exit codes, secrets removed."""
    try:
        yield
    except TcmergeError as exc:
        _fail(exc.code, exc.message, exc.exit_code, as_json)
    except KeyboardInterrupt:
        _fail("INTERRUPTED", "interrupted", EXIT_FAILURE, as_json)
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # the last line of defence: no traceback with locals
        if logging.getLogger("tcmerge").isEnabledFor(logging.DEBUG):
            logging.getLogger("tcmerge").exception("unexpected error")
        _fail("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", EXIT_FAILURE, as_json)


def _fail(code: str, message: str, exit_code: int, as_json: bool) -> NoReturn:
    message = Secrets.scrub(message)
    if as_json:
        print_json({"ok": False, "error": {"code": code, "message": message}})
    else:
        stderr.print(f"[bold red]error[/] [{code}]: ", end="")
        stderr.print(message, markup=False)
    raise typer.Exit(exit_code)
