"""The merge rules (``tcmerge.merge.core``), compiled for the Oracle dialect.

The rules are written once; PostgreSQL runs the very same statements (the psql script
of ``run --sql``, against every rule case in tests/integration/merge/test_rule_cases.py).
What these tests add for Oracle, where no server runs here: every statement compiles for
``sqlalchemy.dialects.oracle``, parses as Oracle SQL (sqlglot's Oracle grammar), takes
no bind variable (DDL forbids them, ORA-01027, and a script has none), quotes the
reserved column names, and uses Oracle's forms where Oracle differs: CLOBs compared with
DBMS_LOB and never hashed or DECODEd directly, rows without a key addressed by ROWID,
GREATEST never given a NULL. What they cannot prove: that a live Oracle server accepts
them (tests/integration/test_merge_oracle_live.py, with Docker).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
import sqlglot

from tcmerge.merge import oracle as ora
from tcmerge.merge.core import MergeRules
from tcmerge.merge.oracle_merge import oracle_names
from tcmerge.merge.verify import check_statements
from tcmerge.schema import tc
from tcmerge.sqlexec import SaRunner

TOKEN = "ab12cd34"
INPUTS = ["target", "src1", "src2"]


def rules(tables: tuple[sa.Table, ...] = tc.ALL_TABLES, runner: Any = None) -> MergeRules:
    return MergeRules(runner, tables, INPUTS, oracle_names(TOKEN))


def compiled(statement: Any) -> tuple[str, list[str]]:
    c = statement.compile(dialect=ora.ORACLE)
    return str(c), list(getattr(c, "binds", {}))  # DDL: written out, no binds at all


def parses(text: str) -> None:
    """Oracle grammar check (sqlglot): raises on a syntax error."""
    sqlglot.parse_one(text, read="oracle", error_level=sqlglot.ErrorLevel.RAISE)


def fills(r: MergeRules | None = None) -> dict[str, str]:
    r = r or rules()
    return {name: compiled(r.fill_statement(name))[0] for name, _ in r.work_queries()}


def applies(r: MergeRules | None = None) -> dict[str, str]:
    return {name: compiled(s)[0] for name, s in (r or rules()).apply_statements()}


def test_work_tables_take_no_bind_variables_and_parse_as_oracle() -> None:
    r = rules()
    names = [n for n, _ in r.work_queries()]
    assert names == ["room", "rooms", "users_all", "users", "arch_k", "arch_p", "arch_h", "arch",
                     "msg_k", "msg_p", "msg_h", "msg", "idmap", "ids", "timelog_h", "timelog",
                     "jm_h", "jm", "aft_h", "aft"]
    for statement in r.create_statements():
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
    statements = applies()
    assert list(statements) == ["tc_msgarchive", "tc_messages", "tc_users", "tc_timelog", "jm",
                                "aft_log", "tc_rooms", "tc_rooms:counters"]
    for name, statement in rules().apply_statements():
        text, binds = compiled(statement)
        assert binds == [], name
        parses(text)
    arch = statements["tc_msgarchive"]
    assert arch.startswith("INSERT INTO tc_msgarchive (msg_id, to_jid, from_jid")
    assert "SELECT coalesce(m.new_id, s.msg_id) AS coalesce_1, s.to_jid" in arch
    assert "WHERE s.inp = r.owner OR m.arch_keep = 1" in arch
    msg = statements["tc_messages"]  # the same id map
    assert "LEFT OUTER JOIN tcm_ab12cd34_w_idmap m ON m.room_jid = s.room_jid" in msg
    assert "m.msg_keep = 1" in msg
    assert "WHERE w.winner = s.inp" in statements["tc_users"]
    timelog = statements["tc_timelog"]
    assert 'INSERT INTO tc_timelog (real_jid, room_jid, "start", "end")' in timelog
    assert "w.rid = s.ROWID" in timelog  # rows without a key: by address
    assert "SELECT w.new_index, s.jid" in statements["aft_log"]


def test_counters_never_become_null_and_target_rooms_only_rise() -> None:
    statements = applies()
    rooms = statements["tc_rooms"]
    # Oracle's GREATEST(x, NULL) is NULL: a room without messages keeps its counter
    assert "greatest(s.next_msg_id, coalesce(i.hi + 1, s.next_msg_id))" in rooms
    assert "coalesce(i.lo, s.start_msg_id)" in rooms
    counters = statements["tc_rooms:counters"]
    # Oracle has no joined UPDATE: a MERGE (PostgreSQL: UPDATE ... FROM), as the old rules
    assert counters.startswith("MERGE INTO tc_rooms t USING (SELECT")
    assert "tcm_ab12cd34_w_room.owner = 0) i ON (t.room_jid = i.room_jid)" in counters
    # as on PostgreSQL: a target room's start_msg_id is lowered to the lowest id kept,
    # never raised, next_msg_id raised above every id, only where wrong
    assert "t.start_msg_id = least(t.start_msg_id, i.lo)" in counters
    assert "t.next_msg_id = greatest(t.next_msg_id, i.hi + 1)" in counters
    assert counters.endswith("WHERE (t.start_msg_id > i.lo OR t.next_msg_id <= i.hi)")


def test_owner_is_the_first_input_holding_the_room() -> None:
    room = fills()["room"]
    assert "row_number() OVER (PARTITION BY p.room_jid ORDER BY p.inp) AS rn" in room
    assert "SELECT 0 AS inp, t.to_jid AS room_jid, t.msg_id AS msg_id" in room
    assert "FROM tcm_ab12cd34_s_arch s" in room and room.endswith("WHERE r.rn = 1")


def test_duplicates_are_judged_across_inputs_with_lobs_compared_exactly() -> None:
    queries = fills()
    arch = queries["arch"]
    assert "e.inp < x.inp" in arch  # an earlier input, never the same one
    assert "DBMS_LOB.COMPARE(xr.body_text, er.body_text) = 0" in arch
    assert "DBMS_LOB.COMPARE(xr.message_text, er.message_text) = 0" in arch
    assert "DECODE(xr.from_jid, er.from_jid, 1, 0) = 1" in arch
    assert "DECODE(xr.msg_id" not in arch  # every column but msg_id
    arch_h = queries["arch_h"]  # the prefilter hash: LOBs by length and prefix, no msg_id
    assert "DBMS_LOB.GETLENGTH(x.body_text)" in arch_h and "STANDARD_HASH(x.msg_id" not in arch_h
    # only rows of shared rooms, and of them only those whose room and date another input
    # has (equal rows have equal dates), or without a date
    assert "r.nholders > 1" in queries["arch_k"]
    assert "HAVING min(tcm_ab12cd34_w_arch_k.inp) != max(tcm_ab12cd34_w_arch_k.inp)" \
        in queries["arch_p"]
    assert "JOIN tcm_ab12cd34_w_arch_p p ON p.room_jid = k.room_jid AND p.d = k.d" in arch_h
    assert "WHERE k.d IS NULL" in arch_h
    timelog = queries["timelog"]  # union tables: whole rows, against earlier inputs only
    assert "e.inp < x.inp" in timelog and "WHERE a.inp > 0 AND dd.inp IS NULL" in timelog
    assert 'DECODE(xr."start", er."start", 1, 0) = 1' in timelog
    assert "DBMS_LOB.COMPARE(xr.body_text, er.body_text) = 0" in queries["jm"]


def test_no_lob_is_grouped_hashed_or_decoded_directly() -> None:
    for query in fills().values():
        for lob in ("body_text", "message_text", "config", "spacket", "msg"):
            assert not re.search(rf"DECODE\(\w+\.{lob},", query)
            assert not re.search(rf"STANDARD_HASH\(\w+\.{lob},", query)
            assert not re.search(rf"PARTITION BY [^)]*\b{lob}\b", query)


def test_renumbering_order_and_base() -> None:
    queries = fills()
    assert ("coalesce(r.hi, 0) + row_number() OVER (PARTITION BY n.room_jid "
            "ORDER BY n.d, n.inp, n.old_id) AS new_id") in queries["idmap"]
    assert "FULL OUTER JOIN" in queries["idmap"]
    assert "ORDER BY c.ts, c.inp, c.aft_index" in queries["aft"]


def test_members_target_first_then_bans_then_input_order() -> None:
    queries = fills()
    assert ("ORDER BY CASE WHEN (anon_1.inp != 0) THEN 1 ELSE 0 END, CASE WHEN "
            "(anon_1.affiliation != 'outcast') THEN 1 ELSE 0 END, anon_1.inp") \
        in queries["users_all"]
    assert "DECODE(k.reason, w.reason, 1, 0) = 1" in queries["users"]
    assert "DECODE(k.room_jid" not in queries["users"]


def test_reserved_words_are_quoted_everywhere() -> None:
    texts = [*fills().values(), *applies().values()]
    texts += [compiled(s)[0] for _, s in check_statements([t.name for t in tc.ALL_TABLES])]
    for text in texts:
        assert not re.search(r'(?<!")\b(start|end)\b(?!")', text.replace("start_msg_id", "")), \
            text


def test_only_selected_tables_are_touched() -> None:
    r = rules((tc.jm,))
    assert [n for n, _ in r.work_queries()] == ["jm_h", "jm"]
    assert [n for n, _ in r.apply_statements()] == ["jm"]
    assert r.work_names() == ["tcm_ab12cd34_w_jm_h", "tcm_ab12cd34_w_jm"]
    idmap = fills(rules((tc.tc_msgarchive,)))["idmap"]
    assert "w_msg" not in idmap and "1 AS arch_keep, 0 AS msg_keep" in idmap
    parses(idmap)


def test_verification_queries_parse() -> None:
    for probe in (False, True):
        found = dict(check_statements([t.name for t in tc.TC_TABLES], probe=probe))
        assert set(found) >= {"count:tc_rooms", "unique:tc_msgarchive",
                              "unique:tc_messages", "counters", "bans"}
        for statement in found.values():
            parses(compiled(statement)[0])


def test_fill_order_is_enforced() -> None:
    with pytest.raises(AssertionError, match="out of order"):
        rules(runner=object())._fill("users")  # before "room": the script's order is the run's


def test_recent_message_follows_its_archive_rows_verdict() -> None:
    msg = fills()["msg"]
    assert ("LEFT OUTER JOIN tcm_ab12cd34_w_arch ar ON ar.inp = k.inp AND ar.room_jid = "
            "k.room_jid AND ar.msg_id = k.msg_id") in msg
    assert ("CASE WHEN (ar.msg_id IS NOT NULL) THEN ar.dup ELSE CASE WHEN (dd.msg_id IS NOT "
            "NULL) THEN 1 ELSE 0 END END AS dup") in msg
    names = [n for n, _ in rules().work_queries()]
    assert names.index("arch") < names.index("msg")
    alone = fills(rules((tc.tc_rooms, tc.tc_messages)))["msg"]
    assert "w_arch" not in alone


def test_a_room_conflict_stops_the_script() -> None:
    [refusal] = rules().refusals()
    text, binds = compiled(refusal)
    assert binds == [] and text.startswith("DECLARE n NUMBER; BEGIN SELECT (SELECT count(*)")
    assert "RAISE_APPLICATION_ERROR(-20001, 'ROOM_CONFLICT:" in text


class _Counts:
    """Answers every query with one count, and keeps the queries asked."""

    def __init__(self, count: int) -> None:
        self.count, self.queries = count, list[str]()

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        self.queries.append(compiled(statement)[0])
        count = self.count

        class Result:
            returns_rows = True

            def __iter__(self) -> Any:
                return iter([(count,)])
        return Result()


@pytest.mark.parametrize(("rooms", "warned"), [(2500, False), (2501, True)])
def test_more_persistent_rooms_than_a_group_serves_is_room_capacity(
        rooms: int, warned: bool) -> None:
    conn = _Counts(rooms)  # each of the two counts answers ``rooms``
    r = rules(tc.TC_TABLES, SaRunner(conn, ora.ORACLE))
    findings = r._capacity()
    assert [f.code for f in findings] == (["ROOM_CAPACITY"] if warned else [])
    if warned:
        assert findings[0].severity == "warning" and findings[0].count == 2 * rooms
        assert findings[0].database == "target"
    own, added = conn.queries[-2:]
    parses(own)
    parses(added)
    # the target's persistent rooms plus the ones the merge inserts (the winners' rows)
    assert "FROM tc_rooms \nWHERE tc_rooms.type = 'persistent'" in own
    assert "JOIN tcm_ab12cd34_s_rooms ON tcm_ab12cd34_s_rooms.inp = tcm_ab12cd34_w_rooms.inp" \
        in added
    assert "tcm_ab12cd34_w_rooms.inp = tcm_ab12cd34_w_rooms.winner" in added


def test_what_feeds_the_merged_tables_is_read_from_oracle_s_dictionary() -> None:
    """Triggers (IM and Presence creates some on Oracle) and identity columns of the
    merged tables, by user_triggers and user_tab_identity_cols: compiled and parsed."""
    from tcmerge.dialects.oracle.adapter import OracleAdapter

    queries = OracleAdapter().feeder_queries(["tc_rooms", "tc_msgarchive"])
    triggers = ora.compile_oracle(queries["triggers"], compile_kwargs={"literal_binds": True})
    parses(triggers)
    assert "FROM user_triggers" in triggers and "'TC_ROOMS'" in triggers
    assert "status = 'ENABLED'" in triggers and "LIKE '%INSERT%'" in triggers
    identities = ora.compile_oracle(queries["identities"],
                                    compile_kwargs={"literal_binds": True})
    parses(identities)
    assert "FROM user_tab_identity_cols" in identities and "'TC_MSGARCHIVE'" in identities


def test_the_live_columns_decide_the_oracle_plan_too() -> None:
    """An extra column the target and source 1 have, which source 2 lacks (validation's
    ``merge_tables``): staged from source 1, NULL for source 2's rows, merged."""
    from tcmerge.dburl import parse_database
    from tcmerge.merge.oracle_merge import OraclePlan
    from tcmerge.request import MergeRequest

    archive = sa.Table("tc_msgarchive", sa.MetaData(), *(
        sa.Column(c.name, c.type) for c in tc.tc_msgarchive.columns),
        sa.Column("site_tag", sa.String(64), info={"absent": frozenset({2})}))
    refs = [parse_database(f"oracle+oracledb://u{i}@db{i}.example.com:1521/"
                           "?service_name=FREEPDB1").with_password("x") for i in range(3)]
    plan = OraclePlan(MergeRequest(sources=(refs[1], refs[2]), target=refs[0],
                                   tables=(tc.tc_rooms, archive)), TOKEN, "private")
    fills = {step.note: step.sql() for step in plan.script() if step.phase == "fill"}
    assert "site_tag" in fills["source 1: tc_msgarchive"]
    assert "site_tag" not in fills["source 2: tc_msgarchive"]
    applied = {step.note: step.sql() for step in plan.script() if step.phase == "apply"}
    assert "s.site_tag" in applied["apply: tc_msgarchive"]
    staging = [step.sql() for step in plan.script() if step.phase == "staging"]
    assert any("site_tag VARCHAR2(64 CHAR)" in text for text in staging), staging


