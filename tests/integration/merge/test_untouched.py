"""Everything outside the merged TC tables stays as it was (issue 17, item 4): run and
restore on databases made the way a site has them (``tcmerge.testing.site``), and verify
comparing with the fingerprint the merge took before its first write."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tcmerge.dialects.postgresql.fingerprint import catalog_fingerprint, differences
from tcmerge.merge import pg
from tcmerge.testing.site import TABLES, TC_INDEX

from .data import TcData
from .test_cli import cli, sources, url

pytestmark = pytest.mark.postgresql

ROOM = "ops@conference-1-c1.example.com"
SOLO1 = "solo@conference-2-c1.example.com"
SOLO2 = "other@conference-3-c1.example.com"
MERGED = ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog"]

#: The test's own view of the site's objects, written apart from the fingerprint's
#: queries (information_schema and the pg_* views; rows by an ordered md5 of their text).
STATE = {
    "columns": "SELECT table_name, column_name, ordinal_position, data_type, "
               "character_maximum_length, is_nullable, column_default "
               "FROM information_schema.columns WHERE table_schema = 'public' "
               "AND table_name NOT LIKE 'tcmerge%' ORDER BY 1, 3",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
               "WHERE schemaname = 'public' AND tablename NOT LIKE 'tcmerge%' ORDER BY 2",
    "constraints": "SELECT table_name, constraint_name, constraint_type "
                   "FROM information_schema.table_constraints WHERE table_schema = 'public' "
                   "AND table_name NOT LIKE 'tcmerge%' ORDER BY 1, 2",
    "routines": "SELECT p.proname, p.prokind, pg_get_function_arguments(p.oid), p.prosrc, "
                "p.proacl::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' ORDER BY 1, 3",
    "triggers": "SELECT event_object_table, trigger_name, event_manipulation, action_timing, "
                "action_statement FROM information_schema.triggers ORDER BY 1, 2, 3",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' "
             "ORDER BY 1",
    "table privileges": "SELECT grantee, table_name, privilege_type "
                        "FROM information_schema.table_privileges "
                        "WHERE table_schema = 'public' AND table_name NOT LIKE 'tcmerge%' "
                        "ORDER BY 1, 2, 3",
    "column privileges": "SELECT grantee, table_name, column_name, privilege_type "
                         "FROM information_schema.column_privileges "
                         "WHERE table_schema = 'public' AND table_name NOT LIKE 'tcmerge%' "
                         "AND grantee = 'site_reader' ORDER BY 1, 2, 3, 4",
    "routine privileges": "SELECT grantee, routine_name, privilege_type "
                          "FROM information_schema.routine_privileges "
                          "WHERE routine_schema = 'public' ORDER BY 1, 2, 3",
    "comments": "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) "
                "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
                "WHERE col_description(c.oid, a.attnum) IS NOT NULL UNION ALL "
                "SELECT relname, '', obj_description(oid, 'pg_class') FROM pg_class "
                "WHERE obj_description(oid, 'pg_class') IS NOT NULL UNION ALL "
                "SELECT proname, '', obj_description(oid, 'pg_proc') FROM pg_proc "
                "WHERE oid >= 16384 AND obj_description(oid, 'pg_proc') IS NOT NULL "
                "ORDER BY 1, 2",
    "sequences": "SELECT sequencename, last_value FROM pg_sequences "
                 "WHERE schemaname = 'public' ORDER BY 1",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    **{f"rows of {t}": f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) "
                       f"FROM {t} AS t" for t in TABLES},
}


def site_state(db: TcData) -> dict[str, list[tuple[Any, ...]]]:
    return {what: db.query(query) for what, query in STATE.items()}


def fingerprint(db: TcData) -> dict[str, Any]:
    with pg.session(db.ref, role="test") as conn:
        return catalog_fingerprint(conn, MERGED)


def recorded(db: TcData, job: str) -> dict[str, Any]:
    counts = json.loads(db.query("SELECT counts FROM tcmerge_jobs WHERE job_id = :j",
                                 j=job)[0][0])
    return dict(counts["catalog_fingerprint"])


def index_oid(db: TcData) -> int:
    return int(db.query("SELECT oid FROM pg_class WHERE relname = :n", n=TC_INDEX)[0][0])


def three_sites(site_factory: Callable[..., TcData],
                transport: str) -> tuple[TcData, TcData, TcData]:
    target, one, two = site_factory(1), site_factory(2), site_factory(3)
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    target.room(ROOM, next_=4)
    target.messages(ROOM, [(1, 0, "t1"), (2, 1, "t2"), (3, 2, "t3")])
    target.member(ROOM, "alice@example.com", "owner")
    one.room(ROOM, next_=3)
    one.messages(ROOM, [(1, 10, "o1"), (2, 11, "o2")])
    one.room(SOLO1, next_=6)
    one.messages(SOLO1, [(i, i, f"s1-{i}") for i in range(1, 6)])
    two.room(ROOM, next_=10)
    two.messages(ROOM, [(9, 10, "o1")])  # one's row under another id: a duplicate
    two.room(SOLO2, next_=4)
    two.messages(SOLO2, [(i, i, f"s2-{i}") for i in range(1, 4)])
    two.member(SOLO2, "eve@example.com", "outcast")
    for db in (one, two):
        db.execute("ANALYZE")  # the merge sets the target's indexes aside by these counts
    return target, one, two


def merged_by_the_rules(done: dict[str, Any], target: TcData) -> None:
    """What the contract's rules make of ``three_sites``: one's rows of ROOM renumbered
    above the target's, two's copy of one's row a duplicate, the ban kept."""
    assert done["tables"]["tc_msgarchive"] == {"read": [3, 7, 4], "inserted": 10,
                                               "duplicates": 1, "renumbered": 2,
                                               "conflicts": 0}
    assert target.archive(ROOM) == [(1, "t1"), (2, "t2"), (3, "t3"), (4, "o1"), (5, "o2")]
    assert target.counters(ROOM) == (1, 6)
    assert target.query("SELECT affiliation FROM tc_users WHERE real_jid = "
                        "'eve@example.com'") == [("outcast",)]


