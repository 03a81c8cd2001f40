"""The confirmation prompt on a terminal: with --json it goes to stderr and stdout keeps
its one JSON object; "no" writes nothing."""

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

import pytest

from .data import TcData
from .proc import CLI, bare_url, child_env, write_pgpass

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"


def _answer_on_a_terminal(args: list[str], pgpass: Path, answer: str, *,
                          asked: bool = True) -> tuple[int, str, str]:
    """Run tcmerge with stdin and stderr on a pseudo-terminal (stdout a pipe), answer the
    first prompt, return (exit code, stdout, what the terminal showed); ``asked``: whether
    a prompt must have come."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=child_env(pgpass),
                            text=True, stdin=slave, stderr=slave, stdout=subprocess.PIPE)
    os.close(slave)
    shown, answered = b"", False
    deadline = time.monotonic() + 120
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
            if not answered and b"[y/N]" in shown:
                os.write(master, answer.encode() + b"\n")
                answered = True
        assert proc.stdout is not None
        out = proc.stdout.read()
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert answered == asked, shown.decode(errors="replace")
    return code, out, shown.decode(errors="replace")


@pytest.mark.parametrize("answer", ["n", "y"])
def test_run_json_asks_on_the_terminal_and_keeps_stdout_one_object(
        tc_factory: Callable[..., TcData], tmp_path: Path, answer: str) -> None:
    target, one = tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    before = target.digest()
    pgpass = write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    code, out, shown = _answer_on_a_terminal(
        ["run", "--json", "--source", bare_url(one.ref), "--target", bare_url(target.ref)],
        pgpass, answer)
    payload = json.loads(out)  # exactly one object: nothing of the prompt on stdout
    assert "Merge into" in shown and "tc_msgarchive" in shown  # the counts were shown
    if answer == "n":
        assert code == 1 and payload["ok"] is False and payload["status"] == "cancelled"
        assert target.digest() == before
    else:
        assert code == 0 and payload["ok"] is True and payload["status"] == "succeeded"
        assert payload["tables"]["tc_msgarchive"]["inserted"] == 1
        merged = target.digest()
        code, out, shown = _answer_on_a_terminal(
            ["restore", payload["job_id"], "--json", "--target", bare_url(target.ref)],
            pgpass, "n")
        assert "Restore" in shown and code == 1
        assert json.loads(out) == {"ok": False, "error": {
            "code": "CANCELLED", "message": "restore cancelled; nothing was changed"}}
        assert target.digest() == merged
        # a job that cannot be restored is refused before any question (it was asked first)
        code, out, shown = _answer_on_a_terminal(
            ["restore", "20000101T000000-00000000", "--json", "--target",
             bare_url(target.ref)], pgpass, "y", asked=False)
        assert code != 0 and json.loads(out)["ok"] is False and "[y/N]" not in shown
