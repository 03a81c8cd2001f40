"""What the target's database does by itself to the merged rows (issue 17, item 3): a
sequence feeding a merged column is raised above the merged ids in the merge
transaction; an identity column that refuses given ids, and a trigger that would fire
on the merge's writes, are refused by validate with the object named."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .data import TcData
from .test_cli import cli, sources, url

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"


def _fill(db: TcData, n: int) -> None:
    db.room(ROOM, next_=n + 1)
    db.messages(ROOM, [(i, i, f"body {i}") for i in range(1, n + 1)])


def test_a_sequence_feeding_msg_id_continues_above_the_merged_ids(
        tc_factory: Callable[..., TcData]) -> None:
    target, one = tc_factory(), tc_factory()
    _fill(one, 30)
    target.execute(
        "CREATE SEQUENCE arch_ids OWNED BY tc_msgarchive.msg_id",
        "ALTER TABLE tc_msgarchive ALTER COLUMN msg_id SET DEFAULT nextval('arch_ids')")
    code, report = cli("validate", *sources(one), "--target", url(target.ref))
    assert code == 0, report
    raised = [f for f in report["findings"] if f["code"] == "SEQUENCE_RAISED"]
    assert [(f["severity"], f["details"]["column"]) for f in raised] == [("info", "msg_id")]
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0, done
    top = target.query("SELECT max(msg_id) FROM tc_msgarchive")[0][0]
    assert top == 30
    assert target.query("SELECT nextval('arch_ids')")[0][0] > top
    counts = target.query("SELECT counts FROM tcmerge_jobs")[0][0]
    assert '"sequences_raised": {"public.arch_ids": 30}' in counts
    # a sequence already above the merged ids is left where it is
    target.execute("SELECT setval('arch_ids', 1000)")
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 0 and target.query("SELECT nextval('arch_ids')")[0][0] == 1001


def test_identity_always_and_triggers_are_refused_by_name(
        tc_factory: Callable[..., TcData]) -> None:
    target, one = tc_factory(), tc_factory()
    _fill(one, 3)
    before = target.digest()
    target.execute(
        "ALTER TABLE tc_msgarchive ALTER COLUMN msg_id ADD GENERATED ALWAYS AS IDENTITY",
        "CREATE FUNCTION count_rooms() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER rooms_touched BEFORE UPDATE ON tc_rooms FOR EACH ROW "
        "EXECUTE FUNCTION count_rooms()",
        "CREATE TRIGGER disabled_one AFTER INSERT ON tc_users FOR EACH ROW "
        "EXECUTE FUNCTION count_rooms()",
        "ALTER TABLE tc_users DISABLE TRIGGER disabled_one")
    code, done = cli("run", *sources(one), "--target", url(target.ref), "--yes")
    assert code == 1, done
    errors = {(f["code"], f.get("table")) for f in done["findings"]
              if f["severity"] == "error"}
    assert errors == {("IDENTITY_ALWAYS", "tc_msgarchive"),
                      ("TRIGGER_ON_MERGED_TABLE", "tc_rooms")}, done
    trigger = next(f for f in done["findings"] if f["code"] == "TRIGGER_ON_MERGED_TABLE")
    assert "rooms_touched" in trigger["message"] and "BEFORE UPDATE" in trigger["message"]
    assert target.digest() == before
