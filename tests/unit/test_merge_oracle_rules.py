"""The Oracle merge rules, compiled for the Oracle dialect (no Oracle server here).

What these tests prove: every statement compiles for ``sqlalchemy.dialects.oracle``,
parses as Oracle SQL (sqlglot's Oracle grammar), takes no bind variable where DDL
forbids it, quotes the reserved column names, compares CLOBs with DBMS_LOB, judges
duplicates across inputs only, renumbers in the contract's order, and mirrors the
PostgreSQL rules method for method. What they cannot prove: that a live Oracle
server accepts and executes them (tests/integration/test_merge_oracle_live.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
import sqlglot

from tcmerge.merge import oracle as ora
from tcmerge.merge.rules import PgRules
from tcmerge.merge.rules_oracle import PAIR_HASH, OracleRules, row_hash, same_row
from tcmerge.merge.verify import check_statements
from tcmerge.schema import tc

TOKEN = "ab12cd34"
INPUTS = ["target", "src1", "src2"]


def rules(tables: tuple[sa.Table, ...] = tc.ALL_TABLES) -> OracleRules:
    return OracleRules(None, tables, INPUTS, TOKEN)


def compiled(statement: sa.ClauseElement) -> tuple[str, list[str]]:
    c = statement.compile(dialect=ora.ORACLE)
    return str(c), list(c.binds)


def parses(text: str) -> None:
    """Oracle grammar check (sqlglot): raises on a syntax error."""
    sqlglot.parse_one(text, read="oracle", error_level=sqlglot.ErrorLevel.RAISE)


def test_work_queries_take_no_bind_variables_and_parse_as_oracle() -> None:
    r = rules()
    names = [n for n, _ in r.work_queries()]
    assert names == ["room", "rooms", "users_all", "users", "arch_h", "arch", "msg_h", "msg",
                     "idmap", "timelog_h", "timelog", "jm_h", "jm", "aft_h", "aft"]
    for statement in r.prepare_statements():
        text, binds = compiled(statement)
        assert binds == [], text  # DDL cannot take binds (ORA-01027)
        assert text.startswith("CREATE TABLE tcm_ab12cd34_w_") and text.endswith("WHERE 1 = 0")
        parses(text)
    for name, _ in r.work_queries():
        text, binds = compiled(r.fill_statement(name))
        assert binds == [] and text.startswith(f"INSERT INTO tcm_ab12cd34_w_{name} ")
        assert "/*+ APPEND */" not in text  # read again in the same transaction (ORA-12838)
        parses(text)


def test_apply_statements_parse_and_read_staging_through_the_work_tables() -> None:
    statements = dict(rules().apply_statements())
    assert list(statements) == ["tc_msgarchive", "tc_messages", "tc_users", "tc_timelog", "jm",
                                "aft_log", "ids", "tc_rooms", "tc_rooms:counters"]
    for statement in statements.values():
        text, binds = compiled(statement)
        assert binds == []
        parses(text)
    arch = compiled(statements["tc_msgarchive"])[0]
    assert arch.startswith("INSERT INTO tc_msgarchive (msg_id, to_jid, from_jid")
    assert "SELECT NVL(m.new_id, s.msg_id), s.to_jid" in arch
    assert "WHERE s.inp = r.owner OR m.arch_keep = 1" in arch
    # the same id map for tc_messages
    msg = compiled(statements["tc_messages"])[0]
    assert "LEFT JOIN tcm_ab12cd34_w_idmap m ON m.room_jid = s.room_jid" in msg
    assert "m.msg_keep = 1" in msg
    users = compiled(statements["tc_users"])[0]
    assert "WHERE w.winner = s.inp" in users
    timelog = compiled(statements["tc_timelog"])[0]
    assert 'INSERT INTO tc_timelog (real_jid, room_jid, "start", "end")' in timelog
    assert "ON w.rid = s.ROWID" in timelog
    aft = compiled(statements["aft_log"])[0]
    assert "SELECT w.new_index, s.jid" in aft


def test_counters_never_become_null_and_target_rooms_only_rise() -> None:
    statements = dict(rules().apply_statements())
    rooms = compiled(statements["tc_rooms"])[0]
    # Oracle's GREATEST(x, NULL) is NULL: a room without messages keeps its counter
    assert "GREATEST(s.next_msg_id, NVL(i.hi + 1, s.next_msg_id))" in rooms
    assert "NVL(i.lo, s.start_msg_id)" in rooms
    counters = compiled(statements["tc_rooms:counters"])[0]
    assert counters.startswith("MERGE INTO tc_rooms t USING")
    assert "WHERE o.owner = 0" in counters  # only rooms the target owns are updated
    assert "t.next_msg_id = GREATEST(t.next_msg_id, i.hi + 1)" in counters
    # as on PostgreSQL: a target room's start_msg_id is lowered to the lowest id kept,
    # never raised (it set start_msg_id = i.lo: raised where the target's history was
    # purged; audit finding)
    assert "t.start_msg_id = LEAST(t.start_msg_id, i.lo)" in counters
    assert "WHERE t.start_msg_id > i.lo OR t.next_msg_id <= i.hi" in counters


def test_owner_is_the_first_input_holding_the_room() -> None:
    room = dict(rules().work_queries())["room"]
    assert room.startswith("SELECT room_jid, MIN(inp) AS owner, COUNT(DISTINCT inp) AS nholders")
    assert "SELECT 0 AS inp, to_jid AS room_jid FROM tc_msgarchive" in room
    assert "SELECT inp, to_jid AS room_jid FROM tcm_ab12cd34_s_arch" in room


def test_duplicates_are_judged_across_inputs_with_lobs_compared_exactly() -> None:
    queries = dict(rules().work_queries())
    arch = queries["arch"]
    assert "e.inp < x.inp" in arch  # an earlier input, never the same one
    assert "DBMS_LOB.COMPARE(xr.body_text, er.body_text) = 0" in arch
    assert "DBMS_LOB.COMPARE(xr.message_text, er.message_text) = 0" in arch
    assert "DECODE(xr.from_jid, er.from_jid, 1, 0) = 1" in arch
    assert "xr.msg_id, er.msg_id" not in arch  # every column but msg_id
    # the prefilter hash covers LOBs by length and prefix, and leaves msg_id out
    arch_h = queries["arch_h"]
    assert "DBMS_LOB.GETLENGTH(x.body_text)" in arch_h
    assert "STANDARD_HASH(x.msg_id" not in arch_h
    assert "ON r.room_jid = x.to_jid AND r.nholders > 1" in arch_h
    # union tables: whole rows, against earlier inputs only
    timelog = queries["timelog"]
    assert "e.inp < x.inp" in timelog and "WHERE a.inp > 0 AND dd.rid IS NULL" in timelog
    assert 'DECODE(xr."start", er."start", 1, 0) = 1' in timelog
    jm = queries["jm"]
    assert "DBMS_LOB.COMPARE(xr.body_text, er.body_text) = 0" in jm


def test_no_lob_is_grouped_hashed_or_decoded_directly() -> None:
    for _name, query in rules().work_queries():
        for lob in ("body_text", "message_text", "config", "spacket", "msg"):
            assert not re.search(rf"DECODE\(\w+\.{lob},", query)
            assert not re.search(rf"STANDARD_HASH\(\w+\.{lob},", query)
            assert not re.search(rf"PARTITION BY [^)]*\b{lob}\b", query)


def test_renumbering_order_and_base() -> None:
    idmap = dict(rules().work_queries())["idmap"]
    assert ("NVL(t.top, 0) + ROW_NUMBER() OVER (PARTITION BY n.room_jid "
            "ORDER BY n.d, n.inp, n.old_id) AS new_id") in idmap
    assert "WHERE inp > owner AND dup = 0" in idmap
    assert "FULL JOIN m ON m.room_jid = a.room_jid AND m.inp = a.inp" in idmap
    aft = dict(rules().work_queries())["aft"]
    assert "ORDER BY c.ts, c.inp, c.aft_index" in aft and "tops.top + ROW_NUMBER()" in aft


def test_members_target_first_then_bans_then_input_order() -> None:
    queries = dict(rules().work_queries())
    assert ("ORDER BY CASE WHEN a.inp = 0 THEN 0 ELSE 1 END, "
            "CASE WHEN a.affiliation = 'outcast' THEN 0 ELSE 1 END, a.inp") in queries["users_all"]
    users = queries["users"]
    assert "DECODE(k.reason, w.reason, 1, 0) = 1" in users
    assert "DECODE(k.room_jid" not in users


def test_reserved_words_are_quoted_everywhere() -> None:
    r = rules()
    texts = [q for _, q in r.work_queries()] + [compiled(s)[0] for _, s in r.apply_statements()]
    texts += [compiled(s)[0] for _, s in check_statements([t.name for t in tc.ALL_TABLES])]
    for text in texts:
        assert not re.search(r'(?<!")\b(start|end)\b(?!")', text.replace("START_MSG_ID", "")
                             .replace("start_msg_id", "")), text


def test_only_selected_tables_are_touched() -> None:
    r = rules((tc.jm,))
    assert [n for n, _ in r.work_queries()] == ["jm_h", "jm"]
    assert [n for n, _ in r.apply_statements()] == ["jm"]
    assert r.work_names() == ["tcm_ab12cd34_w_jm_h", "tcm_ab12cd34_w_jm"]
    only_arch = rules((tc.tc_msgarchive,))
    idmap = dict(only_arch.work_queries())["idmap"]
    assert "CAST(NULL AS NUMBER(5)) AS inp" in idmap  # no tc_messages: an empty stand-in
    parses(idmap)


def test_hash_and_equality_helpers() -> None:
    h = row_hash(tc.tc_messages, ("msg_id",), "x")
    assert h.startswith("STANDARD_HASH(") and h.endswith(", 'MD5')")
    assert "DBMS_LOB.SUBSTR(x.msg, 1000, 1)" in h and "x.msg_id" not in h
    same = same_row(tc.tc_messages, "a", "b", exclude=("msg_id",))
    assert same == ("(DECODE(a.room_jid, b.room_jid, 1, 0) = 1 AND DECODE(a.stamp, b.stamp, 1, "
                    "0) = 1 AND ((a.msg IS NULL AND b.msg IS NULL) OR DBMS_LOB.COMPARE(a.msg, "
                    "b.msg) = 0))")


def test_both_dialects_have_the_same_rules_interface() -> None:
    public = {"rooms_owners", "count_target", "analyse", "apply", "_analyse_rooms",
              "_analyse_users", "_analyse_messages", "_analyse_union", "_analyse_aft",
              "_read", "_samples", "_by_input"}
    for cls in (PgRules, OracleRules):
        assert public <= set(dir(cls)), cls


def test_verification_queries_parse() -> None:
    for probe in (False, True):
        found = dict(check_statements([t.name for t in tc.TC_TABLES], probe=probe))
        assert set(found) >= {"count:tc_rooms", "unique:tc_msgarchive",
                              "unique:tc_messages", "counters", "bans"}
        for statement in found.values():
            parses(compiled(statement)[0])
        counters = compiled(found["counters"])[0]
        assert "FETCH FIRST" in counters and "count(*) OVER ()" in counters
    assert "r.next_msg_id <= i.hi" in compiled(
        dict(check_statements(["tc_rooms", "tc_msgarchive"]))["counters"])[0]
    # the bans digest is the one the Oracle analysis computes (rules_oracle.PAIR_HASH)
    assert PAIR_HASH in compiled(found["bans"])[0].replace("b.", "")


def test_fill_order_is_enforced() -> None:
    r = rules()
    with pytest.raises(AssertionError, match="out of order"):
        r._fill("users")  # before "room": the order the script shows would be wrong


def test_recent_message_follows_its_archive_rows_verdict() -> None:
    # rule 3, as rules.PgRules: a tc_messages row with an archive row (same input, room
    # and old id) is kept and renumbered, or dropped as a duplicate, with it. The Oracle
    # rules judged it on its own columns: a source's recent message whose archive row was
    # a duplicate (the target's tc_messages had rotated it out) was kept under a new id
    # with no archive row, and the other way round.
    queries = dict(rules().work_queries())
    msg = queries["msg"]
    assert ("LEFT JOIN tcm_ab12cd34_w_arch ar ON ar.inp = a.inp AND ar.room_jid = a.room_jid "
            "AND ar.msg_id = a.msg_id") in msg
    assert ("CASE WHEN ar.msg_id IS NOT NULL THEN ar.dup "
            "ELSE CASE WHEN dd.msg_id IS NULL THEN 0 ELSE 1 END END AS dup") in msg
    parses(msg)
    # the archive verdict is filled before the messages read it
    names = [n for n, _ in rules().work_queries()]
    assert names.index("arch") < names.index("msg")
    # without tc_msgarchive a recent message is judged on its own
    alone = dict(rules((tc.tc_rooms, tc.tc_messages)).work_queries())["msg"]
    assert "w_arch" not in alone and "CASE WHEN dd.msg_id IS NULL THEN 0 ELSE 1 END" in alone


class _Counts:
    """Answers every query with one count, and keeps the queries asked."""

    def __init__(self, count: int) -> None:
        self.count, self.queries = count, list[str]()

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        self.queries.append(str(statement))
        count = self.count

        class Result:
            def all(self) -> list[tuple[int]]:
                return [(count,)]
        return Result()


@pytest.mark.parametrize(("rooms", "warned"), [(5000, False), (5001, True)])
def test_more_persistent_rooms_than_a_group_serves_is_room_capacity(
        rooms: int, warned: bool) -> None:
    conn = _Counts(rooms)
    r = OracleRules(conn, tc.TC_TABLES, INPUTS, TOKEN)
    findings = r._capacity()
    assert [f.code for f in findings] == (["ROOM_CAPACITY"] if warned else [])
    if warned:
        assert findings[0].severity == "warning" and findings[0].count == rooms
        assert findings[0].database == "target"
    query = conn.queries[-1]
    parses(query)
    # the target's persistent rooms plus the ones the merge inserts (owner's rows)
    assert "FROM tc_rooms WHERE type = 'persistent'" in query
    assert "JOIN tcm_ab12cd34_s_rooms s ON s.inp = w.inp AND s.room_jid = w.room_jid" in query
    assert "WHERE w.inp = w.winner AND s.type = 'persistent'" in query
