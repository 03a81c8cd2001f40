"""The Oracle merge on a live Oracle Free (Testcontainers): two schemas into a third.

Without a Docker engine this skips with the provider's reason: the Oracle SQL is
then covered only by compilation (tests/unit/test_merge_oracle_*.py). With one,
it runs the whole path: preflight, the lock session, database links between
schemas of the container (addressed by the container's own address, which both
this process and the server reach), APPEND staging over the links (CLOBs
included), the rules, verification, the job record, the drops; then the same
merge again (nothing inserted) and a concurrent run (MERGE_IN_PROGRESS).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tcmerge.db import connect
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects.oracle.adapter import OracleAdapter
from tcmerge.merge import run_merge
from tcmerge.providers.containers import ContainerOracleServer, TestcontainersProvider
from tcmerge.request import MergeRequest
from tcmerge.schema import manage, tc

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

T0 = datetime(2024, 1, 1, 9, 0, 0)
ROOM_A = "ops@conference-1-c1.example.com"
ROOM_B = "dev@conference-1-c1.example.com"
ROOM_C = "hr@conference-2-c1.example.com"
LONG_BODY = ("é€😀 quote' \"dq\" " * 700)[:9000]  # a CLOB far above VARCHAR2's 4000 bytes


def arch(msg_id: int, room: str, minutes: int, body: str, **kw: Any) -> dict[str, Any]:
    long = len(body.encode()) > 4000
    return {"msg_id": msg_id, "to_jid": room, "from_jid": kw.get("sender", "a@x"),
            "nick_jid": f"{room}/a", "sent_date": T0 + timedelta(minutes=minutes),
            "msg_type": "g", "body_len": len(body), "message_len": len(body) + 20,
            "body_string": None if long else body, "message_string": None,
            "body_text": body if long else None, "message_text": None, "subject": None}


def room(jid: str, next_id: int, subject: str = "s") -> dict[str, Any]:
    return {"room_jid": jid, "creator_jid": "owner@x", "subject": subject, "type": "persistent",
            "config": "<x xmlns='jabber:x:data'/>", "spacket": "<message/>",
            "start_msg_id": 1, "next_msg_id": next_id}


def member(jid: str, real: str, affiliation: str) -> dict[str, Any]:
    return {"room_jid": jid, "real_jid": real, "role": "participant",
            "affiliation": affiliation, "nick_jid": f"{jid}/{real}", "reason": None,
            "initiator_jid": None}


DATA: dict[str, dict[str, list[dict[str, Any]]]] = {
    "target": {
        "tc_rooms": [room(ROOM_A, 3)],
        "tc_msgarchive": [arch(1, ROOM_A, 0, "hello"), arch(2, ROOM_A, 1, "world")],
        "tc_users": [member(ROOM_A, "alice@x", "owner")],
        "tc_timelog": [{"real_jid": "alice@x", "room_jid": ROOM_A, "start": T0, "end": None}],
    },
    "s1": {
        "tc_rooms": [room(ROOM_A, 3, "other subject"), room(ROOM_B, 3)],
        # id 1: equal to the target's row (a duplicate); id 2: another text (renumbered)
        "tc_msgarchive": [arch(1, ROOM_A, 0, "hello"), arch(2, ROOM_A, 2, "bonjour"),
                          arch(1, ROOM_B, 0, LONG_BODY), arch(2, ROOM_B, 3, "b2")],
        "tc_messages": [{"msg_id": 2, "room_jid": ROOM_B, "stamp": T0, "msg": LONG_BODY}],
        "tc_users": [member(ROOM_A, "alice@x", "member"), member(ROOM_A, "bob@x", "outcast"),
                     member(ROOM_B, "carol@x", "member")],
        "tc_timelog": [{"real_jid": "alice@x", "room_jid": ROOM_A, "start": T0, "end": None},
                       {"real_jid": "bob@x", "room_jid": ROOM_A, "start": T0, "end": T0}],
    },
    "s2": {
        "tc_rooms": [room(ROOM_B, 9), room(ROOM_C, 2)],
        # ROOM_B id 1 collides with s1's (renumbered, archive and recent alike); id 7 equals
        # s1's id 2 in every other column (a duplicate)
        "tc_msgarchive": [arch(1, ROOM_B, 1, "s2 first"), arch(7, ROOM_B, 3, "b2"),
                          arch(1, ROOM_C, 0, "c")],
        "tc_messages": [{"msg_id": 1, "room_jid": ROOM_B, "stamp": T0, "msg": "<m>s2</m>"}],
        "tc_users": [member(ROOM_B, "carol@x", "outcast")],
        "tc_timelog": [],
    },
}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def schemas() -> Iterator[tuple[ContainerOracleServer, dict[str, DatabaseRef]]]:
    reason = TestcontainersProvider.unavailable_reason()
    if reason:
        pytest.skip(f"Oracle live tests need a Docker engine: {reason}")
    with TestcontainersProvider() as provider:
        server = provider.start_server("ora-merge", dialect="oracle")
        assert isinstance(server, ContainerOracleServer)
        host, port = server.internal_address()
        if not reachable(host, port):
            pytest.skip(f"the container's own address {host}:{port} is not reachable from "
                        "here; the database links need one address both sides reach")
        refs = {}
        for key, name in (("target", "TCM_MT"), ("s1", "TCM_MS1"), ("s2", "TCM_MS2")):
            made = server.create_database(name)
            refs[key] = DatabaseRef(made.url.set(host=host, port=port), name=key)
        server.execute("GRANT CREATE DATABASE LINK TO TCM_MT", database="FREEPDB1")
        for key, ref in refs.items():
            manage.upgrade(ref)
            with connect(ref) as conn:
                for table, rows in DATA[key].items():
                    if rows:
                        conn.execute(sa.insert(tc.metadata.tables[table]), rows)
                conn.commit()
        yield server, refs


def rows(ref: DatabaseRef, query: str) -> list[tuple[Any, ...]]:
    with connect(ref) as conn:
        return [tuple(r) for r in conn.execute(sa.text(query)).all()]


def checksums(ref: DatabaseRef) -> dict[str, str]:
    adapter = OracleAdapter()
    with connect(ref) as conn:
        return {t.name: ":".join(str(x) for x in conn.execute(adapter.checksum_statement(t)).one())
                for t in tc.TC_TABLES}


def test_two_schemas_merge_verify_and_leave_nothing(
        schemas: tuple[ContainerOracleServer, dict[str, DatabaseRef]]) -> None:
    _server, refs = schemas
    before = {k: checksums(refs[k]) for k in ("s1", "s2")}
    request = MergeRequest(sources=(refs["s1"], refs["s2"]), target=refs["target"])
    result = run_merge(request)
    assert result.ok and result.status == "succeeded", result.as_dict()
    tables = result.as_dict()["tables"]
    assert tables["tc_msgarchive"]["read"] == [2, 4, 3]
    assert tables["tc_msgarchive"]["duplicates"] == 2  # s1's id 1 (target), s2's id 7 (s1)
    assert tables["tc_msgarchive"]["renumbered"] == 2  # s1's ROOM_A id 2, s2's ROOM_B id 1
    ids = rows(refs["target"], "SELECT to_jid, msg_id, body_string FROM tc_msgarchive "
                               "ORDER BY to_jid, msg_id")
    assert [(r, i) for r, i, _ in ids if r == ROOM_A] == [(ROOM_A, 1), (ROOM_A, 2), (ROOM_A, 3)]
    assert (ROOM_A, 3, "bonjour") in ids
    assert (ROOM_B, 3, "s2 first") in ids  # above the owner's highest id (2)
    assert [i for r, i, _ in ids if r == ROOM_B] == [1, 2, 3]
    assert (ROOM_C, 1, "c") in ids
    # the same new id in tc_messages; the CLOB crossed the link byte for byte
    assert rows(refs["target"], "SELECT msg_id FROM tc_messages WHERE room_jid = "
                                f"'{ROOM_B}' ORDER BY msg_id") == [(2,), (3,)]
    long = rows(refs["target"], f"SELECT body_text FROM tc_msgarchive WHERE to_jid = '{ROOM_B}' "
                                "AND msg_id = 1")[0][0]
    assert long == LONG_BODY
    counters = dict(rows(refs["target"], "SELECT room_jid, next_msg_id FROM tc_rooms"))
    # above every id, never below the owner's (s1 owns ROOM_B: its 3, not s2's 9)
    assert counters == {ROOM_A: 4, ROOM_B: 4, ROOM_C: 2}
    assert rows(refs["target"], f"SELECT subject FROM tc_rooms WHERE room_jid = '{ROOM_A}'"
                ) == [("s",)]  # the owner's row wins; target rows unaltered
    members = dict(((r, u), a) for r, u, a in rows(
        refs["target"], "SELECT room_jid, real_jid, affiliation FROM tc_users"))
    assert members[(ROOM_A, "alice@x")] == "owner"  # the target's row is never altered
    assert members[(ROOM_A, "bob@x")] == "outcast" and members[(ROOM_B, "carol@x")] == "outcast"
    assert {f.code for f in result.findings} >= {"AFFILIATION_CONFLICT", "ROOM_DIVERGED",
                                                   "MSG_ID_COLLISION"}
    assert len(rows(refs["target"], "SELECT 1 FROM tc_timelog")) == 2
    # nothing left behind but the snapshot; the job is recorded; the sources are unchanged
    assert rows(refs["target"], "SELECT table_name FROM user_tables WHERE table_name "
                                "LIKE 'TCM\\_%' ESCAPE '\\'") == []
    assert rows(refs["target"], "SELECT db_link FROM user_db_links") == []
    snaps = rows(refs["target"], "SELECT table_name FROM user_tables WHERE table_name "
                                 "LIKE 'TCMSNAP\\_%' ESCAPE '\\'")
    assert len(snaps) == len(tc.TC_TABLES)
    assert rows(refs["target"], f"SELECT status FROM tcmerge_jobs WHERE job_id = "
                                f"'{result.job_id}'") == [("succeeded",)]
    assert {k: checksums(refs[k]) for k in ("s1", "s2")} == before
    # the same merge again inserts nothing
    again = run_merge(request)
    assert again.ok, again.as_dict()
    assert all(t["inserted"] == 0 for t in again.as_dict()["tables"].values())


def test_a_second_merge_meets_merge_in_progress(
        schemas: tuple[ContainerOracleServer, dict[str, DatabaseRef]]) -> None:
    _server, refs = schemas
    request = MergeRequest(sources=(refs["s1"],), target=refs["target"])
    with connect(refs["target"]) as holder:
        holder.execute(sa.text("LOCK TABLE tcmerge_merge_lock IN EXCLUSIVE MODE NOWAIT"))
        result = run_merge(request)
        holder.rollback()
    assert result.status == "refused"
    assert "MERGE_IN_PROGRESS" in {f.code for f in result.findings}
    assert rows(refs["target"], "SELECT db_link FROM user_db_links") == []
