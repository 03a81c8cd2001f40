"""The CLI's human tables in an 80-column terminal: names and counts are never cut."""

from __future__ import annotations

import pytest
from rich.console import Console

from tcmerge.cli import demo, output
from tcmerge.cli.merge import summary_table
from tcmerge.generate import GenerationResult
from tcmerge.merge.plan import MergePlan, MergeResult, TableCounts
from tcmerge.results import error, info, warning

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


def test_findings_keep_codes_whole_and_wrap_messages_in_80_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=80, record=True, color_system=None)
    monkeypatch.setattr(output, "stdout", console)
    url = "postgresql+psycopg://tcuser@db-node-1b.cluster.example.com:5432/tcnode1b"
    message = ("1 member row(s) differ from the row kept (the owner's, or a ban): "
               "room[red]@conference.example.com user@example.com")
    output.print_findings([
        info("MSG_ID_COLLISION", "2 row(s) get new msg_ids", database=url, table="tc_messages"),
        warning("AFFILIATION_CONFLICT", message, database=url, table="tc_users"),
        error("PRIVILEGE_MISSING", "first line\nsecond line", database="target",
              hint="GRANT SELECT ON tc_rooms TO tcuser"),
        info("DUPLICATE_ROWS", "3 rows already present", table="tc_users"),
    ], "Validation findings")
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0] == "Validation findings: 1 error, 1 warning, 2 info"
    # a finding of no one database comes first, under the title, with no heading
    assert lines[1:3] == ["  info    DUPLICATE_ROWS  tc_users", "    3 rows already present"]
    assert all(len(line) <= 80 for line in lines), text
    assert "…" not in text
    # the code, the severity and the table share one line; the database heads its group
    assert "  warning AFFILIATION_CONFLICT  tc_users" in lines
    assert "  error   PRIVILEGE_MISSING" in lines
    assert lines.count(url) == 1
    # messages wrap under their finding, word for word, and markup is not interpreted
    assert " ".join(line.strip() for line in lines[lines.index(
        "  warning AFFILIATION_CONFLICT  tc_users") + 1:][:2]) == message
    assert "    first line" in lines and "    second line" in lines
    assert "    → GRANT SELECT ON tc_rooms TO tcuser" in lines
