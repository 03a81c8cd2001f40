"""Secrets never leave through the CLI's logging, even in tracebacks."""

from __future__ import annotations

import logging

import pytest

from tcmerge.cli.output import Secrets, setup_logging


def test_traceback_in_verbose_log_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    Secrets.add("Tr4ceback-pw")
    setup_logging(verbose=True)
    try:
        raise RuntimeError("connect failed: password=Tr4ceback-pw")
    except RuntimeError:
        logging.getLogger("tcmerge.test").exception("boom %s", "Tr4ceback-pw")
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "boom" in err
    assert "Tr4ceback-pw" not in err
