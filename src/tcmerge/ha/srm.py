"""The Server Recovery Manager (SRM) of every presence redundancy group, in simulated time.

Pure model: no database. Time is a float of simulated seconds kept by ``SimClock``;
timers are events in an ``EventQueue`` keyed by that time, so a simulated hour
runs in milliseconds and, with the same seed, gives the same timeline.

Rooms are moved through a ``RoomHosting`` object (the database-backed one lives in
``rooms.py``; ``MemoryRooms`` here serves unit tests). Users are modelled here:
when their node fails over or falls back they are signed out and sign in again
after a random wait between the client re-login limits, drawn from the seed.

Inferences beyond the reference (marked I there) are documented where made:
every takeover passes through Taking Over while the backup loads the rooms; a
crashed node shows Unknown until it boots; transient states last
``transition_time`` simulated seconds.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tcmerge.errors import ConfigError
from tcmerge.ha.states import (
    CRITICAL_SERVICES,
    HaReason,
    HaState,
    RequestRefusedError,
    check_transition,
)

R = HaReason
S = HaState

# --------------------------------------------------------------------------- timers


@dataclass(frozen=True)
class SrmTimers:
    """SRM parameters (seconds), defaults from the reference; all configurable."""

    heartbeat_interval: float = 15.0
    heartbeat_timeout: float = 60.0
    init_heartbeat_timeout: float = 120.0
    critical_service_delay: float = 90.0
    automatic_fallback: bool = False
    automatic_fallback_delay: float = 1800.0
    relogin_lower: float = 120.0
    relogin_upper: float = 537.0
    #: (I) how long the transient states Taking Over/Failing Over/Falling Back/Taking Back last.
    transition_time: float = 2.0
    #: (I) how long a rebooting node stays down before its SRM starts again.
    reboot_time: float = 180.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "automatic_fallback":
                if not isinstance(value, bool):
                    raise ConfigError("timer automatic_fallback must be true or false")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"timer {f.name} must be a (finite) number of seconds >= 0")
        if self.heartbeat_interval <= 0:
            raise ConfigError("timer heartbeat_interval must be > 0")
        if self.relogin_upper < self.relogin_lower:
            raise ConfigError("timer relogin_upper must not be below relogin_lower")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SrmTimers:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown timer(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- time


class Clock(Protocol):
    def now(self) -> float: ...


class SimClock:
    """Simulated seconds; only the event loop moves it forward."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"time cannot go back from {self._now} to {when}")
        self._now = when


class EventQueue:
    """Events keyed by simulated time; ties go by priority (lower first), then insertion
    order, so a run is deterministic. Checks use a higher priority: they see everything
    that happened at their time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = itertools.count()

    def push(self, when: float, event: object, *, priority: int = 0) -> None:
        heapq.heappush(self._heap, (when, priority, next(self._seq), event))

    def pop(self) -> tuple[float, object]:
        when, _, _, event = heapq.heappop(self._heap)
        return when, event

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


# --------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline: simulated time, kind, node and what happened."""

    t: float
    kind: str  # state, users, rooms, detect, event, message, join, read, expect, service
    text: str
    node: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"t": self.t, "kind": self.kind, "text": self.text}
        if self.node is not None:
            record["node"] = self.node
        if self.details:
            record["details"] = dict(self.details)
        return record


@dataclass
class MoveRecord:
    """A failover, auto-recovery or fallback: when the fault began, was detected, ended."""

    kind: str  # failover, fallback, auto-recovery
    group: str
    home: str
    backup: str
    reason: str
    fault_at: float
    detected_at: float
    completed_at: float | None = None
    ok: bool | None = None

    @property
    def detection_seconds(self) -> float:
        return self.detected_at - self.fault_at

    @property
    def takeover_seconds(self) -> float | None:
        return None if self.completed_at is None else self.completed_at - self.fault_at

    def as_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["detection_seconds"] = self.detection_seconds
        record["takeover_seconds"] = self.takeover_seconds
        return record


# --------------------------------------------------------------------------- rooms


class RoomHosting(Protocol):
    """Where rooms are loaded: ``load`` returns the number of rooms loaded or None (failed:
    nothing loaded and the node's TC service stopped); ``unload`` releases them."""

    def load(self, node: str, owner: str) -> int | None: ...

    def unload(self, node: str, owner: str) -> int: ...

    def stop(self, node: str) -> None: ...


