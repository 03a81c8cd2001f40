"""Seeded generator of realistic pre-11.5 node databases (the TC tables), loaded with COPY.

Before IM and Presence 11.5(1) every chat node had its own external database.
``generate(databases, spec)`` fills database *i* as node *i + 1* of a cluster:
its rooms live under ``conference-<i+1>-<cluster_id>.<domain>``.

What the rows look like (see ``reference/tc-schema.md``):

- tc_rooms: persistent rooms (one in ten ad-hoc); ``config`` is the whole
  ``muc#owner`` IQ with its ``jabber:x:data`` submit form, ``spacket`` the whole
  subject message; msg ids of a room run ``start_msg_id .. next_msg_id - 1``.
- tc_users: the creator as owner/moderator, then every role and affiliation
  (with ``members_per_room >= 6`` in every room, else across rooms); nick_jid
  ``room@alias/nick``; bans carry a reason and the initiator.
- tc_msgarchive: groupchat messages (msg_type ``g``); bodies up to 4000
  characters in ``body_string``, longer ones in ``body_text`` (and the same per
  column for the packet in ``message_string``/``message_text``); ``body_len``
  and ``message_len`` are character lengths; bodies hold quotes, backslashes,
  tabs, newlines, CR, XML specials, Japanese, accents and emoji.
- tc_messages: the newest messages of each room as delivered packets, with
  the archive's msg ids. tc_timelog: joins and exits, ``end`` NULL for some.

Overlap between database *i* and *i - 1* (``shared_rooms`` > 0): some of the
previous database's rooms appear again (same room_jid, creator and type); of
their messages a ``duplicate_ratio`` are exact copies of the previous rows (all
columns but msg_id, which may or may not be the same), the others are new
messages whose ids reuse the ids of the previous database (``colliding_ids``)
or continue after them. ``affiliation_conflicts``, ``bans``, ``diverged_rooms``
and ``room_conflicts`` make exactly that many cases; ``GenerationResult.overlap``
reports what was made.

Everything is a function of the spec: string-seeded ``random.Random`` per room,
a fixed base time (2016-03-01), no wall clock; the same spec gives the same
bytes. Rows are built as COPY text from pre-escaped pools and streamed with
psycopg's COPY, one transaction per database. ``generate_rows`` returns the same
data as Python values, for tests that compare with what the server holds.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from tcmerge.db import libpq_params, server_reason
from tcmerge.dburl import DatabaseRef
from tcmerge.dialects import adapter_for
from tcmerge.errors import ConfigError, DatabaseError
from tcmerge.schema import tc

# ---------------------------------------------------------------------------------------
# public data
# ---------------------------------------------------------------------------------------

#: The generated tables, in load order, with their columns in COPY order.
COLUMNS: dict[str, tuple[str, ...]] = {
    "tc_rooms": ("room_jid", "creator_jid", "subject", "type", "config", "spacket",
                 "start_msg_id", "next_msg_id"),
    "tc_users": ("room_jid", "real_jid", "role", "affiliation", "nick_jid", "reason",
                 "initiator_jid"),
    "tc_messages": ("msg_id", "room_jid", "stamp", "msg"),
    "tc_msgarchive": ("msg_id", "to_jid", "from_jid", "nick_jid", "sent_date", "msg_type",
                      "body_len", "message_len", "body_string", "message_string",
                      "body_text", "message_text", "subject"),
    "tc_timelog": ("real_jid", "room_jid", "start", "end"),
}
TABLES = tuple(COLUMNS)
#: Kinds of overlap reported per database (all 0 for the first database).
OVERLAP_KINDS = ("shared_rooms", "duplicates", "colliding_ids", "affiliation_conflicts",
                 "bans", "diverged_rooms", "room_conflicts", "timelog_duplicates")
#: Longest value kept in the VARCHAR(4000) ``*_string`` columns.
STRING_LIMIT = 4000
#: Every time is an offset in milliseconds from this instant (no wall clock).
BASE_TIME = datetime(2016, 3, 1)


@dataclass(frozen=True)
class GeneratorSpec:
    seed: int = 1
    cluster_id: str = "cup"          # alias conference-<node>-<cluster_id>.<domain>
    domain: str = "example.com"
    rooms_per_node: int = 50
    members_per_room: int = 8        # tc_users rows per room (every role and affiliation appear)
    messages_per_room: int = 200     # tc_msgarchive rows per room
    recent_per_room: int = 15        # tc_messages rows per room (the newest, same msg_ids)
    timelog_per_room: int = 10
    long_body_ratio: float = 0.02    # bodies > 4000 characters (go to body_text/message_text)
    non_ascii_ratio: float = 0.1     # bodies with non-ASCII text (Japanese, accents, emoji)
    # overlap between database i and database i-1 (i >= 1):
    shared_rooms: float = 0.0        # fraction of the previous node's rooms also present here
    duplicate_ratio: float = 0.3     # of a shared room's messages here: exact copies
    colliding_ids: bool = True       # a shared room's other messages reuse msg_ids used there
    affiliation_conflicts: int = 0   # (room, real_jid) in both with different affiliation/role
    bans: int = 0                    # outcast here where the previous database has a non-outcast
    diverged_rooms: int = 0          # shared rooms with a different subject/config here
    room_conflicts: int = 0          # shared rooms with a different creator_jid here

    def __post_init__(self) -> None:
        for name in ("rooms_per_node", "messages_per_room", "recent_per_room",
                     "timelog_per_room", "affiliation_conflicts", "bans", "diverged_rooms",
                     "room_conflicts"):
            if getattr(self, name) < 0:
                raise ConfigError(f"generator: {name} must not be negative")
        if self.members_per_room < 1:
            raise ConfigError("generator: members_per_room must be at least 1 (the owner)")
        for name in ("long_body_ratio", "non_ascii_ratio", "shared_rooms", "duplicate_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"generator: {name} must be between 0 and 1")
        if self.long_body_ratio + self.non_ascii_ratio > 1.0:
            raise ConfigError("generator: long_body_ratio + non_ascii_ratio must not exceed 1")
        for name in ("cluster_id", "domain"):
            value = getattr(self, name)
            if not value or any(c in value for c in "@/'\"<>&\\ \t\r\n"):
                raise ConfigError(f"generator: {name} {value!r} is not usable in a JID")

    def alias(self, node: int) -> str:
        """The chat node alias of node ``node`` (1-based)."""
        return f"conference-{node}-{self.cluster_id}.{self.domain}"


@dataclass
class GenerationResult:
    counts: list[dict[str, int]]     # per database: table name -> rows written
    overlap: list[dict[str, int]] = field(default_factory=list)  # per database, OVERLAP_KINDS
    databases: list[str] = field(default_factory=list)           # labels (no password)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(sum(c.values()) for c in self.counts)

    def as_dict(self) -> dict[str, Any]:
        labels = self.databases or [f"#{i + 1}" for i in range(len(self.counts))]
        return {
            "databases": [
                {"database": label, "counts": dict(counts),
                 "overlap": dict(self.overlap[i]) if i < len(self.overlap) else {}}
                for i, (label, counts) in enumerate(zip(labels, self.counts, strict=True))
            ],
            "rows": self.total_rows,
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------
# text helpers
# ---------------------------------------------------------------------------------------

def copy_escape(text: str) -> str:
    """A value in PostgreSQL's COPY text format (backslash, tab, newline, CR escaped)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attr(text: str) -> str:
    return xml_escape(text).replace("'", "&apos;")


