"""The Text Conference room service of one node, on the real external database.

The only part of the HA model that touches SQL (SQLAlchemy Core; PostgreSQL in
the tests, statements portable to Oracle).

* ``load(aliases)`` takes the leases of every room of the aliases in **one
  transaction** (one UPDATE raising the fencing number of existing leases, one
  INSERT ... SELECT for rooms never leased), then keeps the rooms in memory. If
  the database cannot be reached or the transaction fails, nothing is loaded and
  the service stops: no half-loaded rooms.
* ``post`` locks the room's lease row (shared), checks that this node still
  holds it with the fencing number it loaded, takes the id from
  ``tc_rooms.next_msg_id`` with one atomic UPDATE ... RETURNING and writes
  tc_msgarchive and tc_messages, all in one transaction. A node whose lease was
  taken over gets ``LeaseLostError`` and writes nothing.
* ``unload(aliases)`` releases the leases (holder NULL, fencing kept).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import sqlalchemy as sa

from tcmerge.db import server_reason
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects import known_adapter
from tcmerge.errors import EXIT_FAILURE, DatabaseError, TcmergeError
from tcmerge.schema.bookkeeping import tcmerge_room_leases as leases
from tcmerge.schema.tc import tc_messages, tc_msgarchive, tc_rooms, tc_timelog, tc_users

#: Values of the room settings (reference: history shown on join, archive retrieval max).
HISTORY_ON_JOIN = 15
ARCHIVE_RETRIEVAL_MAX = 100
SHORT_LIMIT = 4000  # bytes that fit *_string columns; longer values go to *_text


class RoomUnavailableError(TcmergeError):
    """The room is not hosted by a running TC service here."""

    code = "HA_ROOM_UNAVAILABLE"
    exit_code = EXIT_FAILURE


class LeaseLostError(TcmergeError):
    """This node no longer holds the room's lease (another node took it over)."""

    code = "HA_LEASE_LOST"
    exit_code = EXIT_FAILURE


class BannedError(TcmergeError):
    code = "HA_USER_BANNED"
    exit_code = EXIT_FAILURE


@dataclass(frozen=True)
class PostResult:
    room_jid: str
    msg_id: int
    sent_date: dt.datetime


@dataclass(frozen=True)
class ArchivedMessage:
    msg_id: int
    from_jid: str
    nick_jid: str
    body: str
    sent_date: dt.datetime


def alias_of(room_jid: str) -> str:
    return room_jid.rsplit("@", 1)[-1]


def _of_aliases(aliases: Sequence[str]) -> sa.ColumnElement[bool]:
    return sa.or_(*(tc_rooms.c.room_jid.endswith("@" + a, autoescape=True) for a in aliases))


def groupchat_packet(room_jid: str, nick: str, body: str, msg_id: int) -> str:
    return (f"<message from={quoteattr(room_jid + '/' + nick)} to={quoteattr(room_jid)} "
            f"type='groupchat' id='tc{msg_id}'><body>{escape(body)}</body></message>")


def ensure_lease_table(engine: sa.Engine) -> None:
    """Create tcmerge_room_leases when absent (migration 0003 creates it too)."""
    with engine.begin() as conn:
        leases.create(conn, checkfirst=True)