class MemoryRooms:
    """Room hosting without a database (unit tests): rooms per owner node, counted."""

    def __init__(self, rooms_per_owner: Mapping[str, int] | None = None,
                 fail: Callable[[str, str], bool] | None = None) -> None:
        self.rooms_per_owner = dict(rooms_per_owner or {})
        self.fail = fail
        self.hosts: dict[str, str] = {}  # owner -> node

    def load(self, node: str, owner: str) -> int | None:
        if self.fail is not None and self.fail(node, owner):
            self.stop(node)
            return None
        self.hosts[owner] = node
        return self.rooms_per_owner.get(owner, 1)

    def unload(self, node: str, owner: str) -> int:
        if self.hosts.get(owner) == node:
            del self.hosts[owner]
            return self.rooms_per_owner.get(owner, 1)
        return 0

    def stop(self, node: str) -> None:
        for owner in [o for o, n in self.hosts.items() if n == node]:
            del self.hosts[owner]


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class NodeSpec:
    name: str
    users: tuple[str, ...] = ()
    services: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    high_availability: bool
    nodes: tuple[NodeSpec, ...]


RUNNING, STOPPED, FAILED = "running", "stopped", "failed"


@dataclass
class Node:
    name: str
    group: str
    peer: str | None
    ha: bool
    home_users: tuple[str, ...]
    state: HaState
    reason: HaReason
    services: dict[str, str]
    up: bool = True
    network: bool = True
    database: bool = True
    admin_stopped: bool = False
    down_since: float | None = None  # first moment a critical service / the DB was down
    fault_at: float | None = None  # crash / network loss / reboot
    last_seen_peer: float = 0.0
    peer_lost: bool = False
    init_since: float | None = None
    init_saw_peer: bool = False
    healthy_since: float | None = None
    serves_users: set[str] = field(default_factory=set)  # home nodes whose users it serves
    room_duty: set[str] = field(default_factory=set)  # owners whose rooms it should host
    hosting: set[str] = field(default_factory=set)  # owners whose rooms it hosts now

    @property
    def services_ok(self) -> bool:
        return all(state == RUNNING for state in self.services.values())

    @property
    def healthy(self) -> bool:
        return self.up and self.services_ok and self.database and not self.admin_stopped

    @property
    def tc_running(self) -> bool:
        return self.up and self.services.get("text_conference") == RUNNING

    @property
    def reachable(self) -> bool:
        return self.up and self.network


@dataclass
class User:
    name: str
    home: str
    node: str | None  # signed in to; None = signed out
    relogin_at: float | None = None
    relogin_token: int | None = None


# internal events ------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    node: str
    epoch: int


@dataclass(frozen=True)
class ServiceDownCheck:
    node: str
    since: float


@dataclass(frozen=True)
class TransitionDue:
    group: str
    step: str  # takeover, takeback
    home: str
    backup: str
    token: int


@dataclass(frozen=True)
class AutoFallbackDue:
    node: str
    healthy_since: float


@dataclass(frozen=True)
class ReloginDue:
    user: str
    token: int


@dataclass(frozen=True)
class InitTimeout:
    node: str
    since: float


@dataclass(frozen=True)
class BootDue:
    node: str


SRM_EVENTS = (Heartbeat, ServiceDownCheck, TransitionDue, AutoFallbackDue, ReloginDue,
              InitTimeout, BootDue)


