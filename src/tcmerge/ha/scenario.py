"""Scenario files (TOML): a topology, rooms, and timed events with expectations.

::

    [scenario]
    name = "failover"
    description = "TC fails on 1A; 1B takes over; manual fallback"
    seed = 7                 # client re-login waits are drawn from it
    until = 2400             # simulated seconds to run (default: last event + 60)
    start = "2026-01-05T09:00:00"   # date of t = 0 (message timestamps)
    topology = "seed-topology.toml" # relative to this file, or an inline [topology] table

    [timers]                 # SrmTimers overrides, e.g. automatic_fallback = true

    [[rooms]]
    name = "ops"             # ops@<generated alias of node 1A>
    node = "1A"              # or alias = "chat.example.com"
    creator = "andy"

    [[events]]
    at = 100
    do = "service_stop"      # see EVENT_KINDS
    node = "1A"
    service = "text_conference"

    [[events]]
    at = 190
    do = "expect"
    states = { "1A" = "Failed Over with Critical Services not Running" }
    reasons = { "1A" = "Critical Service Down" }
    room_host = { ops = "1B" }            # "none": unavailable
    users = { andy = "signed out" }       # or the node signed in to

Events are listed in time order, none after ``until``; at equal times actions run in
file order and ``expect`` checks after them (they see everything that happened then).
Action events (``join``, ``post``, ``read``, ``failover``, ``fallback``, ``recover``)
take ``expect = "ok"`` (default) or ``"rejected"``; ``read`` takes ``last``
(messages), ``includes`` (bodies that must appear in this order) and
``all_acknowledged = true`` (every acknowledged post of the room so far, in order).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tcmerge.errors import ConfigError
from tcmerge.ha.srm import SrmTimers
from tcmerge.ha.states import CRITICAL_SERVICES, HaReason, HaState, critical_service
from tcmerge.topology import Topology, check_topology, load_topology, parse_topology

NODE_EVENTS = ("crash", "reboot", "boot", "network_loss", "network_restore", "database_loss",
               "database_restore", "failover", "fallback")
SERVICE_EVENTS = ("service_stop", "service_start")
USER_EVENTS = ("join", "post", "read")
EVENT_KINDS = (*NODE_EVENTS, *SERVICE_EVENTS, *USER_EVENTS, "recover", "expect")
OUTCOMES = ("ok", "rejected")
SCENARIO_KEYS = frozenset({"name", "description", "seed", "until", "start", "topology"})
ROOM_KEYS = frozenset({"name", "node", "alias", "creator", "subject"})
SIGNED_OUT = "signed out"
NO_HOST = "none"


@dataclass(frozen=True)
class RoomDef:
    name: str
    alias: str
    owner: str  # node whose alias hosts it
    creator: str
    subject: str

    @property
    def jid(self) -> str:
        return f"{self.name}@{self.alias}"


@dataclass(frozen=True)
class Event:
    at: float
    do: str
    index: int
    node: str | None = None
    group: str | None = None
    service: str | None = None
    user: str | None = None
    room: str | None = None
    body: str | None = None
    last: int = 100
    expect: str = "ok"
    includes: tuple[str, ...] = ()
    all_acknowledged: bool = False
    states: Mapping[str, HaState] = field(default_factory=dict)
    reasons: Mapping[str, HaReason] = field(default_factory=dict)
    room_host: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [self.do]
        for key in ("node", "group", "service", "user", "room"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={value}")
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    until: float
    start: dt.datetime
    timers: SrmTimers
    topology: Topology
    rooms: tuple[RoomDef, ...]
    events: tuple[Event, ...]
    path: Path | None = None

    def room(self, ref: str) -> RoomDef:
        for room in self.rooms:
            if ref in (room.name, room.jid):
                return room
        raise ConfigError(f"unknown room {ref!r}; the scenario declares "
                          f"{', '.join(r.name for r in self.rooms) or 'none'}")


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"scenario {where}: {message}", code="SCENARIO_INVALID")


def _number(value: Any, where: str, key: str) -> float:
    # nan and inf too: nan broke the clock (exit 3), inf ran the simulation forever
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise _fail(where, f"{key} must be a (finite) number of seconds >= 0")
    return float(value)


def _event(index: int, raw: Any, topology: Topology, rooms: dict[str, RoomDef]) -> Event:
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a table")
    do = raw.get("do")
    if do not in EVENT_KINDS:
        raise _fail(where, f"do must be one of {', '.join(EVENT_KINDS)}")
    at = _number(raw.get("at"), where, "at")
    allowed = {"at", "do", "note"}
    kw: dict[str, Any] = {}

    def node_key(key: str = "node") -> str:
        name = raw.get(key)
        if name not in topology.nodes:
            raise _fail(where, f"{key} must name a node of the topology "
                        f"({', '.join(topology.nodes)})")
        return str(name)

    def room_key(name: Any) -> str:
        if not isinstance(name, str):
            raise _fail(where, "room must be a room name")
        for room in rooms.values():
            if name in (room.name, room.jid):
                return room.name
        raise _fail(where, f"unknown room {name!r}")

    users = {u for n in topology.nodes.values() for u in n.users}
    if do in NODE_EVENTS:
        allowed |= {"node", "expect"}
        kw["node"] = node_key()
    elif do in SERVICE_EVENTS:
        allowed |= {"node", "service"}
        kw["node"] = node_key()
        service = critical_service(raw.get("service"))
        if service is None:
            raise _fail(where, f"service must be one of {', '.join(CRITICAL_SERVICES)}")
        kw["service"] = service
    elif do == "recover":
        allowed |= {"group", "expect"}
        if raw.get("group") not in topology.groups:
            raise _fail(where, f"group must be one of {', '.join(topology.groups)}")
        kw["group"] = raw["group"]
    elif do in USER_EVENTS:
        allowed |= {"user", "room", "expect", "body", "last", "includes", "all_acknowledged"}
        if raw.get("user") not in users:
            raise _fail(where, f"user must be a homed user ({', '.join(sorted(users))})")
        kw["user"] = raw["user"]
        kw["room"] = room_key(raw.get("room"))
        if "body" in raw:
            if do != "post" or not isinstance(raw["body"], str):
                raise _fail(where, "body is a string, for post")
            kw["body"] = raw["body"]
        if "last" in raw:
            last = raw["last"]
            if isinstance(last, bool) or not isinstance(last, int) or last < 1:
                raise _fail(where, "last must be a positive integer")
            kw["last"] = last
        if "includes" in raw:
            inc = raw["includes"]
            if not isinstance(inc, list) or not all(isinstance(b, str) for b in inc):
                raise _fail(where, "includes must be a list of message bodies")
            kw["includes"] = tuple(inc)
        if "all_acknowledged" in raw:
            if not isinstance(raw["all_acknowledged"], bool):
                raise _fail(where, "all_acknowledged must be true or false")
            kw["all_acknowledged"] = raw["all_acknowledged"]
    else:  # expect
        allowed |= {"states", "reasons", "room_host", "users"}
        for key in ("states", "reasons", "room_host", "users"):
            value = raw.get(key, {})
            if not isinstance(value, dict):
                raise _fail(where, f"{key} must be a table")
        try:
            kw["states"] = {node_key_of(n, topology, where): HaState.parse(str(s))
                            for n, s in raw.get("states", {}).items()}
            kw["reasons"] = {node_key_of(n, topology, where): HaReason.parse(str(s))
                             for n, s in raw.get("reasons", {}).items()}
        except ConfigError as exc:
            raise _fail(where, exc.message) from None
        hosts: dict[str, str] = {}
        for room, host in raw.get("room_host", {}).items():
            if host != NO_HOST:
                node_key_of(host, topology, where)
            hosts[room_key(room)] = str(host)
        kw["room_host"] = hosts
        placed: dict[str, str] = {}
        for user, node in raw.get("users", {}).items():
            if user not in users:
                raise _fail(where, f"unknown user {user!r}")
            if node != SIGNED_OUT:
                node_key_of(node, topology, where)
            placed[user] = str(node)
        kw["users"] = placed
    if "expect" in raw and do != "expect":
        if raw["expect"] not in OUTCOMES:
            raise _fail(where, f"expect must be {' or '.join(OUTCOMES)}")
        kw["expect"] = raw["expect"]
    extra = sorted(set(raw) - allowed)
    if extra:
        raise _fail(where, f"unknown key(s) for {do}: {', '.join(extra)}")
    return Event(at=at, do=do, index=index, **kw)


def node_key_of(name: Any, topology: Topology, where: str) -> str:
    if name not in topology.nodes:
        raise _fail(where, f"unknown node {name!r}")
    return str(name)


def parse_scenario(data: Mapping[str, Any], path: Path | None = None) -> Scenario:
    head = data.get("scenario", {})
    if not isinstance(head, dict):
        raise _fail("[scenario]", "must be a table")
    extra = sorted(set(data) - {"scenario", "timers", "topology", "rooms", "events"})
    if extra:
        raise _fail("file", f"unknown table(s) {', '.join(extra)}")
    extra = sorted(set(head) - SCENARIO_KEYS)
    if extra:
        raise _fail("[scenario]", f"unknown key(s) {', '.join(extra)}; allowed: "
                    + ", ".join(sorted(SCENARIO_KEYS)))
    name = str(head.get("name") or (path.stem if path else "scenario"))
    seed = head.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail("[scenario]", "seed must be an integer")
    start_raw = head.get("start", "2026-01-05T09:00:00")
    if isinstance(start_raw, dt.datetime):
        start = start_raw.replace(tzinfo=None)
    else:
        try:
            start = dt.datetime.fromisoformat(str(start_raw)).replace(tzinfo=None)
        except ValueError:
            raise _fail("[scenario]", "start must be a date-time") from None
    timers_raw = data.get("timers", {})
    if not isinstance(timers_raw, dict):
        raise _fail("[timers]", "must be a table")
    try:
        timers = SrmTimers.from_mapping(timers_raw)
    except ConfigError as exc:
        raise _fail("[timers]", exc.message) from None

    topo_raw = data.get("topology", head.get("topology"))
    if isinstance(topo_raw, str):
        base = path.parent if path is not None else Path.cwd()
        topology = load_topology(base / topo_raw)
    elif isinstance(topo_raw, dict):
        topology = parse_topology(topo_raw, path)
    else:
        raise _fail("file", "give the topology inline ([topology]) or as a file name")
    # the simulation trusts the HA rules (a backup loads the failed node's rooms from
    # the one database they share): a topology that breaks them is not simulated
    broken = [f for f in check_topology(topology).findings if f.blocks()]
    if broken:
        raise _fail("topology", "breaks the HA rules (see tcmerge topology check): " + "; ".join(
            f"{f.code}: {f.message}" for f in broken))

    rooms: dict[str, RoomDef] = {}
    for i, raw in enumerate(data.get("rooms", [])):
        where = f"rooms[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise _fail(where, "must be a table with a name")
        extra = sorted(set(raw) - ROOM_KEYS)
        if extra:
            raise _fail(where, f"unknown key(s) {', '.join(extra)}; allowed: "
                        + ", ".join(sorted(ROOM_KEYS)))
        if raw["name"] in rooms:
            raise _fail(where, f"room {raw['name']!r} is declared twice")
        if "alias" in raw:
            alias = str(raw["alias"])
            owner = topology.node_of_alias(alias)
            if owner is None:
                raise _fail(where, f"alias {alias} belongs to no node of the topology")
        else:
            owner = node_key_of(raw.get("node"), topology, where)
            alias = topology.generated_alias(owner)
        creator = str(raw.get("creator", "admin"))
        rooms[raw["name"]] = RoomDef(raw["name"], alias, owner, topology.user_jid(creator),
                                     str(raw.get("subject", raw["name"])))
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list):
        raise _fail("events", "must be an array of tables ([[events]])")
    events = tuple(_event(i, raw, topology, rooms) for i, raw in enumerate(raw_events))
    # a timeline, read top to bottom: an entry earlier than the one above it is a typo
    # (at = 10 for 100) that reordering would hide
    for before, event in itertools.pairwise(events):
        if event.at < before.at:
            raise _fail(f"events[{event.index}]", f"at = {event.at:g} comes before "
                        f"events[{before.index}] (at = {before.at:g}); list the events in "
                        "time order")
    until_raw = head.get("until")
    until = _number(until_raw, "[scenario]", "until") if until_raw is not None else (
        (events[-1].at if events else 0.0) + 60.0)
    late = [e for e in events if e.at > until]
    if late:
        # such an event never ran, and an expectation that never ran passed
        raise _fail(f"events[{late[0].index}]", f"at = {late[0].at:g} is after until = "
                    f"{until:g}: it would never run")
    return Scenario(name, str(head.get("description", "")), seed, until, start, timers,
                    topology, tuple(rooms.values()), events, path)


def load_scenario(path: str | Path) -> Scenario:
    """A scenario from a file path, or the name of a scenario shipped with tcmerge."""
    file = Path(path)
    if not file.exists():
        shipped = shipped_scenarios()
        stem = file.name.removesuffix(".toml")
        if stem in shipped:
            file = shipped[stem]
        else:
            raise ConfigError(f"scenario {path} does not exist; shipped scenarios: "
                              + ", ".join(sorted(shipped)), code="SCENARIO_INVALID")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(str(file), f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise _fail(str(file), f"cannot be read: {exc.strerror}") from None
    return parse_scenario(data, file)


def scenarios_dir() -> Path:
    return Path(str(resources.files("tcmerge.ha"))) / "scenarios"


def shipped_scenarios() -> dict[str, Path]:
    """The scenario files shipped inside the package, by name."""
    folder = scenarios_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml")) if not p.stem.endswith("topology")}
