"""-W/--password: asked on the terminal (not echoed) once per distinct database named
without a password, then used by every session of the command; never printed or stored."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .data import TcData
from .proc import bare_url, child_env, on_a_terminal

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"


def _type_passwords(args: list[str], env: dict[str, str], password: str
                    ) -> tuple[int, str, str, list[str]]:
    """Run tcmerge in a session of its own (no controlling terminal) with stdin and stderr
    on a pseudo-terminal, stdout a pipe; answer every password prompt. Returns (exit code,
    stdout, what the terminal showed, the prompts)."""
    prompts: list[str] = []

    def reply(shown: bytes) -> bytes | None:
        asked = re.findall(rb"Password for [^\r\n]*: ", shown)
        if len(asked) <= len(prompts):
            return None
        prompts.append(asked[-1].decode())
        return password.encode() + b"\n"

    code, out, shown = on_a_terminal(args, env, reply, new_session=True)
    return code, out, shown, prompts


def test_run_with_password_option_connects_with_password_less_urls(
        tc_factory: Callable[..., TcData], tmp_path: Path) -> None:
    target, one, two = tc_factory(), tc_factory(), tc_factory()
    one.room(ROOM, next_=2)
    one.messages(ROOM, [(1, 0, "hello")])
    password = str(target.ref.url.password)
    # no password anywhere but at the prompt: no PGPASSWORD, an empty password file
    env = child_env(tmp_path / "no-such-pgpass")
    args = ["run", "-W", "--yes", "--json", "--source", bare_url(target.ref),
            "--source", bare_url(one.ref), "--source", bare_url(two.ref),
            "--target", bare_url(target.ref)]
    code, out, shown, prompts = _type_passwords(args, env, password)
    payload = json.loads(out)
    assert code == 0 and payload["ok"] is True, (out, shown)
    assert payload["tables"]["tc_msgarchive"]["inserted"] == 1
    # once per distinct database: the target, also given as a source, is asked once
    user, port = target.ref.url.username, target.ref.url.port
    assert prompts == [f"Password for {user}@127.0.0.1:{port}/{ref.url.database}: "
                       for ref in (target.ref, one.ref, two.ref)], shown
    assert password not in shown and password not in out  # not echoed, never printed
    assert "can be seen by other users" not in shown  # no password in any URL
    records = target.query("SELECT t::text FROM tcmerge_jobs t")
    assert len(records) == 1 and password not in str(records)

    # the same command without -W: libpq finds no password anywhere
    code, out, shown, prompts = _type_passwords(
        [a for a in args if a != "-W"], env, password)
    assert code != 0 and prompts == [] and json.loads(out)["ok"] is False, out