# Lookup tables for the hot path: "YYYY-MM-DD " per day, "HH:MM:SS." per second of a day.
_DAYS: list[str] = []


@functools.cache
def _clock() -> tuple[list[str], list[str]]:
    """"HH:MM:SS." per second of a day and "mmm" per millisecond (built on first use: the
    CLI imports this module for every command)."""
    return ([f"{h:02d}:{m:02d}:{s:02d}." for h in range(24) for m in range(60)
             for s in range(60)], [f"{m:03d}" for m in range(1000)])


def _day_texts(days: int) -> list[str]:
    """The day table, long enough for ``days`` days after BASE_TIME."""
    while len(_DAYS) < days:
        _DAYS.append(f"{BASE_TIME.date() + timedelta(days=len(_DAYS))} ")
    return _DAYS


def ts_text(ms: int) -> str:
    """A time offset (ms from BASE_TIME, >= 0) as PostgreSQL TIMESTAMP input."""
    day, rest = divmod(ms, 86_400_000)
    second, milli = divmod(rest, 1000)
    days = _DAYS if day < len(_DAYS) else _day_texts(day + 366)
    seconds, millis = _clock()
    return f"{days[day]}{seconds[second]}{millis[milli]}"


def ts_value(ms: int) -> datetime:
    return BASE_TIME + timedelta(milliseconds=ms)


def copy_line(values: Sequence[Any]) -> str:
    """One COPY text line for Python values (the slow, generic path; used for checks)."""
    parts = []
    for value in values:
        if value is None:
            parts.append("\\N")
        elif isinstance(value, datetime):
            parts.append(f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d}")
        elif isinstance(value, date):
            parts.append(value.isoformat())
        elif isinstance(value, int):
            parts.append(str(value))
        else:
            parts.append(copy_escape(str(value)))
    return "\t".join(parts) + "\n"


# ---------------------------------------------------------------------------------------
# pools: people, bodies, subjects (built once per seed)
# ---------------------------------------------------------------------------------------

_FIRST = (("Andy", "andy"), ("Bob", "bob"), ("Catherine", "catherine"), ("Deborah", "deborah"),
          ("José", "jose"), ("Zoë", "zoe"), ("Björn", "bjorn"), ("François", "francois"),
          ("Ólafur", "olafur"), ("Søren", "soren"), ("Ngọc", "ngoc"), ("Łukasz", "lukasz"),
          ("太郎", "taro"), ("花子", "hanako"), ("Yuki", "yuki"), ("Priya", "priya"),
          ("Mei", "mei"), ("Ahmed", "ahmed"), ("Olga", "olga"), ("Chloé", "chloe"),
          ("Liam", "liam"), ("Grace", "grace"), ("Noah", "noah"), ("Emma", "emma"),
          ("Hiroshi", "hiroshi"), ("Ana", "ana"), ("Jürgen", "jurgen"), ("Ines", "ines"))
_LAST = (("Smith", "smith"), ("García", "garcia"), ("Müller", "muller"), ("Tanaka", "tanaka"),
         ("佐藤", "sato"), ("Dubois", "dubois"), ("O'Brien", "obrien"), ("Nguyễn", "nguyen"),
         ("Kowalski", "kowalski"), ("Rossi", "rossi"), ("Jensen", "jensen"), ("Silva", "silva"),
         ("Ivanova", "ivanova"), ("Chen", "chen"), ("Patel", "patel"), ("Brown", "brown"),
         ("Łęcki", "lecki"), ("Åberg", "aberg"), ("Yamamoto", "yamamoto"), ("Novák", "novak"))
_ROOM_WORDS = ("ops", "dev", "support", "sales-emea", "sales-apac", "release", "incident",
               "design", "qa", "noc", "helpdesk", "finance", "hr-announce", "lab", "infra",
               "security", "marketing", "tokyo-office", "paris-office", "standup", "oncall",
               "db-team", "voice", "video", "migration")
_ROOM_DESCS = ('Équipe "ops" – astreinte 24/7', "東京オフィスの雑談", "Release train & hot-fixes",
               "Support L2 <escalations>", "Daily stand-up, 09:30 sharp", "Ventes EMEA – Q2",
               "Café ☕ & random", "Sicherheits­vorfälle (vertraulich)", "On-call hand-over",
               "Lab bookings: 'first come, first served'", "Migration to 11.5 – tracking",
               "Ñandú project 🐦")