def errors(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"] if f["severity"] == "error"]


@pytest.mark.parametrize("transport", ["copy", "dblink"])
def test_run_and_restore_leave_everything_else_as_it_was(
        site_factory: Callable[..., TcData], transport: str) -> None:
    target, one, two = three_sites(site_factory, transport)
    state, tc_before, oid = site_state(target), target.digest(), index_oid(target)
    assert state["rows of site_audit"][0][0] == 5  # the trigger wrote them
    before = fingerprint(target)
    args = [*sources(one, two), "--target", url(target.ref), "--transport", transport]

    code, checked = cli("validate", *args)
    assert code == 0 and errors(checked) == [], checked

    code, done = cli("run", *args, "--yes")
    assert code == 0, done
    merged_by_the_rules(done, target)
    job = done["job_id"]
    assert site_state(target) == state
    # the site's index on tc_msgarchive was set aside and built again: a new object,
    # under the same name and definition
    assert index_oid(target) != oid
    taken = recorded(target, job)
    assert differences(before, taken) == {} and differences(taken, fingerprint(target)) == {}
    assert {k: v["digest"] for k, v in taken["kinds"].items()} == {
        k: v["digest"] for k, v in before["kinds"].items()}
    assert taken["fires_on_merge"] is False
    # no trigger on a merged table: no statement of the merge can write another table's
    # rows, and the merge does not scan them (the test's own row digests above checked)
    assert "rows" not in taken["kinds"]
    assert "public.jabber_store_presence(p_jid text, p_status text)" in \
        taken["kinds"]["functions"]["objects"]
    assert f"public.{TC_INDEX}" in taken["kinds"]["indexes"]["objects"]

    code, verified = cli("verify", job, "--target", url(target.ref))
    assert code == 0, verified
    codes = [f["code"] for f in verified["findings"]]
    assert "VERIFY_CATALOG_UNCHANGED" in codes and "VERIFY_CATALOG_CHANGED" not in codes
    assert "catalog" in verified["checked"]

    code, restored = cli("restore", job, "--target", url(target.ref), "--yes")
    assert code == 0, restored
    assert target.digest() == tc_before
    assert site_state(target) == state
    assert differences(before, fingerprint(target)) == {}


def test_verify_names_what_changed_outside_the_merge(
        site_factory: Callable[..., TcData]) -> None:
    """After the merge, a function redefined: a warning (the merge changes none); a row of
    a site table changed: not looked at (no trigger on a merged table, so the merge could
    not have written it); an index of a merged table renamed: an error (the merge sets
    those aside and rebuilds them)."""
    target, one, two = three_sites(site_factory, "copy")
    code, done = cli("run", *sources(one, two), "--target", url(target.ref), "--yes")
    assert code == 0, done
    job = done["job_id"]
    target.execute(
        "CREATE OR REPLACE FUNCTION jabber_store_presence(p_jid text, p_status text) "
        "RETURNS void LANGUAGE sql AS $$ SELECT NULL $$",
        "UPDATE ud_users SET display_name = 'Renamed' "
        "WHERE user_jid = 'user1@node1.example.com'")
    code, verified = cli("verify", job, "--target", url(target.ref))
    assert code == 0, verified  # warnings only
    changed = {f["details"]["kind"]: f for f in verified["findings"]
               if f["code"] == "VERIFY_CATALOG_CHANGED"}
    assert set(changed) == {"functions"}, verified
    assert changed["functions"]["severity"] == "warning"
    assert changed["functions"]["details"]["changed"] == [
        "public.jabber_store_presence(p_jid text, p_status text)"]
    assert "changed since the merge" in changed["functions"]["message"]

    target.execute(f"ALTER INDEX {TC_INDEX} RENAME TO renamed_idx")
    code, verified = cli("verify", job, "--target", url(target.ref))
    assert code == 1, verified
    indexes = [f for f in verified["findings"] if f["code"] == "VERIFY_CATALOG_CHANGED"
               and f["details"]["kind"] == "indexes"]
    assert [(f["severity"], f["details"]["added"], f["details"]["removed"])
            for f in indexes] == [("error", ["public.renamed_idx"], [f"public.{TC_INDEX}"])]


def test_rows_a_trigger_on_a_merged_table_wrote_during_the_merge_are_an_error(
        site_factory: Callable[..., TcData]) -> None:
    """A trigger on tc_rooms would fire on the merge's inserts: validate and run refuse
    it (TRIGGER_ON_MERGED_TABLE, nothing written); with --allow-triggers it fires and
    writes into a site table: the merge did change it, so verify reports it as an error,
    not as a later edit."""
    target, one, two = three_sites(site_factory, "copy")
    target.execute(
        "CREATE FUNCTION site_room_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO site_audit (user_jid, what) VALUES (NEW.creator_jid, "
        "'room ' || NEW.room_jid); RETURN NEW; END $$",
        "CREATE TRIGGER site_room_audit AFTER INSERT ON tc_rooms FOR EACH ROW "
        "EXECUTE FUNCTION site_room_audit_fn()")
    before = target.digest()
    code, refused = cli("run", *sources(one, two), "--target", url(target.ref), "--yes")
    assert code == 1, refused
    named = [(f["severity"], f["table"], f["details"]["name"]) for f in refused["findings"]
             if f["code"] == "TRIGGER_ON_MERGED_TABLE"]
    assert named == [("error", "tc_rooms", "site_room_audit")], refused
    assert target.digest() == before and refused["job_id"] is None
    code, done = cli("run", *sources(one, two), "--target", url(target.ref), "--yes",
                     "--allow-triggers")
    assert code == 0, done
    assert [f["severity"] for f in done["findings"]
            if f["code"] == "TRIGGER_ON_MERGED_TABLE"] == ["warning"]
    assert recorded(target, done["job_id"])["fires_on_merge"] is True
    code, verified = cli("verify", done["job_id"], "--target", url(target.ref))
    assert code == 1, verified
    changed = {f["details"]["kind"]: (f["severity"], f["details"]["changed"])
               for f in verified["findings"] if f["code"] == "VERIFY_CATALOG_CHANGED"}
    assert changed == {"rows": ("error", ["public.site_audit"]),
                       "sequence values": ("error", ["public.site_audit_seq"])}
