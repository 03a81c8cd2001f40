"""Running ``tcmerge`` as a child process, passwords in a 0600 pgpass file (never in argv),
and waiting on database state (pg_locks) instead of sleeping."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from tcmerge.dburl import DatabaseRef, without_password
from tcmerge.merge.pg import libpq_params

CLI = "from tcmerge.cli.app import main; main()"


def _pgpass_field(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def write_pgpass(path: Path, refs: list[DatabaseRef]) -> Path:
    lines = []
    for ref in refs:
        u = ref.url
        lines.append(":".join(_pgpass_field(x) for x in (
            u.host, u.port, u.database, u.username, u.password)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def bare_url(ref: DatabaseRef) -> str:
    return without_password(ref.url).render_as_string(hide_password=False)


def child_env(pgpass: Path) -> dict[str, str]:
    """The environment of a tcmerge child: passwords from ``pgpass`` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(pgpass)
    return env


def start(args: list[str], pgpass: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CLI, *args], env=child_env(pgpass),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    try:
        return proc.returncode, json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON (exit {proc.returncode}): {out!r} {err!r}") from None


def admin(ref: DatabaseRef) -> psycopg.Connection[Any]:
    """The test's own session (it blocks the merge mid-way); named like tcmerge's sessions
    so that validation does not count it as a client of the database."""
    return psycopg.connect(**libpq_params(ref), autocommit=True,
                           application_name="tcmerge-test-blocker")


def wait_until(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = (),
               *, timeout: float = 60, proc: subprocess.Popen[str] | None = None) -> None:
    """Poll the database until ``query`` returns true (the state, not the clock, decides)."""
    deadline = time.monotonic() + timeout
    while True:
        if not conn.autocommit:
            conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(query, params).fetchone()
        if row and row[0]:
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"tcmerge ended early ({proc.returncode}): {out} {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {query}")
        time.sleep(0.02)


WAITING_ON = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted AND l.relation = to_regclass(%s) AND a.application_name = %s)"
)
SESSION_GONE = (
    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'tcmerge%%' "
    "AND datname = current_database() AND pid <> pg_backend_pid())"
)


def on_a_terminal(args: list[str], env: dict[str, str],
                  answer: Callable[[bytes], bytes | None], *, stdout_on_terminal: bool = False,
                  new_session: bool = False, timeout: float = 120) -> tuple[int, str, str]:
    """Run tcmerge with stdin and stderr on a pseudo-terminal (stdout a pipe, or the
    terminal too). ``answer`` sees all the terminal showed so far after each read and
    returns what to type, or None. ``new_session``: no controlling terminal (getpass then
    reads stdin). Returns (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=env, text=True,
                            stdin=slave, stderr=slave,
                            stdout=slave if stdout_on_terminal else subprocess.PIPE,
                            start_new_session=new_session)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            typed = answer(shown)
            if typed is not None:
                os.write(master, typed)
        out = proc.stdout.read() if proc.stdout is not None else ""
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, out, shown.decode(errors="replace")
