"""The CLI's human tables in an 80-column terminal: names and counts are never cut."""

from __future__ import annotations

from rich.console import Console

from tcmerge.cli.merge import summary_table
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
