"""The CLI's human tables in an 80-column terminal: names and counts are never cut."""

from __future__ import annotations

import pytest
from rich.console import Console

from tcmerge.cli import demo
from tcmerge.cli.merge import summary_table
from tcmerge.generate import GenerationResult
from tcmerge.merge.plan import MergePlan, MergeResult, TableCounts

TABLES = ("tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog", "aft_log")


def test_summary_table_keeps_names_and_counts_whole_in_80_columns() -> None:
    plan = MergePlan(inputs=["target", "tcdb1", "tcdb2"], transport="copy",
                     tables=list(TABLES))
    plan.counts = {t: TableCounts(t, [0, 1_234_567, 2_345_678], inserted=3_456_789,
                                  duplicates=123_456, renumbered=234_567, conflicts=7)
                   for t in TABLES}
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_table(MergeResult(status="succeeded", plan=plan)))
    text = console.export_text()
    assert "…" not in text, text
    for name in TABLES:
        assert name in text
    for number in ("3,456,789", "123,456", "234,567"):
        assert number in text


def test_demo_generation_table_keeps_table_names_whole_in_80_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=80, record=True, color_system=None)
    monkeypatch.setattr(demo, "stdout", console)
    counts = {t: 1_234_567 for t in TABLES}
    demo._generation(GenerationResult(counts=[counts, dict(counts)]))
    text = console.export_text()
    assert "…" not in text, text
    for name in TABLES:
        assert name in text
    assert "1,234,567" in text and "tcdb2 (node 1B)" in text