_SUBJECTS = ("Welcome!", "Release 10.5(2) freeze on Friday", 'Incident #4711 "resolved"',
             "本日の議題：リリース計画", "Réunion à 14h – salle Émeraude", "Don't push to master",
             "Wartungsfenster Sa 22:00–02:00", "🎉 Q1 targets reached", "Rotation: Yuki → Olga",
             "<no subject>", "Use tickets, not DMs & mails", "Ça va? Всё хорошо?",
             "Read the runbook first", "SR 6-1234567 with TAC", "Move to persistent chat HA")
_BAN_REASONS = ('Spam: repeated "buy now" links', "Verstoß gegen die Chat-Regeln",
                "規約違反のため", r"Posted credentials (\\fs01\secrets)", "Flooding the room",
                "Off-topic after 3 warnings; see policy §4")
_ASCII_WORDS = ("deploy", "build", "staging", "prod", "rollback", "ticket", "meeting", "server",
                "cluster", "node", "failover", "fallback", "backup", "restore", "upgrade",
                "patch", "log", "error", "warning", "ok", "thanks", "please", "check", "done",
                "lunch", "coffee", "the", "a", "is", "on", "with", "for", "now", "later",
                "database", "merge", "room", "chat", "presence", "router", "service", "restart")
_ASCII_SPECIALS = ('it\'s "done"', "path \\\\fs01\\share\\logs", "C:\\Program Files\\Cisco",
                   "col1\tcol2\tcol3", "line one\nline two", "windows\r\nline end",
                   "<b>bold</b> & <i>co</i>", "100% sure; 50$ \\n is not a newline",
                   "regex ^\\d+$", "SELECT * FROM tc_rooms WHERE type = 'ad-hoc';",
                   "tab\tat end\t", "trailing backslash \\", "json {\"a\": [1, 2]}")
_NON_ASCII = ("会議は15時からです。", "お疲れ様です！", "了解しました。", "資料を共有します。",
              "Café crème à 10h ? Ça marche.", "Grüße aus München", "¿Dónde está el informe?",
              "Ελληνικά κείμενα", "Привет, команда!", "👍", "🎉 release done 🚀",
              "naïve façade coöperation", "Smörgåsbord på fredag", "Zażółć gęślą jaźń",
              "ข้อความภาษาไทย", "中文测试消息", "한국어 메시지", "emoji 🧑‍💻 with ZWJ",
              "quote «guillemets» and „Anführung“", "arabic مرحبا", "Tiếng Việt có dấu")
_LONG_PARTS = (
    "2016-03-01 08:00:01,123 ERROR [xcp-router] connection reset by peer\tretry=3\n",
    "Stack trace:\n\tat com.cisco.tc.Room.join(Room.java:42)\n\tat java.lang.Thread.run\n",
    'config: {"alias": "conference-1-cup.example.com", "path": "C:\\\\tc\\\\data"}\n',
    "障害報告：テキスト会議サービスが停止しました。原因を調査中です。\n",
    "Compte rendu : la base externe a été migrée ; vérifiez les salons persistants.\n",
    "| node | state | rooms |\n|------|-------|-------|\n| 1A   | ok    | 42    |\r\n",
    "<iq type='result'/> & friends: XML in a body must be escaped in the packet.\n",
    "Emoji storm 🎉🎉🎉 🚀🚀 👍👍👍 and a backslash \\ at the end\\\n",
)

_COMBOS = (("moderator", "owner"), ("moderator", "admin"), ("participant", "member"),
           ("visitor", "none"), ("none", "outcast"), ("hidden", "member"),
           ("participant", "none"), ("participant", "member"), ("moderator", "member"),
           ("visitor", "member"))
_CONFLICT_AFFILIATION = {"none": ("participant", "member"), "member": ("moderator", "admin"),
                         "admin": ("participant", "member"), "owner": ("moderator", "admin")}
_BODY_END = "</body></message>"
NULL = "\\N"


@dataclass(frozen=True, slots=True)
class _Body:
    raw: str
    esc: str        # COPY-escaped raw
    xml: str        # XML-escaped (inside the packet)
    xml_esc: str    # COPY-escaped xml
    length: int
    xml_len: int


def _body(text: str) -> _Body:
    xml = xml_escape(text)
    return _Body(text, copy_escape(text), xml, copy_escape(xml), len(text), len(xml))


@dataclass(frozen=True, slots=True)
class _Person:
    jid: str        # alice.smith@example.com
    nick: str       # Alice Smith
    full: str       # alice.smith@example.com/jabber_1234


class _Pools:
    """Text pools shared by every database of one seed."""

    def __init__(self, seed: int, domain: str, people: int) -> None:
        rng = random.Random(f"tcmerge-gen:{seed}:pools")
        names = [(first, last) for first in _FIRST for last in _LAST]
        rng.shuffle(names)
        self.people: list[_Person] = []
        for initial in itertools.chain([""], itertools.cycle("ABCDEFGHIJKLMNOPRSTVW")):
            for (first, first_a), (last, last_a) in names:
                # namesakes get a middle initial (and a number once the initials run out)
                number = "" if len(self.people) < 22 * len(names) else str(
                    len(self.people) // (22 * len(names)) + 1)
                middle = f"{initial}{number}"
                local = f"{first_a}.{middle.lower()}.{last_a}" if middle else f"{first_a}.{last_a}"
                nick = f"{first} {middle}. {last}" if middle else f"{first} {last}"
                self.people.append(_Person(f"{local}@{domain}", nick,
                                           f"{local}@{domain}/jabber_{rng.randrange(1000, 9999)}"))
            if len(self.people) >= people:
                break
        ascii_bodies = [_body(self._ascii_text(rng)) for _ in range(1500)]
        ascii_bodies.append(_body(("x" * 39 + "\n") * 100))  # exactly STRING_LIMIT characters
        self.bodies: list[_Body] = ascii_bodies
        self.ascii = (0, len(self.bodies))
        self.bodies += [_body(self._non_ascii_text(rng)) for _ in range(500)]
        self.non_ascii = (self.ascii[1], len(self.bodies))
        self.bodies += [_body(self._long_text(rng, i)) for i in range(24)]
        self.long = (self.non_ascii[1], len(self.bodies))
        self.subjects = [_body(s) for s in _SUBJECTS]
        # subjects go into packet heads unescaped for COPY: they must not need it
        assert all(s.esc == s.raw for s in self.subjects)

    @staticmethod
    def _ascii_text(rng: random.Random) -> str:
        words = [rng.choice(_ASCII_WORDS) for _ in range(int(rng.random() ** 3 * 60) + 1)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_ASCII_SPECIALS))
        if rng.random() < 0.02:  # a pasted block
            paste = (rng.choice(_ASCII_SPECIALS) for _ in range(rng.randrange(5, 30)))
            words.append("\n".join(paste))
        text = " ".join(words)
        return text[0].upper() + text[1:]

    @staticmethod
    def _non_ascii_text(rng: random.Random) -> str:
        parts = [rng.choice(_NON_ASCII) for _ in range(rng.randrange(1, 6))]
        if rng.random() < 0.4:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(_ASCII_SPECIALS))
        return " ".join(parts)

    @staticmethod
    def _long_text(rng: random.Random, i: int) -> str:
        target = STRING_LIMIT + 1 if i == 0 else rng.randrange(STRING_LIMIT + 2, 10_000)
        chunks: list[str] = []
        size = 0
        while size < target:
            chunk = rng.choice(_LONG_PARTS)
            chunks.append(chunk)
            size += len(chunk)
        return "".join(chunks)[:target]