class RoomService:
    """One node's TC service: its loaded rooms and their fencing numbers."""

    def __init__(self, node: str, engine: sa.Engine, *, lock_timeout_ms: int = 5000) -> None:
        self.node = node
        self.engine = engine
        self.lock_timeout_ms = int(lock_timeout_ms)
        self.running = True
        self.rooms: dict[str, int] = {}  # room_jid -> fencing number held

    # -- database plumbing ---------------------------------------------------------------
    @property
    def _ref(self) -> DatabaseRef:
        return DatabaseRef(self.engine.url)

    @contextmanager
    def _tx(self, what: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                adapter = known_adapter(conn.dialect.name)
                if adapter is not None:
                    # lock waits are bounded: a stuck takeover fails instead of hanging
                    adapter.bound_lock_waits(conn, self.lock_timeout_ms)
                yield conn
        except sa.exc.DBAPIError as exc:
            code = "CONNECTION_FAILED" if exc.connection_invalidated or isinstance(
                exc, sa.exc.OperationalError) else "DATABASE_ERROR"
            raise DatabaseError(f"{self.node}: {what} failed: "
                                f"{server_reason(exc, self._ref)}", code=code) from None

    def _require(self, room_jid: str) -> int:
        if not self.running:
            raise RoomUnavailableError(f"{room_jid}: the TC service on {self.node} is stopped")
        try:
            return self.rooms[room_jid]
        except KeyError:
            raise RoomUnavailableError(f"{room_jid} is not hosted by {self.node}") from None

    # -- hosting ---------------------------------------------------------------------------
    def load(self, aliases: Sequence[str]) -> int:
        """Take over and load every room of ``aliases`` (all or nothing); the count loaded.

        On any database failure nothing is loaded, the service stops and the error
        (CONNECTION_FAILED / DATABASE_ERROR) is raised.
        """
        if not self.running:
            raise RoomUnavailableError(f"the TC service on {self.node} is stopped")
        if not aliases:
            return 0
        wanted = sa.select(tc_rooms.c.room_jid).where(_of_aliases(aliases))
        try:
            with self._tx("loading the rooms of " + ", ".join(aliases)) as conn:
                conn.execute(
                    leases.update()
                    .where(leases.c.room_jid.in_(wanted))
                    .values(holder=self.node, fencing=leases.c.fencing + 1,
                            acquired_at=sa.func.current_timestamp())
                )
                never_leased = ~sa.exists().where(leases.c.room_jid == tc_rooms.c.room_jid)
                conn.execute(
                    leases.insert().from_select(
                        ["room_jid", "holder", "fencing", "acquired_at"],
                        sa.select(tc_rooms.c.room_jid, sa.literal(self.node),
                                  sa.literal(1, sa.BigInteger()),
                                  sa.func.current_timestamp())
                        .where(_of_aliases(aliases)).where(never_leased),
                    )
                )
                held = conn.execute(
                    sa.select(leases.c.room_jid, leases.c.fencing)
                    .where(leases.c.holder == self.node)
                    .where(leases.c.room_jid.in_(wanted))
                ).all()
        except TcmergeError:
            self.stop()
            raise
        self.rooms.update({row.room_jid: int(row.fencing) for row in held})
        return len(held)

    def unload(self, aliases: Sequence[str]) -> int:
        """Release the leases of the rooms of ``aliases`` this node holds; the count."""
        mine = [r for r in self.rooms if alias_of(r) in set(aliases)]
        for room in mine:
            del self.rooms[room]
        if not mine:
            return 0
        with self._tx("releasing rooms") as conn:
            conn.execute(
                leases.update()
                .where(leases.c.holder == self.node)
                .where(leases.c.room_jid.in_(
                    sa.select(tc_rooms.c.room_jid).where(_of_aliases(aliases))))
                .values(holder=None)
            )
        return len(mine)

    def stop(self) -> None:
        """The TC service stops: every room is dropped from memory (leases stay in the DB)."""
        self.running = False
        self.rooms.clear()

    def start(self) -> None:
        self.running = True

    def hosted(self) -> list[str]:
        return sorted(self.rooms)

    # -- users -----------------------------------------------------------------------------
    def _fenced(self, conn: sa.Connection, room_jid: str, fencing: int) -> None:
        row = conn.execute(
            sa.select(leases.c.holder, leases.c.fencing)
            .where(leases.c.room_jid == room_jid)
            .with_for_update(read=True)
        ).first()
        if row is None or row.holder != self.node or int(row.fencing) != fencing:
            self.rooms.pop(room_jid, None)
            holder = "nobody" if row is None or row.holder is None else row.holder
            raise LeaseLostError(
                f"{self.node} lost the lease of {room_jid} (fencing {fencing}; now held by "
                f"{holder}" + ("" if row is None else f" with fencing {row.fencing}") + ")")

    def _refuse_banned(self, conn: sa.Connection, room_jid: str, user_jid: str) -> None:
        banned = conn.execute(
            sa.select(sa.func.count()).select_from(tc_users)
            .where(tc_users.c.room_jid == room_jid, tc_users.c.real_jid == user_jid,
                   tc_users.c.affiliation == "outcast")
        ).scalar_one()
        if banned:
            raise BannedError(f"{user_jid} is banned from {room_jid}")

    def join(self, room_jid: str, user_jid: str, at: dt.datetime,
             history: int = HISTORY_ON_JOIN) -> list[ArchivedMessage]:
        """The user enters the room (tc_timelog); returns the history shown on join."""
        fencing = self._require(room_jid)
        with self._tx(f"joining {room_jid}") as conn:
            self._fenced(conn, room_jid, fencing)
            self._refuse_banned(conn, room_jid, user_jid)
            conn.execute(tc_timelog.insert().values(real_jid=user_jid, room_jid=room_jid,
                                                    start=at, end=None))
            return self._last(conn, room_jid, history)

    def post(self, room_jid: str, user_jid: str, nick: str, body: str,
             at: dt.datetime) -> PostResult:
        """Archive one groupchat message; the id comes atomically from tc_rooms.next_msg_id."""
        fencing = self._require(room_jid)
        with self._tx(f"posting to {room_jid}") as conn:
            self._fenced(conn, room_jid, fencing)
            self._refuse_banned(conn, room_jid, user_jid)
            next_id = conn.execute(
                tc_rooms.update()
                .where(tc_rooms.c.room_jid == room_jid)
                .values(next_msg_id=tc_rooms.c.next_msg_id + 1)
                .returning(tc_rooms.c.next_msg_id)
            ).scalar_one_or_none()
            if next_id is None:
                raise RoomUnavailableError(f"{room_jid} does not exist in tc_rooms")
            msg_id = int(next_id) - 1
            packet = groupchat_packet(room_jid, nick, body, msg_id)
            short_body = len(body.encode("utf-8")) <= SHORT_LIMIT
            short_packet = len(packet.encode("utf-8")) <= SHORT_LIMIT
            conn.execute(tc_msgarchive.insert().values(
                msg_id=msg_id, to_jid=room_jid, from_jid=user_jid,
                nick_jid=f"{room_jid}/{nick}", sent_date=at, msg_type="g",
                body_len=len(body), message_len=len(packet),
                body_string=body if short_body else None,
                body_text=None if short_body else body,
                message_string=packet if short_packet else None,
                message_text=None if short_packet else packet,
                subject=None,
            ))
            conn.execute(tc_messages.insert().values(
                msg_id=msg_id, room_jid=room_jid, stamp=at, msg=packet))
        return PostResult(room_jid, msg_id, at)

    def read_last(self, room_jid: str, n: int = ARCHIVE_RETRIEVAL_MAX) -> list[ArchivedMessage]:
        """The last ``n`` archived messages of a hosted room, oldest first."""
        self._require(room_jid)
        with self._tx(f"reading {room_jid}") as conn:
            return self._last(conn, room_jid, n)

    @staticmethod
    def _last(conn: sa.Connection, room_jid: str, n: int) -> list[ArchivedMessage]:
        a = tc_msgarchive.c
        rows = conn.execute(
            sa.select(a.msg_id, a.from_jid, a.nick_jid, a.sent_date,
                      sa.func.coalesce(a.body_string, a.body_text).label("body"))
            .where(a.to_jid == room_jid)
            .order_by(a.msg_id.desc())
            .limit(max(0, n))
        ).all()
        return [ArchivedMessage(int(r.msg_id), r.from_jid, r.nick_jid, r.body or "",
                                r.sent_date) for r in reversed(rows)]


# ------------------------------------------------------------------------------ set-up


def create_rooms(engine: sa.Engine, rooms: Iterable[tuple[str, str, str]]) -> int:
    """Create rooms that do not exist yet: (room_jid, creator_jid, subject); the count made."""
    made = 0
    with engine.begin() as conn:
        for room_jid, creator, subject in rooms:
            exists = conn.execute(sa.select(sa.func.count()).select_from(tc_rooms)
                                  .where(tc_rooms.c.room_jid == room_jid)).scalar_one()
            if exists:
                continue
            config = ("<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                      "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_"
                      "persistentroom'><value>1</value></field></x></query></iq>")
            spacket = (f"<message from={quoteattr(room_jid)} type='groupchat'>"
                       f"<subject>{escape(subject)}</subject></message>")
            conn.execute(tc_rooms.insert().values(
                room_jid=room_jid, creator_jid=creator, subject=subject, type="persistent",
                config=config, spacket=spacket, start_msg_id=1, next_msg_id=1))
            conn.execute(tc_users.insert().values(
                room_jid=room_jid, real_jid=creator, role="moderator", affiliation="owner",
                nick_jid=f"{room_jid}/{creator.split('@', 1)[0]}"))
            made += 1
    return made


# ------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Ack:
    """A post the room service acknowledged."""

    room_jid: str
    msg_id: int
    from_jid: str
    body: str


@dataclass(frozen=True)
class LossReport:
    acknowledged: int
    lost: int  # acknowledged but absent (or different) in tc_msgarchive / tc_messages
    duplicated: int  # extra archived copies of acknowledged messages
    out_of_order: int  # acknowledged later but archived with a lower id
    lost_details: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0

    def as_dict(self) -> dict[str, object]:
        return {"acknowledged": self.acknowledged, "lost": self.lost,
                "duplicated": self.duplicated, "out_of_order": self.out_of_order,
                "details": list(self.lost_details)}


def highest_archived_ids(engine: sa.Engine, rooms: Iterable[str]) -> dict[str, int]:
    """Per room its highest msg_id in tc_msgarchive now (rooms without rows left out)."""
    a = tc_msgarchive.c
    with engine.connect() as conn:
        return {str(room): int(top) for room, top in conn.execute(
            sa.select(a.to_jid, sa.func.max(a.msg_id))
            .where(a.to_jid.in_(sorted(set(rooms)))).group_by(a.to_jid))}


def verify_acknowledged(engine: sa.Engine, acks: Sequence[Ack],
                        before: Mapping[str, int] | None = None) -> LossReport:
    """Each acknowledged post is in the archive exactly once, in acknowledgement order.

    ``before``: per room the highest msg_id archived before the run (see
    ``highest_archived_ids``); older rows, such as an earlier run's posts on the same
    database, are not this run's and are not counted as copies."""
    rooms = sorted({a.room_jid for a in acks})
    archived: dict[str, list[tuple[int, str, str]]] = {r: [] for r in rooms}
    recent: set[tuple[str, int]] = set()
    a, m = tc_msgarchive.c, tc_messages.c
    floor = dict(before or {})
    with engine.connect() as conn:
        for room in rooms:
            for row in conn.execute(
                sa.select(a.msg_id, a.from_jid,
                          sa.func.coalesce(a.body_string, a.body_text).label("body"))
                .where(a.to_jid == room, a.msg_id > floor.get(room, 0)).order_by(a.msg_id)
            ):
                archived[room].append((int(row.msg_id), row.from_jid, row.body or ""))
            recent.update((room, int(i)) for i in conn.execute(
                sa.select(m.msg_id).where(m.room_jid == room)).scalars())
    lost, order = 0, 0
    details: list[str] = []
    last_id: dict[str, int] = {}
    acked = Counter((ack.room_jid, ack.from_jid, ack.body) for ack in acks)
    stored = Counter((room, r[1], r[2]) for room, rows in archived.items() for r in rows)
    dup = sum(max(0, stored[key] - n) for key, n in acked.items())
    present = {room: set(rows) for room, rows in archived.items()}
    for ack in acks:
        if (ack.msg_id, ack.from_jid, ack.body) not in present[ack.room_jid] or \
                (ack.room_jid, ack.msg_id) not in recent:
            lost += 1
            details.append(f"{ack.room_jid} #{ack.msg_id} from {ack.from_jid} missing")
        if ack.msg_id <= last_id.get(ack.room_jid, -1):
            order += 1
        last_id[ack.room_jid] = ack.msg_id
    return LossReport(len(acks), lost, dup, order, tuple(details))
