"""Rendering and the one error boundary of the CLI.

Human output goes to stdout through rich; with ``--json`` stdout carries exactly
one JSON object and everything else (progress, logs) goes to stderr. Every text
that leaves the process passes through ``Secrets.scrub``.
"""

from __future__ import annotations

import json
import logging
import os
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
from tcmerge.errors import EXIT_FAILURE, EXIT_FINDINGS, EXIT_OK, ConfigError, TcmergeError
from tcmerge.results import Finding, sort_findings


def _plain_help_types() -> None:
    """Recent Typer releases print each parameter's Python type in --help (``--json
    <bool>``, ``--target <str>``): on a flag it reads as if it took a value, and ``<str>``
    says nothing. Here a flag shows no placeholder, an option that takes a value its
    metavar or its name in capitals (``--target TARGET``), an argument only its name.
    Typer releases without that column are left as they are."""
    core = getattr(typer, "core", None)
    option: Any = getattr(core, "TyperOption", None)
    argument: Any = getattr(core, "TyperArgument", None)
    if option is None or argument is None or not hasattr(option, "display_type_rich"):
        return

    def option_type(self: Any, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return str(self.metavar if self.metavar is not None else
                   (self.name or "value").upper())

    def argument_type(self: Any, ctx: Any) -> str | None:
        return None

    option.display_type_rich = option_type
    argument.display_type_rich = argument_type


_plain_help_types()


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
    Passwords.reset()  # called first by every command (the root callback)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tcmerge")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def database(text: str, topology: str | None = None, *,
             mergeable: bool = False, prompt: bool = False) -> DatabaseRef:
    """A database argument: a URL, or a name declared in the ``--topology`` file.

    Its password is remembered for scrubbing. ``mergeable`` refuses MS SQL and other
    types tcmerge cannot merge (exit 2) before any connection is attempted. A password
    in a URL is warned about (once); ``prompt`` (-W) asks for a missing one.
    """
    from tcmerge.request import resolve_database
    from tcmerge.topology import load_topology

    ref = resolve_database(text, load_topology(topology) if topology else None)
    Secrets.add(*ref.secrets)
    if mergeable:
        require_mergeable([ref])
    return Passwords.complete([ref], prompt=prompt)[0]


PasswordOpt = Annotated[bool, typer.Option(
    "--password", "-W", help="Ask on the terminal for the password of each database named "
    "without one (as psql -W); it is kept in memory only.")]


class Passwords:
    """Passwords of database URLs on the command line, and those typed at -W's prompt.

    A password in a command-line URL is visible to other users of the machine (``ps``,
    /proc): said once per command on stderr, with the alternatives. One typed at the
    prompt lives in the DatabaseRef only (so every session, the dblink transport too,
    gets it) and is scrubbed from all output like any other.
    """

    warned: ClassVar[bool] = False
    #: typed passwords per database (type, user, host, port, database): asked once each
    typed: ClassVar[dict[tuple[str, ...], str]] = {}

    WARNING: ClassVar[str] = (
        "warning: a password in a database URL on the command line can be seen by other "
        "users of this machine (ps, /proc). Instead use a libpq password file (PGPASSFILE, "
        "default ~/.pgpass), password_env in a --topology file, the PGPASSWORD variable, or "
        "-W (--password) to type it at a prompt.")

    @classmethod
    def reset(cls) -> None:
        """A new command (the CLI's tests run many in one process)."""
        cls.warned = False
        cls.typed.clear()

    @classmethod
    def complete(cls, refs: Iterable[DatabaseRef], *, prompt: bool) -> list[DatabaseRef]:
        """``refs`` with the warning given for URL passwords and, with ``prompt``, a
        password asked for each database that has none (once per distinct database)."""
        refs = list(refs)
        # a database given as a URL has no topology name
        if not cls.warned and any(r.name is None and r.url.password for r in refs):
            cls.warned = True
            stderr.print(cls.WARNING, markup=False)
        if not prompt:
            return refs
        if not refs_need_prompt(refs):
            return refs
        require_terminal()
        done = []
        for ref in refs:
            if ref.url.password is None:
                key = _database_key(ref)
                if key not in cls.typed:
                    cls.typed[key] = ask_password(ref)
                if cls.typed[key]:
                    Secrets.add(cls.typed[key])
                    ref = ref.with_password(cls.typed[key])
            done.append(ref)
        return done


def refs_need_prompt(refs: Iterable[DatabaseRef]) -> bool:
    return any(ref.url.password is None for ref in refs)


def _database_key(ref: DatabaseRef) -> tuple[str, ...]:
    url = ref.url
    return (ref.dialect, url.username or "", _host(ref), str(url.port or ""),
            url.database or "", str(url.query.get("service_name") or ""))


def _host(ref: DatabaseRef) -> str:
    host = ref.url.host or ref.url.query.get("host") or "localhost"
    return host if isinstance(host, str) else ",".join(host)


def password_prompt(ref: DatabaseRef) -> str:
    """``Password for USER@HOST[:PORT]/DB: `` (and the topology name, when it has one)."""
    import getpass

    url = ref.url
    user = url.username or getpass.getuser()
    port = f":{url.port}" if url.port else ""
    db = url.database or url.query.get("service_name") or ""
    name = f" ({ref.name})" if ref.name else ""
    return f"Password for {user}@{_host(ref)}{port}/{db}{name}: "


def terminal_available() -> bool:
    """Someone can type a password: a controlling terminal, or stdin on one (getpass
    reads /dev/tty first, then stdin with echo turned off)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return sys.stdin is not None and sys.stdin.isatty()
    os.close(fd)
    return True


def require_terminal() -> None:
    if not terminal_available():
        raise ConfigError(
            "-W/--password asks on a terminal and there is none; give the password through "
            "a libpq password file (PGPASSFILE), password_env in a --topology file or "
            "PGPASSWORD")


def ask_password(ref: DatabaseRef) -> str:
    """Read a password on the terminal, not echoed (getpass); "" when none was typed."""
    import getpass

    try:
        return getpass.getpass(password_prompt(ref))
    except EOFError:
        raise ConfigError(f"no password typed for {ref.label}") from None


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
    try:
        if as_json:
            print_json({"ok": False, "error": {"code": code, "message": message}})
        else:
            stderr.print(f"[bold red]error[/] [{code}]: ", end="")
            stderr.print(message, markup=False)
    except OSError:
        pass  # the terminal is gone (SIGHUP): the exit code still tells
    raise typer.Exit(exit_code)