@functools.lru_cache(maxsize=8)
def _pools(seed: int, domain: str, people: int) -> _Pools:
    return _Pools(seed, domain, people)


# ---------------------------------------------------------------------------------------
# rooms
# ---------------------------------------------------------------------------------------

# A sender: (real_jid, nick_jid, full_jid). A message: (msg_id, t_ms, sender, body, subject)
# with subject -1 for none. A member row: the tc_users values. A time log entry:
# (real_jid, start_ms, end_ms or None).
_Sender = tuple[str, str, str]
_Msg = tuple[int, int, _Sender, int, int]
_Member = tuple[str, str, str, str, str, str | None, str | None]
_Stay = tuple[str, int, int | None]


@dataclass(slots=True)
class _Room:
    jid: str
    creator: _Person
    subject: int
    type: str
    config: str
    spacket: str
    start: int
    next: int
    members: list[_Member]
    msgs: list[_Msg]
    stays: list[_Stay]


def _config_packet(room_jid: str, owner: _Person, name: str, desc: str, persistent: bool,
                   members_only: bool, max_users: int, stanza: str) -> str:
    fields = (
        ("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
        ("muc#roomconfig_roomname", name),
        ("muc#roomconfig_roomdesc", desc),
        ("muc#roomconfig_persistentroom", "1" if persistent else "0"),
        ("muc#roomconfig_publicroom", "0" if members_only else "1"),
        ("muc#roomconfig_membersonly", "1" if members_only else "0"),
        ("muc#roomconfig_moderatedroom", "0"),
        ("muc#roomconfig_allowinvites", "1"),
        ("muc#roomconfig_changesubject", "1"),
        ("muc#roomconfig_maxusers", str(max_users)),
        ("muc#roomconfig_whois", "moderators"),
        ("muc#roomconfig_enablelogging", "1"),
        ("muc#roomconfig_roomowners", owner.jid),
    )
    form = "".join(f"<field var='{var}'><value>{xml_escape(value)}</value></field>"
                   for var, value in fields)
    return (f"<iq from='{xml_attr(owner.full)}' id='{stanza}' to='{room_jid}' type='set'>"
            "<query xmlns='http://jabber.org/protocol/muc#owner'>"
            f"<x xmlns='jabber:x:data' type='submit'>{form}</x></query></iq>")


def _subject_packet(room_jid: str, owner: _Person, subject: _Body, stanza: str) -> str:
    return (f"<message from='{xml_attr(room_jid + '/' + owner.nick)}' to='{room_jid}' "
            f"type='groupchat' id='{stanza}'><subject>{subject.xml}</subject></message>")


@dataclass
class _Plan:
    """The deliberate differences of one database from the previous one."""

    diverged: set[int]
    conflicts: set[int]
    member_changes: dict[tuple[int, int], str]   # (room position, member index) -> kind


class _Builder:
    """Builds the rooms of each database in order; keeps what the next database shares."""

    def __init__(self, spec: GeneratorSpec, count: int) -> None:
        self.spec = spec
        self.count = count
        self.pools = _pools(spec.seed, spec.domain, max(2000, 4 * spec.members_per_room))
        # rooms per database and which rooms of database i-1 database i shares
        self.room_count: list[int] = []
        self.shared_from_prev: list[list[int]] = []
        for db in range(count):
            if db == 0:
                picks: list[int] = []
            else:
                prev = self.room_count[db - 1]
                wanted = round(spec.shared_rooms * prev)
                picks = sorted(random.Random(self._key(db, "share")).sample(range(prev), wanted))
            self.shared_from_prev.append(picks)
            self.room_count.append(len(picks) + spec.rooms_per_node)
        self.kept: dict[int, _Room] = {}
        self.overlap: list[dict[str, int]] = [dict.fromkeys(OVERLAP_KINDS, 0)
                                              for _ in range(count)]
        self._next_db = 0

    def _key(self, db: int, what: str | int) -> str:
        return f"tcmerge-gen:{self.spec.seed}:{db}:{what}"

    # -- one database ----------------------------------------------------------------------
    def rooms(self, db: int) -> Iterator[_Room]:
        """The rooms of database ``db``; call for 0, 1, ... in order and consume fully."""
        if db != self._next_db:
            raise ValueError("databases must be generated in order")
        self._next_db += 1
        spec = self.spec
        alias = spec.alias(db + 1)
        keep = set(self.shared_from_prev[db + 1]) if db + 1 < self.count else set()
        previous = [self.kept[i] for i in self.shared_from_prev[db]]
        self.kept = {}
        plan = self._plan_overlap(db, previous)
        overlap = self.overlap[db]
        overlap["shared_rooms"] = len(previous)
        overlap["diverged_rooms"] = len(plan.diverged)
        overlap["room_conflicts"] = len(plan.conflicts)
        for position in range(self.room_count[db]):
            rng = random.Random(self._key(db, position))
            if position < len(previous):
                room = self._shared_room(rng, db, position, previous[position], plan)
            else:
                room = self._new_room(rng, alias, db, position)
            if position in keep:
                self.kept[position] = room
            yield room

    def _plan_overlap(self, db: int, previous: list[_Room]) -> _Plan:
        spec = self.spec
        if db == 0:
            return _Plan(set(), set(), {})
        rng = random.Random(self._key(db, "overlap"))
        shared = list(range(len(previous)))
        if spec.diverged_rooms + spec.room_conflicts > len(shared):
            raise ConfigError(
                f"generator: database {db + 1} shares {len(shared)} rooms with the previous "
                f"one, fewer than diverged_rooms + room_conflicts = "
                f"{spec.diverged_rooms + spec.room_conflicts}; raise shared_rooms")
        picked = rng.sample(shared, spec.diverged_rooms + spec.room_conflicts)
        diverged = set(picked[:spec.diverged_rooms])
        conflicts = set(picked[spec.diverged_rooms:])
        candidates = []
        for position, room in enumerate(previous):
            for index, member in enumerate(room.members[:self._copied(len(room.members))]):
                if index > 0 and member[3] != "outcast":
                    candidates.append((position, index))
        wanted = spec.affiliation_conflicts + spec.bans
        if wanted > len(candidates):
            raise ConfigError(
                f"generator: database {db + 1} has {len(candidates)} members shared with the "
                f"previous database that could conflict, fewer than affiliation_conflicts + "
                f"bans = {wanted}; raise shared_rooms or members_per_room")
        chosen = rng.sample(candidates, wanted)
        changes = {key: "conflict" for key in chosen[:spec.affiliation_conflicts]}
        changes.update({key: "ban" for key in chosen[spec.affiliation_conflicts:]})
        return _Plan(diverged, conflicts, changes)

    @staticmethod
    def _copied(members: int) -> int:
        """How many of a shared room's members the next database holds again."""
        return members - members // 4

    # -- rooms -----------------------------------------------------------------------------
    def _room_settings(self, rng: random.Random, jid: str, owner: _Person, persistent: bool,
                       ) -> tuple[int, str, str]:
        pools = self.pools
        subject = rng.randrange(len(pools.subjects))
        name = jid.split("@", 1)[0].replace("-", " ").title()
        config = _config_packet(jid, owner, name, rng.choice(_ROOM_DESCS), persistent,
                                rng.random() < 0.3, rng.choice((20, 50, 100, 200, 500)),
                                f"cfg{rng.randrange(1 << 30):x}")
        spacket = _subject_packet(jid, owner, pools.subjects[subject],
                                  f"subj{rng.randrange(1 << 30):x}")
        return subject, config, spacket

    def _members(self, rng: random.Random, jid: str, people: list[_Person], position: int,
                 first: int, total: int, creator: _Person) -> list[_Member]:
        rows: list[_Member] = []
        # with 6 members or more the first six hold every role and affiliation; fewer
        # rotate through the combinations from room to room
        rotate = position * max(total - 1, 1) if total < 6 else 0
        for j, person in enumerate(people):
            slot = first + j
            if slot == 0:
                role, affiliation = _COMBOS[0]
            else:
                role, affiliation = _COMBOS[1 + (slot - 1 + rotate) % (len(_COMBOS) - 1)]
            reason: str | None = None
            initiator: str | None = None
            if affiliation == "outcast":
                reason, initiator = rng.choice(_BAN_REASONS), creator.jid
            elif affiliation == "admin":
                initiator = creator.jid
            rows.append((jid, person.jid, role, affiliation, f"{jid}/{person.nick}", reason,
                         initiator))
        return rows

    def _messages(self, rng: random.Random, senders: list[_Sender], t: int, n: int,
                  ) -> list[tuple[int, _Sender, int, int]]:
        pools = self.pools
        spec = self.spec
        long_lo, long_hi = pools.long
        na_lo, na_hi = pools.non_ascii
        ascii_lo, ascii_hi = pools.ascii
        long_cut = spec.long_body_ratio
        na_cut = long_cut + spec.non_ascii_ratio
        n_senders = len(senders)
        n_subjects = len(pools.subjects)
        rand = rng.random
        out = []
        for _ in range(n):
            r = rand()
            t += int(r * r * 21_600_000) + 1000
            r = rand()
            if r < long_cut:
                body = long_lo + int(rand() * (long_hi - long_lo))
            elif r < na_cut:
                body = na_lo + int(rand() * (na_hi - na_lo))
            else:
                body = ascii_lo + int(rand() * (ascii_hi - ascii_lo))
            subject = int(rand() * n_subjects) if rand() < 0.005 else -1
            out.append((t, senders[int(rand() * n_senders)], body, subject))
        return out

    def _stays(self, rng: random.Random, members: list[_Member], t0: int, t1: int, n: int,
               avoid: set[int] | None = None) -> list[_Stay]:
        stays = []
        span = max(t1 - t0, 1)
        for _ in range(n):
            start = t0 + rng.randrange(span)
            while avoid is not None and start in avoid:
                start += 1
            end = None if rng.random() < 0.15 else start + rng.randrange(60_000, 28_800_000)
            stays.append((rng.choice(members)[1], start, end))
        stays.sort(key=lambda s: s[1])
        return stays

    def _new_room(self, rng: random.Random, alias: str, db: int, position: int) -> _Room:
        spec = self.spec
        pools = self.pools
        jid = f"{rng.choice(_ROOM_WORDS)}{position + 1}@{alias}"
        chosen = [pools.people[i] for i in rng.sample(range(len(pools.people)),
                                                     spec.members_per_room)]
        creator = chosen[0]
        persistent = rng.random() >= 0.1
        subject, config, spacket = self._room_settings(rng, jid, creator, persistent)
        members = self._members(rng, jid, chosen, position, 0, spec.members_per_room, creator)
        senders = [(p.jid, f"{jid}/{p.nick}", p.full) for p in chosen]
        t0 = int(rng.random() * 400 * 86_400_000)
        start = 1 if rng.random() < 0.85 else rng.randrange(2, 5000)
        timed = self._messages(rng, senders, t0, spec.messages_per_room)
        msgs = [(start + i, t, sender, body, subj)
                for i, (t, sender, body, subj) in enumerate(timed)]
        t1 = msgs[-1][1] if msgs else t0 + 86_400_000
        stays = self._stays(rng, members, t0, t1, spec.timelog_per_room)
        return _Room(jid, creator, subject, "persistent" if persistent else "ad-hoc", config,
                     spacket, start, start + len(msgs), members, msgs, stays)

    def _shared_room(self, rng: random.Random, db: int, position: int, prev: _Room,
                     plan: _Plan) -> _Room:
        spec = self.spec
        pools = self.pools
        overlap = self.overlap[db]
        jid = prev.jid
        creator = prev.creator
        taken = {m[1] for m in prev.members}
        fresh = [p for p in (pools.people[i] for i in rng.sample(
            range(len(pools.people)), spec.members_per_room + len(taken))) if p.jid not in taken]
        conflict = position in plan.conflicts
        if conflict:
            creator = fresh[0]
        # members: most of the previous rows again, some changed on purpose, new people
        copied = prev.members[:self._copied(len(prev.members))]
        members: list[_Member] = []
        for index, row in enumerate(copied):
            kind = plan.member_changes.get((position, index))
            if kind == "conflict":
                role, affiliation = _CONFLICT_AFFILIATION[row[3]]
                row = (row[0], row[1], role, affiliation, row[4], None, prev.creator.jid)
                overlap["affiliation_conflicts"] += 1
            elif kind == "ban":
                row = (row[0], row[1], "none", "outcast", row[4], rng.choice(_BAN_REASONS),
                       prev.creator.jid)
                overlap["bans"] += 1
            members.append(row)
        newcomers = fresh[:max(spec.members_per_room - len(copied), 1 if conflict else 0)]
        members += self._members(rng, jid, newcomers, position, len(copied),
                                 spec.members_per_room, prev.creator)
        if conflict:  # another creator: it owns the room here
            first = members[len(copied)]
            members[len(copied)] = (first[0], first[1], "moderator", "owner", first[4],
                                    None, None)
        # room row: the same unless diverged
        if position in plan.diverged:
            subject, config, spacket = self._room_settings(rng, jid, creator,
                                                           prev.type == "persistent")
            if subject == prev.subject:
                subject = (subject + 1) % len(pools.subjects)
                spacket = _subject_packet(jid, creator, pools.subjects[subject],
                                          f"subj{rng.randrange(1 << 30):x}")
            if config == prev.config:  # practically never; keep the promise anyway
                config = config.replace("</x>", "<field var='muc#roomconfig_lang'>"
                                        "<value>ja</value></field></x>")
        else:
            subject, config, spacket = prev.subject, prev.config, prev.spacket
        # messages: exact copies of some previous rows, new ones in the same period
        n = spec.messages_per_room
        dup_count = min(round(n * spec.duplicate_ratio), len(prev.msgs))
        dups = sorted(rng.sample(range(len(prev.msgs)), dup_count))
        used = {m[1] for m in prev.msgs}
        by_jid = self._by_jid
        senders = [(m[1], m[4], by_jid[m[1]].full) for m in members]
        t_first = prev.msgs[0][1] if prev.msgs else 0
        timed = self._messages(rng, senders, t_first - 3_600_000, n - dup_count)
        fresh_msgs = []
        for t, sender, body, subj in timed:
            while t in used:
                t += 1
            used.add(t)
            fresh_msgs.append((t, 1, sender, body, subj))
        merged = sorted([(prev.msgs[i][1], 0, prev.msgs[i][2], prev.msgs[i][3], prev.msgs[i][4])
                         for i in dups] + fresh_msgs, key=lambda m: (m[0], m[1]))
        start = prev.start if spec.colliding_ids else prev.next
        msgs = [(start + i, t, sender, body, subj)
                for i, (t, _, sender, body, subj) in enumerate(merged)]
        overlap["duplicates"] += dup_count
        overlap["colliding_ids"] += sum(
            1 for m, (_, origin, *_rest) in zip(msgs, merged, strict=True)
            if origin == 1 and prev.start <= m[0] < prev.next)
        # time log: some stays again, others new
        stay_dups = min(round(len(prev.stays) * spec.duplicate_ratio), len(prev.stays))
        again = [prev.stays[i] for i in sorted(rng.sample(range(len(prev.stays)), stay_dups))]
        t1 = msgs[-1][1] if msgs else t_first + 86_400_000
        new_stays = self._stays(rng, members, t_first, t1, spec.timelog_per_room - stay_dups,
                                avoid={s[1] for s in prev.stays})
        overlap["timelog_duplicates"] += stay_dups
        stays = sorted(again + new_stays, key=lambda s: s[1])
        return _Room(jid, creator, subject, prev.type, config, spacket, start,
                     start + len(msgs), members, msgs, stays)

    @functools.cached_property
    def _by_jid(self) -> dict[str, _Person]:
        return {p.jid: p for p in self.pools.people}


# ---------------------------------------------------------------------------------------
# rendering: COPY text (fast path) and Python values (checks)
# ---------------------------------------------------------------------------------------

class _Renderer:
    def __init__(self, pools: _Pools) -> None:
        self.pools = pools

    def _head(self, room_jid: str, from_jid: str, t: int, subject: int) -> tuple[str, str]:
        """The packet up to ``<body>``, and the subject column (COPY text)."""
        head = (f"<message from='{from_jid}' to='{room_jid}' type='groupchat' "
                f"id='m{t:x}' xml:lang='en'>")
        if subject >= 0:
            subj = self.pools.subjects[subject]
            return f"{head}<subject>{subj.xml}</subject><body>", subj.esc
        return head + "<body>", "\\N"

    # -- COPY text -------------------------------------------------------------------------
    def archive_lines(self, room: _Room, out: list[str]) -> None:
        """The room's tc_msgarchive rows as COPY text (the hot path: keep it lean)."""
        bodies = self.pools.bodies
        subjects = self.pools.subjects
        rj = room.jid
        append = out.append
        per_sender: dict[_Sender, tuple[str, str]] = {}
        seconds, millis = _clock()
        days = _day_texts(room.msgs[-1][1] // 86_400_000 + 1) if room.msgs else _DAYS
        for msg_id, t, sender, b, s in room.msgs:
            fixed = per_sender.get(sender)
            if fixed is None:
                real, nick_jid, full = sender
                fixed = per_sender[sender] = (
                    f"\t{rj}\t{real}\t{nick_jid}\t",
                    f"<message from='{full}' to='{rj}' type='groupchat' id='m")
            columns, head = fixed
            if s < 0:
                head = f"{head}{t:x}' xml:lang='en'><body>"
                subject = NULL
            else:
                subject = subjects[s].esc
                head = f"{head}{t:x}' xml:lang='en'><subject>{subjects[s].xml}</subject><body>"
            body = bodies[b]
            mlen = len(head) + body.xml_len + 17
            if body.length > STRING_LIMIT:
                bstr, btext = NULL, body.esc
            else:
                bstr, btext = body.esc, NULL
            if mlen > STRING_LIMIT:
                mstr, mtext = NULL, f"{head}{body.xml_esc}{_BODY_END}"
            else:
                mstr, mtext = f"{head}{body.xml_esc}{_BODY_END}", NULL
            day, rest = divmod(t, 86_400_000)
            second, milli = divmod(rest, 1000)
            append(f"{msg_id}{columns}{days[day]}{seconds[second]}{millis[milli]}\tg\t"
                   f"{body.length}\t{mlen}\t{bstr}\t{mstr}\t{btext}\t{mtext}\t{subject}\n")

    def recent_lines(self, room: _Room, recent: int, out: list[str]) -> None:
        bodies = self.pools.bodies
        rj = room.jid
        for msg_id, t, (_, nick_jid, _), b, s in room.msgs[len(room.msgs) - recent:]:
            head, _ = self._head(rj, copy_escape(xml_attr(nick_jid)), t, s)
            out.append(f"{msg_id}\t{rj}\t{ts_text(t)}\t{head}{bodies[b].xml_esc}{_BODY_END}\n")

    @staticmethod
    def room_line(room: _Room, out: list[str]) -> None:
        out.append(f"{room.jid}\t{room.creator.jid}\t"
                   f"{copy_escape(_SUBJECTS[room.subject])}\t{room.type}\t"
                   f"{copy_escape(room.config)}\t{copy_escape(room.spacket)}\t"
                   f"{room.start}\t{room.next}\n")

    @staticmethod
    def member_lines(room: _Room, out: list[str]) -> None:
        for row in room.members:
            out.append(copy_line(row))

    @staticmethod
    def stay_lines(room: _Room, out: list[str]) -> None:
        rj = room.jid
        for real, start, end in room.stays:
            out.append(f"{real}\t{rj}\t{ts_text(start)}\t"
                       f"{NULL if end is None else ts_text(end)}\n")

    # -- Python values ---------------------------------------------------------------------
    def values(self, room: _Room, recent: int) -> dict[str, list[tuple[Any, ...]]]:
        bodies = self.pools.bodies
        subjects = self.pools.subjects
        rj = room.jid
        archive = []
        tc_messages = []
        for index, (msg_id, t, (real, nick_jid, full), b, s) in enumerate(room.msgs):
            body = bodies[b]
            subj = subjects[s].raw if s >= 0 else None
            head = (f"<message from='{full}' to='{rj}' type='groupchat' id='m{t:x}' "
                    "xml:lang='en'>")
            inner = (f"<subject>{subjects[s].xml}</subject>" if s >= 0 else "") + "<body>"
            packet = f"{head}{inner}{body.xml}{_BODY_END}"
            short_body = body.length <= STRING_LIMIT
            short_packet = len(packet) <= STRING_LIMIT
            archive.append((msg_id, rj, real, nick_jid, ts_value(t), "g", body.length,
                            len(packet), body.raw if short_body else None,
                            packet if short_packet else None,
                            None if short_body else body.raw,
                            None if short_packet else packet, subj))
            if index >= len(room.msgs) - recent:
                delivered = (f"<message from='{xml_attr(nick_jid)}' to='{rj}' type='groupchat' "
                             f"id='m{t:x}' xml:lang='en'>{inner}{body.xml}{_BODY_END}")
                tc_messages.append((msg_id, rj, ts_value(t), delivered))
        return {
            "tc_rooms": [(rj, room.creator.jid, _SUBJECTS[room.subject], room.type, room.config,
                          room.spacket, room.start, room.next)],
            "tc_users": list(room.members),
            "tc_messages": tc_messages,
            "tc_msgarchive": archive,
            "tc_timelog": [(real, rj, ts_value(start), None if end is None else ts_value(end))
                           for real, start, end in room.stays],
        }


def generate_rows(spec: GeneratorSpec = GeneratorSpec(), databases: int = 1,
                  ) -> list[dict[str, list[tuple[Any, ...]]]]:
    """The rows ``generate`` writes, as Python values (per database, table -> rows in COPY
    column order; times as naive datetimes). Meant for small specs: everything is in memory."""
    builder = _Builder(spec, databases)
    renderer = _Renderer(builder.pools)
    result = []
    for db in range(databases):
        tables: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
        for room in builder.rooms(db):
            for name, rows in renderer.values(room, spec.recent_per_room).items():
                tables[name].extend(rows)
        result.append(tables)
    return result


def overlap_of(spec: GeneratorSpec, databases: int) -> list[dict[str, int]]:
    """What ``generate`` reports as overlap, without a database (runs the generator)."""
    builder = _Builder(spec, databases)
    for db in range(databases):
        for _ in builder.rooms(db):
            pass
    return builder.overlap


def copy_blocks(spec: GeneratorSpec = GeneratorSpec(), databases: int = 1,
                ) -> Iterator[tuple[int, str, str]]:
    """What ``generate`` sends, without a server: (database index, table, block of COPY text
    lines) in load order. tc_msgarchive streams first, room by room; the small tables follow."""
    builder = _Builder(spec, databases)
    renderer = _Renderer(builder.pools)
    for db in range(databases):
        for table, block in _blocks(builder, renderer, db):
            yield db, table, block


#: Flush a COPY block when this many lines are waiting.
BLOCK_LINES = 2000


def _blocks(builder: _Builder, renderer: _Renderer, db: int) -> Iterator[tuple[str, str]]:
    recent = builder.spec.recent_per_room
    small: dict[str, list[str]] = {name: [] for name in TABLES if name != "tc_msgarchive"}
    archive: list[str] = []
    for room in builder.rooms(db):
        renderer.room_line(room, small["tc_rooms"])
        renderer.member_lines(room, small["tc_users"])
        renderer.recent_lines(room, min(recent, len(room.msgs)), small["tc_messages"])
        renderer.stay_lines(room, small["tc_timelog"])
        renderer.archive_lines(room, archive)
        if len(archive) >= BLOCK_LINES:
            yield "tc_msgarchive", "".join(archive)
            archive = []
    if archive:
        yield "tc_msgarchive", "".join(archive)
    for name, lines in small.items():
        for i in range(0, len(lines), BLOCK_LINES):
            yield name, "".join(lines[i:i + BLOCK_LINES])


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------


def _connect(ref: DatabaseRef) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(**libpq_params(ref), application_name="tcmerge-generate")
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {ref.label}: {server_reason(exc, ref)}",
                            code="CONNECTION_FAILED") from None


def _copy_statement(table: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS[table]))


