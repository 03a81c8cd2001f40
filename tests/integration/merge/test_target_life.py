"""The life of a target after merges: signals, verify after hand edits, restore."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from . import proc
from .data import TcData
from .test_reliability import fill, run_args

pytestmark = pytest.mark.postgresql


@pytest.mark.slow
def test_sigterm_mid_merge_records_a_failed_job_and_leaves_the_target_unchanged(
        tc_factory: Callable[..., TcData], tmp_path: Path) -> None:
    """A service manager stops tcmerge with SIGTERM: as Ctrl-C, the merge rolls back,
    the failed job is recorded (rule 9) and the command exits 3 with INTERRUPTED."""
    target, one = tc_factory(), tc_factory()
    fill(target, "t")
    fill(one, "one")
    before = target.digest()
    pgpass = proc.write_pgpass(tmp_path / "pgpass", [target.ref, one.ref])
    with proc.admin(target.ref) as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE tc_timelog IN SHARE MODE")
        child = proc.start(run_args(target, one), pgpass)
        proc.wait_until(blocker, proc.WAITING_ON, ("tc_timelog", "tcmerge-merge"), proc=child)
        child.send_signal(signal.SIGTERM)
        code, out = proc.finish(child)
        blocker.rollback()
    assert code == 3, out
    assert out["ok"] is False and out["error"]["code"] == "INTERRUPTED"
    assert target.digest() == before
    assert target.query("SELECT status FROM tcmerge_jobs") == [("failed",)]
    assert target.query("SELECT count(*) FROM pg_class WHERE relname LIKE 'tcm\\_%' "
                        "OR relname LIKE 'tcmerge\\_snap%'") == [(0,)]
    code, out = proc.finish(proc.start(run_args(target, one), pgpass))
    assert code == 0, out
    assert target.query("SELECT status FROM tcmerge_jobs ORDER BY started_at") == [
        ("failed",), ("succeeded",)]