def test_the_oracle_fingerprint_reads_the_schema_s_dictionary() -> None:
    """What verify compares on Oracle (the fingerprint the merge takes before its first
    write): the queries compile and parse, leave out the merged tables' rows, tcmerge's own
    objects and the recycle bin, and ``differences`` names an Oracle-only kind too."""
    from tcmerge.dialects.oracle.fingerprint import queries, rows_digest
    from tcmerge.dialects.postgresql.fingerprint import differences, kind_digest

    found = queries(["tc_rooms", "tc_msgarchive"])
    assert set(found) == {"objects", "columns", "grants", "table comments", "column comments",
                          "sequence values", "fires", "row tables"}
    for name, query in found.items():
        text = ora.compile_oracle(query, compile_kwargs={"literal_binds": True})
        parses(text)
        if name != "fires":
            assert "NOT LIKE 'TCM\\_%' ESCAPE '\\'" in text and "'BIN$%'" in text, name
    objects = ora.compile_oracle(found["objects"], compile_kwargs={"literal_binds": True})
    assert "FROM user_objects" in objects and "generated = 'N'" in objects
    assert "NOT IN ('TC_ROOMS', 'TC_MSGARCHIVE')" in ora.compile_oracle(
        found["row tables"], compile_kwargs={"literal_binds": True})
    parses(ora.compile_oracle(rows_digest("SITE_AUDIT")))

    def fingerprint(others: dict[str, str]) -> dict[str, Any]:
        return {"kinds": {"others": {"digest": kind_digest(others), "objects": others}}}

    assert differences(fingerprint({"SYNONYM S": "a"}), fingerprint({"SYNONYM S": "b"})) == {
        "others": {"added": [], "removed": [], "changed": ["SYNONYM S"]}}