def _prepare(cur: psycopg.Cursor[Any], ref: DatabaseRef, create_schema: bool, *,
             check_only: bool = False) -> None:
    """Create the missing TC tables (as IM&P does) or refuse; refuse tables that hold rows."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    for table in tc.ALL_TABLES:
        row = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table.name,)).fetchone()
        exists = bool(row and row[0])
        if not exists:
            if not create_schema:
                raise ConfigError(
                    f"{ref.label}: table {table.name} is missing; run `tcmerge schema upgrade` "
                    "first or generate with create_schema=True")
            if not check_only:
                cur.execute(str(CreateTable(table).compile(dialect=dialect)))
        elif table.name in COLUMNS:
            row = cur.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(
                sql.Identifier(table.name))).fetchone()
            if row and row[0]:
                raise ConfigError(
                    f"{ref.label}: table {table.name} already holds rows; the generator "
                    "fills empty TC tables only")


def _load(ref: DatabaseRef, builder: _Builder, renderer: _Renderer, db: int,
          create_schema: bool) -> dict[str, int]:
    counts = dict.fromkeys(TABLES, 0)
    with _connect(ref) as conn:
        try:
            with conn.transaction(), conn.cursor() as cur:
                _prepare(cur, ref, create_schema)
                current: str | None = None
                with contextlib.ExitStack() as stack:
                    for table, block in _blocks(builder, renderer, db):
                        if table != current:
                            stack.close()
                            copy = stack.enter_context(cur.copy(
                                _copy_statement(table), writer=QueuedLibpqWriter(cur)))
                            current = table
                        copy.write(block)
                        # escaped text holds no raw newline but the line ends
                        counts[table] += block.count("\n")
        except psycopg.Error as exc:
            raise DatabaseError(f"loading generated rows into {ref.label} failed: "
                                f"{server_reason(exc, ref)}") from None
    return counts


def generate(databases: Sequence[DatabaseRef], spec: GeneratorSpec = GeneratorSpec(), *,
             create_schema: bool = True,
             progress: Callable[[int, dict[str, int]], None] | None = None) -> GenerationResult:
    """Database i is node i+1 of the cluster: its rooms live under
    conference-<i+1>-<cluster_id>.<domain>.

    Each database is loaded in one transaction with COPY; the TC tables must be
    absent (``create_schema``: created like IM&P does, without tcmerge's own tables)
    or empty. ``progress(db, counts)`` is called after each database.
    """
    for ref in databases:
        if not adapter_for(ref).supports_copy:  # it loads with COPY
            raise ConfigError(f"{ref.label}: the generator writes PostgreSQL databases only, "
                              f"not {ref.dialect}")
    started = time.perf_counter()
    # refuse what cannot be done before any database is written
    wants_plan = (spec.affiliation_conflicts or spec.bans or spec.diverged_rooms
                  or spec.room_conflicts)
    if len(databases) > 1 and wants_plan:
        overlap_of(spec, len(databases))  # raises ConfigError when the spec cannot be met
    for ref in databases:
        with _connect(ref) as conn:
            try:
                with conn.cursor() as cur:
                    _prepare(cur, ref, create_schema, check_only=True)
            except psycopg.Error as exc:
                raise DatabaseError(f"checking {ref.label} failed: "
                                    f"{server_reason(exc, ref)}") from None
            conn.rollback()
    builder = _Builder(spec, len(databases))
    renderer = _Renderer(builder.pools)
    counts = []
    for db, ref in enumerate(databases):
        counts.append(_load(ref, builder, renderer, db, create_schema))
        if progress is not None:
            progress(db, counts[-1])
    return GenerationResult(counts=counts, overlap=builder.overlap,
                            databases=[ref.label for ref in databases],
                            seconds=time.perf_counter() - started)


__all__ = ["BASE_TIME", "COLUMNS", "OVERLAP_KINDS", "STRING_LIMIT", "TABLES",
           "GenerationResult", "GeneratorSpec", "copy_blocks", "copy_escape", "copy_line",
           "generate", "generate_rows", "overlap_of", "ts_text", "ts_value"]
