"""Small TC data sets for tests, written with SQLAlchemy (tests only)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from tcmerge.dburl import DatabaseRef
from tcmerge.merge import pg as mpg
from tcmerge.merge.transport import TRANSPORTS, SourceReader
from tcmerge.schema import tc

T0 = dt.datetime(2024, 1, 1, 12, 0, 0)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


class TcData:
    def __init__(self, ref: DatabaseRef) -> None:
        self.ref = ref

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.ref.url)

    def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        engine = self.engine()
        try:
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
        finally:
            engine.dispose()

    def execute(self, *statements: str) -> None:
        """Run SQL statements in one transaction (set-up and changes made by tests)."""
        engine = self.engine()
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def query(self, text: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = self.engine()
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(text), params)]
        finally:
            engine.dispose()

    # -- builders ------------------------------------------------------------------------
    def room(self, jid: str, *, creator: str = "alice@example.com", subject: str = "hello",
             type_: str = "persistent", start: int = 1, next_: int = 1,
             config: str = "<x/>", spacket: str = "<s/>") -> None:
        self.insert(tc.tc_rooms, [dict(room_jid=jid, creator_jid=creator, subject=subject,
                                       type=type_, config=config, spacket=spacket,
                                       start_msg_id=start, next_msg_id=next_)])

    def messages(self, room: str, items: list[tuple[int, int, str]], *,
                 recent: bool = True, sender: str = "alice@example.com") -> None:
        """(msg_id, minute, body) archive rows, and the same in tc_messages."""
        arch, recent_rows = [], []
        for msg_id, minute, body in items:
            arch.append(dict(msg_id=msg_id, to_jid=room, from_jid=sender,
                             nick_jid=f"{room}/alice", sent_date=at(minute), msg_type="g",
                             body_len=len(body), message_len=len(body) + 20,
                             body_string=body if len(body) <= 4000 else None,
                             message_string=f"<m>{body}</m>" if len(body) <= 3990 else None,
                             body_text=body if len(body) > 4000 else None,
                             message_text=f"<m>{body}</m>" if len(body) > 3990 else None,
                             subject=None))
            recent_rows.append(dict(msg_id=msg_id, room_jid=room, stamp=at(minute),
                                    msg=f"<m>{body}</m>"))
        self.insert(tc.tc_msgarchive, arch)
        if recent:
            self.insert(tc.tc_messages, recent_rows)

    def member(self, room: str, user: str, affiliation: str = "member", *,
               role: str = "participant", nick: str | None = None) -> None:
        self.insert(tc.tc_users, [dict(room_jid=room, real_jid=user, role=role,
                                       affiliation=affiliation,
                                       nick_jid=nick or f"{room}/{user.split('@')[0]}",
                                       reason=None, initiator_jid=None)])

    def timelog(self, room: str, user: str, start: int, end: int | None) -> None:
        self.insert(tc.tc_timelog, [{"real_jid": user, "room_jid": room, "start": at(start),
                                     "end": None if end is None else at(end)}])

    # -- reading -------------------------------------------------------------------------
    def archive(self, room: str) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1])) for r in self.query(
            "SELECT msg_id, body_string FROM tc_msgarchive WHERE to_jid = :r ORDER BY msg_id",
            r=room)]

    def counters(self, room: str) -> tuple[int, int]:
        rows = self.query("SELECT start_msg_id, next_msg_id FROM tc_rooms WHERE room_jid = :r",
                          r=room)
        return int(rows[0][0]), int(rows[0][1])

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT count(*) FROM {table}")[0][0])

    def digest(self) -> dict[str, str]:
        """Byte-exact content of every TC table (ordered md5 of every row's text)."""
        out = {}
        for table in ("tc_rooms", "tc_users", "tc_messages", "tc_msgarchive", "tc_timelog"):
            out[table] = str(self.query(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' "
                f"ORDER BY t::text)), '') FROM {table} AS t")[0][0])
        return out


@contextmanager
def source_reader(target: TcData, source: TcData, transport: str) -> Iterator[SourceReader]:
    """A transport's reader of ``source`` (input 1) working for a session on ``target``
    (dblink installed there when needed); closed afterwards."""
    if transport == "dblink":
        target.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    session = mpg.open_session(target.ref, role="test")
    reader = TRANSPORTS[transport](source.ref, 1, session)
    try:
        yield reader
    finally:
        reader.close()
        session.close()
