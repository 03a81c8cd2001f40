"""The ``tcmerge`` command: sub-commands are registered from their own modules."""

from __future__ import annotations

import atexit
import importlib
import io
import os
import signal
import sys
import threading
from typing import Annotated, NoReturn

import typer

from tcmerge import __version__
from tcmerge.cli.output import json_printed, print_json, setup_logging
from tcmerge.errors import EXIT_USAGE

# Tracebacks with local variables would print passwords: rich tracebacks stay off.
app = typer.Typer(
    name="tcmerge",
    help="Merge Text Conference (persistent chat) databases for IM and Presence HA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules with a ``register(app)`` function, each owning its commands.
COMMAND_MODULES = (
    "tcmerge.cli.schema",
    "tcmerge.cli.ha",
    "tcmerge.cli.validate",
    "tcmerge.cli.merge",
    "tcmerge.cli.demo",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
    # eager: answered while parsing, before the parser asks for a command
    version: Annotated[bool, typer.Option("--version", help="Show the version.",
                                          callback=_show_version, is_eager=True)] = False,
) -> None:
    setup_logging(verbose)


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(app)


_register()


def _terminated(signum: int, frame: object) -> NoReturn:
    """SIGTERM (a service manager, ``kill``) and SIGHUP (the terminal or SSH session went
    away) end a command as Ctrl-C does: the merge or restore rolls back, a failed run is
    recorded, servers tcmerge started are removed."""
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _terminated)
    for stream in (sys.stdout, sys.stderr):
        # a character the terminal cannot show (or a byte of a SQL_ASCII database that is
        # not UTF-8) is escaped, not a crash at the end of a merge
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except SystemExit as exc:
        # a command line the parser refuses ends before any command runs: with --json,
        # still exactly one JSON object on stdout (the parser's message is on stderr)
        if exc.code == EXIT_USAGE and "--json" in sys.argv[1:] and not json_printed():
            print_json({"ok": False, "error": {
                "code": "USAGE_ERROR",
                "message": "the command line is not valid (the message is on stderr; "
                           "see --help)"}})
        _exit(exc.code)
    _exit(0)


def _exit(code: str | int | None) -> NoReturn:
    """End the process without unloading the interpreter's modules.

    Tearing down SQLAlchemy's, psycopg's and rich's modules takes 0.1-0.35 s at every
    exit, when the command has already closed its sessions (mypy ends the same way).
    The atexit handlers (logging, temporary files and directories) still run first,
    once (``_run_exitfuncs`` empties their list).
    Anything unusual (another thread alive, a message as exit code, an output that
    cannot be flushed) takes the ordinary way out.
    """
    if threading.active_count() > 1 or not (code is None or isinstance(code, int)):
        raise SystemExit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        raise SystemExit(code) from None
    os._exit(code or 0)