class HaModel:
    """Every group's SRM, the nodes, the users; reacts to events at simulated times."""

    def __init__(self, groups: Iterable[GroupSpec], timers: SrmTimers | None = None, *,
                 clock: SimClock | None = None, queue: EventQueue | None = None,
                 seed: int = 0, rooms: RoomHosting | None = None) -> None:
        self.timers = timers or SrmTimers()
        self.clock = clock or SimClock()
        self.queue = queue or EventQueue()
        self.rng = random.Random(seed)
        self.rooms: RoomHosting = rooms or MemoryRooms()
        self.timeline: list[TimelineEntry] = []
        self.moves: list[MoveRecord] = []
        self.nodes: dict[str, Node] = {}
        self.groups: dict[str, tuple[str, ...]] = {}
        self.users: dict[str, User] = {}
        self._tokens = itertools.count(1)
        self._epochs: dict[str, int] = {}
        self._pending: dict[int, tuple[str, MoveRecord]] = {}  # token -> group, move
        for spec in groups:
            self._add_group(spec)

    # -- set-up ----------------------------------------------------------------------
    def _add_group(self, spec: GroupSpec) -> None:
        names = tuple(n.name for n in spec.nodes)
        ha = spec.high_availability and len(names) == 2
        self.groups[spec.name] = names
        for n in spec.nodes:
            peer = next((m for m in names if m != n.name), None)
            services = {s: RUNNING for s in CRITICAL_SERVICES}
            for service, value in n.services.items():
                services[service] = RUNNING if value == RUNNING else STOPPED
            node = Node(
                name=n.name, group=spec.name, peer=peer, ha=ha, home_users=n.users,
                state=S.NORMAL if ha else S.UNKNOWN,
                reason=R.NORMAL if ha else R.HIGH_AVAILABILITY_NOT_ENABLED,
                services=services, serves_users={n.name}, room_duty={n.name},
            )
            self.nodes[n.name] = node
            for user in n.users:
                if user in self.users:
                    raise ConfigError(f"user {user} is homed on two nodes")
                self.users[user] = User(user, n.name, n.name)

    def start(self) -> None:
        """Load every node's own rooms and start the heartbeats (at time now)."""
        now = self.clock.now()
        for node in self.nodes.values():
            if node.tc_running:
                self._load(node, node.name)
            if not node.services_ok:
                node.down_since = now
                self.queue.push(now + self.timers.critical_service_delay,
                                ServiceDownCheck(node.name, now))
            else:
                node.healthy_since = now
            self._start_heartbeats(node, now)

    def _start_heartbeats(self, node: Node, now: float) -> None:
        epoch = self._epochs.get(node.name, 0) + 1
        self._epochs[node.name] = epoch
        node.last_seen_peer = now
        self.queue.push(now, Heartbeat(node.name, epoch))

    # -- queries ---------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(
                f"unknown node {name!r}; nodes: {', '.join(self.nodes)}") from None

    def user(self, name: str) -> User:
        try:
            return self.users[name]
        except KeyError:
            raise ConfigError(
                f"unknown user {name!r}; users: {', '.join(self.users)}") from None

    def room_host(self, owner: str) -> str | None:
        """The node hosting the rooms of ``owner`` now (None: unavailable)."""
        for node in self.nodes.values():
            if owner in node.hosting and node.tc_running and node.network:
                return node.name
        return None

    def user_host(self, home: str) -> str | None:
        for name in self.groups[self.nodes[home].group]:
            node = self.nodes[name]
            if home in node.serves_users and node.reachable:
                return name
        return None

    def states(self) -> dict[str, tuple[str, str]]:
        return {n.name: (n.state.value, n.reason.value) for n in self.nodes.values()}

    # -- recording -------------------------------------------------------------------
    def log(self, kind: str, text: str, node: str | None = None, **details: Any) -> None:
        self.timeline.append(TimelineEntry(self.now(), kind, text, node, details))

    def _set(self, node: Node, state: HaState, reason: HaReason) -> None:
        check_transition(node.name, node.state, state)
        old = node.state
        node.state, node.reason = state, reason
        self.log("state", f"{old.value} → {state.value} ({reason.value})", node.name,
                 source=old.value, target=state.value, reason=reason.value)

    # -- rooms -----------------------------------------------------------------------
    def _load(self, node: Node, owner: str) -> bool:
        count = None
        if node.tc_running and node.network and node.database:
            count = self.rooms.load(node.name, owner)
        if count is None:
            self.log("rooms", f"could not load the rooms of {owner}: database unreachable or "
                     "TC down; TC service stopped (nothing loaded)", node.name, owner=owner)
            self._tc_stopped(node, reason="failed")
            return False
        node.hosting.add(owner)
        self.log("rooms", f"loaded {count} room(s) of {owner}", node.name, owner=owner,
                 count=count, action="load")
        return True

    def _unload(self, node: Node, owner: str) -> None:
        if owner not in node.hosting:
            return
        node.hosting.discard(owner)
        count = self.rooms.unload(node.name, owner) if node.tc_running else 0
        self.log("rooms", f"unloaded {count} room(s) of {owner}", node.name, owner=owner,
                 count=count, action="unload")

    def _tc_stopped(self, node: Node, *, reason: str) -> None:
        if node.services.get("text_conference") == RUNNING:
            node.services["text_conference"] = FAILED if reason == "failed" else STOPPED
            self._service_went_down(node)
        if node.hosting:
            self.log("rooms", "TC stopped: rooms " + ", ".join(sorted(node.hosting))
                     + " unavailable", node.name)
        node.hosting.clear()
        self.rooms.stop(node.name)

    # -- users -----------------------------------------------------------------------
    def _sign_out(self, users: list[User], why: str) -> None:
        if not users:
            return
        by_node: dict[str | None, list[str]] = {}
        for user in users:
            by_node.setdefault(user.node, []).append(user.name)
            user.node = None
            self._schedule_relogin(user)
        for node, names in by_node.items():
            self.log("users", f"signed out {', '.join(names)} ({why})", node, users=names,
                     action="sign-out")

    def _schedule_relogin(self, user: User) -> None:
        wait = round(self.rng.uniform(self.timers.relogin_lower, self.timers.relogin_upper), 1)
        user.relogin_at = self.now() + wait
        user.relogin_token = next(self._tokens)
        self.queue.push(user.relogin_at, ReloginDue(user.name, user.relogin_token))

    def _users_on(self, node: str, homes: Iterable[str] | None = None) -> list[User]:
        wanted = None if homes is None else set(homes)
        return [u for u in self.users.values()
                if u.node == node and (wanted is None or u.home in wanted)]

    def _on_relogin(self, event: ReloginDue) -> None:
        user = self.users[event.user]
        if user.node is not None or user.relogin_token != event.token:
            return
        target = self.user_host(user.home)
        if target is None:
            self._schedule_relogin(user)
            self.log("users", f"{user.name} cannot sign in yet (no node serves {user.home})",
                     None, users=[user.name], action="retry")
            return
        user.node, user.relogin_at, user.relogin_token = target, None, None
        self.log("users", f"{user.name} signed in", target, users=[user.name],
                 action="sign-in")

    def _rehome_users(self) -> None:
        """Users signed in to a node that no longer serves their home node sign out."""
        stray = [u for u in self.users.values() if u.node is not None
                 and u.home not in self.nodes[u.node].serves_users]
        self._sign_out(stray, "their home node is served elsewhere")

    # -- event dispatch ----------------------------------------------------------------
    def handle(self, event: object) -> None:
        match event:
            case Heartbeat():
                self._on_heartbeat(event)
            case ServiceDownCheck():
                self._on_service_down_check(event)
            case TransitionDue():
                self._on_transition_due(event)
            case AutoFallbackDue():
                self._on_auto_fallback(event)
            case ReloginDue():
                self._on_relogin(event)
            case InitTimeout():
                self._on_init_timeout(event)
            case BootDue():
                self.boot(event.node)
            case _:
                raise TypeError(f"not an SRM event: {event!r}")

    def run_until(self, end: float, on_event: Callable[[float, object], None] | None = None
                  ) -> None:
        """Process queued events up to and including ``end``; heartbeats keep coming."""
        while True:
            when = self.queue.peek_time()
            if when is None or when > end:
                break
            when, event = self.queue.pop()
            self.clock.advance_to(when)
            if on_event is not None and not isinstance(event, SRM_EVENTS):
                on_event(when, event)
            else:
                self.handle(event)
        self.clock.advance_to(max(end, self.now()))

    # -- heartbeats and peer loss ------------------------------------------------------
    def _on_heartbeat(self, event: Heartbeat) -> None:
        node = self.nodes[event.node]
        if self._epochs.get(node.name) != event.epoch or not node.up:
            return
        now = self.now()
        self.queue.push(now + self.timers.heartbeat_interval, Heartbeat(node.name, event.epoch))
        if node.peer is None:
            return
        peer = self.nodes[node.peer]
        if node.network and peer.reachable:
            peer.last_seen_peer = now
            if peer.peer_lost:
                peer.peer_lost = False
                self.log("detect", f"heartbeat from {node.name} received again", peer.name)
            if peer.state is S.INITIALIZING and not peer.init_saw_peer:
                peer.init_saw_peer = True
                self._init_resolve(peer)
        if node.state is S.INITIALIZING:
            return  # InitTimeout covers a silent peer while initialising
        if not node.peer_lost and now - node.last_seen_peer >= self.timers.heartbeat_timeout:
            node.peer_lost = True
            self.log("detect", f"no heartbeat from {peer.name} for "
                     f"{now - node.last_seen_peer:g} s: peer down", node.name, peer=peer.name)
            self._peer_lost(node, peer, R.PEER_DOWN)

    def _peer_lost(self, node: Node, peer: Node, reason: HaReason) -> None:
        if not node.ha:
            self._user_failover_only(peer, node)
            return
        fault_at = peer.fault_at if peer.fault_at is not None else self.now()
        if node.state is S.NORMAL or (node.state is S.FAILED_OVER and node.healthy):
            self._failover(peer, node, reason, mode="peer-lost", fault_at=fault_at)
        elif node.state in (S.FAILED_OVER, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING, S.IDLE):
            self._set(node, S.RUNNING_IN_FAILED_MODE, reason)

    # -- service and node events (called by the scenario driver) -----------------------
    def service_stop(self, name: str, service: str, *, failed: bool = True) -> None:
        node = self.node(name)
        if service not in node.services:
            raise ConfigError(f"unknown critical service {service!r}; "
                              f"use one of {', '.join(CRITICAL_SERVICES)}")
        if node.services[service] != RUNNING:
            return
        node.services[service] = FAILED if failed else STOPPED
        self.log("service", f"{service} stopped", name, service=service)
        if service == "text_conference":
            self._tc_stopped(node, reason="stopped")
        self._service_went_down(node)

    def database_loss(self, name: str) -> None:
        node = self.node(name)
        if not node.database:
            return
        node.database = False
        self.log("service", "database unreachable", name)
        self._service_went_down(node)

    def database_restore(self, name: str) -> None:
        node = self.node(name)
        node.database = True
        self.log("service", "database reachable again", name)
        self._service_came_up(node)

    def _service_went_down(self, node: Node) -> None:
        if node.down_since is None:
            node.down_since = self.now()
            node.healthy_since = None
            self.queue.push(self.now() + self.timers.critical_service_delay,
                            ServiceDownCheck(node.name, node.down_since))
        if node.state is S.FAILED_OVER:
            self._set(node, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING, self._down_reason(node))

    def service_start(self, name: str, service: str) -> None:
        node = self.node(name)
        if service not in node.services:
            raise ConfigError(f"unknown critical service {service!r}; "
                              f"use one of {', '.join(CRITICAL_SERVICES)}")
        if node.services[service] == RUNNING or not node.up:
            return
        node.services[service] = RUNNING
        self.log("service", f"{service} started", name, service=service)
        self._service_came_up(node)

    def _service_came_up(self, node: Node) -> None:
        if node.tc_running and node.state in (S.NORMAL, S.RUNNING_IN_BACKUP_MODE, S.UNKNOWN):
            for owner in sorted(node.room_duty - node.hosting):
                if not self._load(node, owner):
                    return
        if not node.healthy:
            return
        node.down_since = None
        node.healthy_since = self.now()
        if node.state is S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING:
            self._set(node, S.FAILED_OVER, node.reason)
        if node.state is S.FAILED_OVER:
            self._schedule_auto_fallback(node)

    def _down_reason(self, node: Node) -> HaReason:
        return R.CRITICAL_SERVICE_DOWN if not node.services_ok else R.DATABASE_FAILURE

    def _on_service_down_check(self, event: ServiceDownCheck) -> None:
        node = self.nodes[event.node]
        if node.down_since != event.since or not node.up or node.healthy:
            return
        reason = self._down_reason(node)
        self.log("detect", f"critical failure for {self.now() - event.since:g} s: "
                 f"{reason.value}", node.name, reason=reason.value)
        self._critical_failure(node, reason)

    def _critical_failure(self, node: Node, reason: HaReason) -> None:
        peer = self.nodes[node.peer] if node.peer else None
        if not node.ha:
            if peer is not None:
                self._user_failover_only(node, peer)
            return
        assert peer is not None
        if node.state is S.NORMAL:
            if peer.state is S.NORMAL and peer.reachable:
                self._failover(node, peer, reason, mode="auto", fault_at=node.down_since)
            else:
                self._set(node, S.RUNNING_IN_FAILED_MODE, reason)
        elif node.state is S.RUNNING_IN_BACKUP_MODE:
            if peer.state is S.FAILED_OVER and peer.healthy and peer.reachable:
                recover = (R.AUTO_RECOVER_DATABASE_FAILURE if reason is R.DATABASE_FAILURE
                           else R.AUTO_RECOVER_CRITICAL_SERVICE_DOWN)
                self._failover(node, peer, recover, mode="auto", fault_at=node.down_since,
                               kind="auto-recovery")
            else:
                self._set(node, S.RUNNING_IN_FAILED_MODE, reason)
                if peer.state in (S.FAILED_OVER, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING,
                                  S.IDLE):
                    self._set(peer, S.RUNNING_IN_FAILED_MODE, reason)
                self._users_stranded(node)

    def _users_stranded(self, node: Node) -> None:
        """A node in failed mode serves nobody: its users are signed out and wait."""
        served = set(node.serves_users)
        self._sign_out(self._users_on(node.name), "node in Running in Failed Mode")
        node.serves_users -= served

    def _user_failover_only(self, failed: Node, peer: Node) -> None:
        """Without HA: users move to the peer; rooms stay with their (failed) node."""
        if not peer.reachable or failed.name in peer.serves_users:
            return
        failed.serves_users.discard(failed.name)
        peer.serves_users.add(failed.name)
        self.log("users", f"HA not enabled: users of {failed.name} fail over to {peer.name}; "
                 f"its rooms stay unavailable until it recovers", peer.name)
        self._sign_out(self._users_on(failed.name, [failed.name]), f"{failed.name} failed")

    def crash(self, name: str, *, reboot: bool = False) -> None:
        node = self.node(name)
        if not node.up:
            return
        now = self.now()
        node.up, node.fault_at = False, now
        self.log("event", "node rebooting" if reboot else "node down", name)
        if node.hosting:
            self.log("rooms", "rooms " + ", ".join(sorted(node.hosting)) + " unavailable",
                     name)
        node.hosting.clear()
        self.rooms.stop(name)
        if node.ha:
            self._set(node, S.UNKNOWN, R.UNKNOWN)
        self._sign_out(self._users_on(name), f"{name} down")
        if reboot:
            self.queue.push(now + self.timers.reboot_time, BootDue(name))
            peer = self.nodes[node.peer] if node.peer else None
            if peer is not None and peer.reachable and node.network and not peer.peer_lost:
                peer.peer_lost = True
                self.log("detect", f"{name} announced a reboot", peer.name)
                self._peer_lost(peer, node, R.PEER_REBOOT)

    def boot(self, name: str) -> None:
        node = self.node(name)
        if node.up:
            return
        now = self.now()
        node.up, node.admin_stopped = True, False
        node.services = {s: RUNNING for s in node.services}
        node.down_since, node.healthy_since = None, now
        node.fault_at = None
        self.log("event", "node started", name)
        self._initialize(node, R.INITIALIZATION)

    def _initialize(self, node: Node, reason: HaReason) -> None:
        now = self.now()
        if not node.ha:
            if node.tc_running:
                for owner in sorted(node.room_duty - node.hosting):
                    self._load(node, owner)
            self._start_heartbeats(node, now)
            if node.name not in node.serves_users and node.peer:
                peer = self.nodes[node.peer]
                peer.serves_users.discard(node.name)
                node.serves_users.add(node.name)
                self._rehome_users()
            return
        self._set(node, S.INITIALIZING, reason)
        node.init_since, node.init_saw_peer, node.peer_lost = now, False, False
        self._start_heartbeats(node, now)
        self.queue.push(now + self.timers.init_heartbeat_timeout, InitTimeout(node.name, now))

    def network_loss(self, name: str) -> None:
        node = self.node(name)
        if not node.network:
            return
        node.network, node.fault_at = False, self.now()
        self.log("event", "network lost (peer, clients and database unreachable)", name)
        self._sign_out(self._users_on(name), f"{name} unreachable")

    def network_restore(self, name: str) -> None:
        node = self.node(name)
        node.network = True
        node.fault_at = None
        self.log("event", "network restored", name)

    # -- failover, fallback, recover ---------------------------------------------------
    def _failover(self, home: Node, backup: Node, reason: HaReason, *, mode: str,
                  fault_at: float | None, kind: str = "failover") -> None:
        now = self.now()
        if mode == "admin":
            self._set(home, S.FAILING_OVER, reason)
            home.admin_stopped = True
            for service in sorted(home.services):
                if home.services[service] == RUNNING:
                    home.services[service] = STOPPED
            self.log("service", "critical services stopped by the manual failover", home.name)
            if home.hosting:
                for owner in sorted(home.hosting):
                    self._unload(home, owner)
            self._tc_stopped(home, reason="stopped")
        elif mode == "auto":
            self._set(home, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING, reason)
            for owner in sorted(home.hosting):
                self._unload(home, owner)
        self._set(backup, S.TAKING_OVER, reason)
        move = MoveRecord(kind, home.group, home.name, backup.name, reason.value,
                          fault_at if fault_at is not None else now, now)
        self.moves.append(move)
        if backup.network:  # an isolated node believes it takes over, but moves nobody
            owners = set(home.serves_users)
            home.serves_users.clear()
            backup.serves_users |= owners
            self._sign_out(self._users_on(home.name), f"failover of {home.name}")
        token = next(self._tokens)
        self._pending[token] = (home.group, move)
        self.queue.push(now + self.timers.transition_time,
                        TransitionDue(home.group, "takeover", home.name, backup.name, token))

    def _on_transition_due(self, event: TransitionDue) -> None:
        pending = self._pending.pop(event.token, None)
        if pending is None:
            return
        move = pending[1]
        home, backup = self.nodes[event.home], self.nodes[event.backup]
        if event.step == "takeover":
            self._finish_takeover(home, backup, move)
        else:
            self._finish_takeback(home, backup, move)

    def _finish_takeover(self, home: Node, backup: Node, move: MoveRecord | None) -> None:
        reason = backup.reason
        if home.state is S.FAILING_OVER:
            self._set(home, S.IDLE, reason)
        if backup.state is not S.TAKING_OVER:
            return
        owners = sorted(home.room_duty | backup.room_duty)
        ok = backup.up
        for owner in owners:
            if owner in backup.hosting:
                continue
            if not self._load(backup, owner):
                ok = False
                break
        if ok:
            backup.room_duty |= home.room_duty
            home.room_duty.clear()
            self._set(backup, S.RUNNING_IN_BACKUP_MODE, reason)
        else:
            for owner in sorted(backup.hosting):
                self._unload(backup, owner)
            self._set(backup, S.RUNNING_IN_FAILED_MODE, R.TAKE_OVER_USERS_FAILED)
            if home.up and home.state in (S.IDLE, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING,
                                          S.FAILED_OVER):
                self._set(home, S.RUNNING_IN_FAILED_MODE, R.TAKE_OVER_USERS_FAILED)
            self._users_stranded(backup)
        if move is not None:
            move.completed_at, move.ok = self.now(), ok

    def failover(self, name: str) -> None:
        """Admin: manual failover of node ``name`` to its peer (only from Normal)."""
        node = self.node(name)
        peer = self.nodes[node.peer] if node.peer else None
        if not node.ha or peer is None:
            raise RequestRefusedError(f"{name}: high availability is not enabled on its group")
        if node.state is not S.NORMAL or peer.state is not S.NORMAL:
            raise RequestRefusedError(
                f"manual failover needs both nodes in Normal; {name} is {node.state.value}, "
                f"{peer.name} is {peer.state.value}")
        self.log("event", f"admin: failover {name}", name)
        self._failover(node, peer, R.ON_ADMIN_REQUEST, mode="admin", fault_at=self.now())

    def fallback(self, name: str, *, reason: HaReason = R.ON_ADMIN_REQUEST) -> None:
        """Admin (or automatic): node ``name`` takes its users and rooms back from its peer."""
        node = self.node(name)
        peer = self.nodes[node.peer] if node.peer else None
        if not node.ha or peer is None:
            raise RequestRefusedError(f"{name}: high availability is not enabled on its group")
        if node.state not in (S.FAILED_OVER, S.IDLE) or \
                peer.state is not S.RUNNING_IN_BACKUP_MODE:
            raise RequestRefusedError(
                f"fallback needs {name} in Failed Over or Idle and {peer.name} in Running in "
                f"Backup Mode; they are {node.state.value} and {peer.state.value}")
        if reason is R.ON_ADMIN_REQUEST:
            self.log("event", f"admin: fallback {name}", name)
        now = self.now()
        if node.admin_stopped:
            node.admin_stopped = False
            for service in sorted(node.services):
                if node.services[service] == STOPPED:
                    node.services[service] = RUNNING
            self.log("service", "critical services started", name)
        self._set(node, S.TAKING_BACK, reason)
        self._set(peer, S.FALLING_BACK, reason)
        move = MoveRecord("fallback", node.group, node.name, peer.name, reason.value, now, now)
        self.moves.append(move)
        self._sign_out(self._users_on(peer.name, [node.name]), f"fallback to {name}")
        token = next(self._tokens)
        self._pending[token] = (node.group, move)
        self.queue.push(now + self.timers.transition_time,
                        TransitionDue(node.group, "takeback", node.name, peer.name, token))

    def _finish_takeback(self, home: Node, backup: Node, move: MoveRecord | None) -> None:
        reason = home.reason
        if home.state is not S.TAKING_BACK or backup.state is not S.FALLING_BACK:
            if move is not None:  # a node went down during the transition
                move.completed_at, move.ok = self.now(), False
            return
        owners = sorted({home.name})
        for owner in owners:
            self._unload(backup, owner)
        backup.room_duty -= set(owners)
        ok = home.healthy
        if not ok:
            self.log("service", "critical services failed to start", home.name)
            failure = R.START_OF_CRITICAL_SERVICES_FAILED
        else:
            failure = R.TAKE_BACK_USERS_FAILED
            for owner in owners:
                if not self._load(home, owner):
                    ok = False
                    break
        if ok:
            home.room_duty |= set(owners)
            backup.serves_users.discard(home.name)
            home.serves_users.add(home.name)
            self._set(backup, S.NORMAL, reason)
            self._set(home, S.NORMAL, reason)
        else:
            self._set(home, S.RUNNING_IN_FAILED_MODE, failure)
            self._set(backup, S.RUNNING_IN_FAILED_MODE, failure)
            home.room_duty |= set(owners)
        if move is not None:
            move.completed_at, move.ok = self.now(), ok

    def _schedule_auto_fallback(self, node: Node) -> None:
        if self.timers.automatic_fallback and node.healthy_since is not None:
            self.queue.push(node.healthy_since + self.timers.automatic_fallback_delay,
                            AutoFallbackDue(node.name, node.healthy_since))

    def _on_auto_fallback(self, event: AutoFallbackDue) -> None:
        node = self.nodes[event.node]
        peer = self.nodes[node.peer] if node.peer else None
        if (node.state is S.FAILED_OVER and node.healthy_since == event.healthy_since
                and peer is not None and peer.state is S.RUNNING_IN_BACKUP_MODE):
            self.log("detect", f"{node.name} healthy for "
                     f"{self.timers.automatic_fallback_delay:g} s: automatic fallback", node.name)
            self.fallback(node.name, reason=R.AUTOMATIC_FALLBACK)

    def recover(self, group: str) -> None:
        """Admin: restart the SRM on both nodes of a group in Running in Failed Mode."""
        if group not in self.groups:
            raise ConfigError(f"unknown group {group!r}; groups: {', '.join(self.groups)}")
        members = [self.nodes[n] for n in self.groups[group]]
        if not any(n.state is S.RUNNING_IN_FAILED_MODE for n in members):
            raise RequestRefusedError(f"recover needs a node of {group} in Running in Failed "
                                      "Mode; states: " + ", ".join(
                                          f"{n.name} {n.state.value}" for n in members))
        self.log("event", f"admin: recover {group}", None)
        for token in [t for t, (g, _) in self._pending.items() if g == group]:
            del self._pending[token]
        for node in members:
            if not node.up or node.state is not S.RUNNING_IN_FAILED_MODE:
                continue
            for owner in sorted(node.hosting):
                self._unload(node, owner)
            node.serves_users, node.room_duty = set(), set()
            self._initialize(node, R.INITIALIZATION)

    # -- initialisation ----------------------------------------------------------------
    def _init_resolve(self, node: Node) -> None:
        peer = self.nodes[node.peer] if node.peer else None
        assert peer is not None
        if peer.state is S.INITIALIZING:
            if peer.init_saw_peer:
                self._joint_resolve(node, peer)
            return
        if peer.state in (S.RUNNING_IN_BACKUP_MODE, S.TAKING_OVER) and \
                node.name in peer.serves_users:
            state = (S.FAILED_OVER if node.healthy
                     else S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING)
            self._set(node, state, peer.reason)
            if state is S.FAILED_OVER:
                self._schedule_auto_fallback(node)
            return
        if peer.state is S.NORMAL:
            if node.healthy:
                self._become_normal(node)
            else:
                node.serves_users.add(node.name)
                node.room_duty.add(node.name)
                self._failover(node, peer, self._down_reason(node), mode="auto",
                               fault_at=node.down_since)
            return
        if node.healthy:
            self._failover(peer, node, R.PEER_DOWN_DURING_INITIALIZATION, mode="peer-lost",
                           fault_at=node.init_since)
        else:
            self._set(node, S.RUNNING_IN_FAILED_MODE, self._down_reason(node))

    def _become_normal(self, node: Node) -> None:
        self._set(node, S.NORMAL, R.NORMAL)
        node.serves_users.add(node.name)
        node.room_duty.add(node.name)
        for owner in sorted(node.room_duty - node.hosting):
            self._load(node, owner)
        self._rehome_users()

    def _joint_resolve(self, a: Node, b: Node) -> None:
        if a.healthy and b.healthy:
            for node in (a, b):
                self._become_normal(node)
        elif a.healthy or b.healthy:
            good, bad = (a, b) if a.healthy else (b, a)
            bad.serves_users.add(bad.name)
            bad.room_duty.add(bad.name)
            self._failover(bad, good, self._down_reason(bad), mode="auto",
                           fault_at=bad.down_since)
        else:
            for node in (a, b):
                self._set(node, S.RUNNING_IN_FAILED_MODE, self._down_reason(node))

    def _on_init_timeout(self, event: InitTimeout) -> None:
        node = self.nodes[event.node]
        if node.state is not S.INITIALIZING or node.init_since != event.since \
                or node.init_saw_peer:
            return
        peer = self.nodes[node.peer] if node.peer else None
        assert peer is not None
        self.log("detect", f"no heartbeat from {peer.name} within "
                 f"{self.timers.init_heartbeat_timeout:g} s of initialising", node.name)
        if node.healthy:
            node.serves_users.add(node.name)
            node.room_duty.add(node.name)
            if not any(peer.name in n.serves_users for n in self.nodes.values()):
                peer.serves_users.add(peer.name)
            if not any(peer.name in n.room_duty for n in self.nodes.values()):
                peer.room_duty.add(peer.name)
            self._failover(peer, node, R.PEER_DOWN_DURING_INITIALIZATION, mode="peer-lost",
                           fault_at=event.since)
        else:
            self._set(node, S.RUNNING_IN_FAILED_MODE, R.PEER_DOWN_DURING_INITIALIZATION)
