"""Run a scenario: the SRM model in simulated time, the room service on a real database.

``Simulation(scenario, engine).run()`` returns a ``SimulationResult``: the
timeline (states and reasons, users and rooms moved, messages), every
expectation with its outcome, the failovers/fallbacks with detection and
takeover times in simulated seconds, and the check that no acknowledged post
was lost (each acknowledged post in tc_msgarchive exactly once, in order).
``run_scenario`` also provides the database: a URL the user gives, or an
embedded PostgreSQL from ``tcmerge.providers`` that is removed afterwards.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from tcmerge.db import ROOM_SERVICE_APPLICATION, create_engine
from tcmerge.dburl import DatabaseRef
from tcmerge.errors import ConfigError, TcmergeError, UnsupportedDatabaseError
from tcmerge.ha.rooms import (
    Ack,
    LossReport,
    RoomService,
    create_rooms,
    ensure_lease_table,
    highest_archived_ids,
    verify_acknowledged,
)
from tcmerge.ha.scenario import NO_HOST, SIGNED_OUT, Event, RoomDef, Scenario
from tcmerge.ha.srm import (
    GroupSpec,
    HaModel,
    MoveRecord,
    NodeSpec,
    SimClock,
    TimelineEntry,
)
from tcmerge.ha.states import CRITICAL_SERVICES, RequestRefusedError
from tcmerge.results import Finding, error, info
from tcmerge.schema.tc import tc_rooms


@dataclass(frozen=True)
class LoadTiming:
    """Real time the room service took to load rooms (not part of the timeline)."""

    node: str
    owner: str
    rooms: int
    seconds: float


class DbRooms:
    """``RoomHosting`` over one ``RoomService`` per node, sharing one engine."""

    def __init__(self, engine: sa.Engine, scenario: Scenario) -> None:
        topo = scenario.topology
        self.services = {name: RoomService(name, engine) for name in topo.nodes}
        self.aliases = {name: topo.aliases(name) for name in topo.nodes}
        self.timings: list[LoadTiming] = []
        self.errors: list[str] = []

    def load(self, node: str, owner: str) -> int | None:
        service = self.services[node]
        service.start()  # the SRM only asks when the node's TC runs
        started = time.perf_counter()
        try:
            count = service.load(self.aliases[owner])
        except TcmergeError as exc:
            self.errors.append(exc.message)
            return None
        self.timings.append(LoadTiming(node, owner, count, time.perf_counter() - started))
        return count

    def unload(self, node: str, owner: str) -> int:
        try:
            return self.services[node].unload(self.aliases[owner])
        except TcmergeError as exc:  # leases stay; the next holder fences them
            self.errors.append(exc.message)
            return 0

    def stop(self, node: str) -> None:
        self.services[node].stop()


@dataclass(frozen=True)
class Check:
    """One expectation of the scenario and what happened."""

    t: float
    what: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "what": self.what, "expected": self.expected,
                "actual": self.actual, "ok": self.ok}


@dataclass(frozen=True)
class _Scheduled:
    event: Event


@dataclass
class SimulationResult:
    scenario: str
    description: str
    seed: int
    until: float
    database: str
    timeline: list[TimelineEntry]
    checks: list[Check]
    moves: list[MoveRecord]
    losses: LossReport
    final: dict[str, tuple[str, str]]
    load_timings: list[LoadTiming] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    #: database errors the room services met (a takeover that failed says why here)
    database_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.losses.ok

    @property
    def findings(self) -> list[Finding]:
        found = [error("HA_EXPECTATION_FAILED",
                       f"t={c.t:g}s {c.what}: expected {c.expected}, got {c.actual}")
                 for c in self.checks if not c.ok]
        if not self.losses.ok:
            found.append(error("HA_MESSAGE_LOST",
                               f"{self.losses.lost} acknowledged message(s) lost, "
                               f"{self.losses.duplicated} duplicated, "
                               f"{self.losses.out_of_order} out of order",
                               details={"messages": list(self.losses.lost_details)}))
        found.extend(info("HA_DATABASE_ERROR", message) for message in self.database_errors)
        return found

    def comparable(self) -> dict[str, Any]:
        """Everything that must be equal for equal seeds (no real times, no URLs)."""
        return {
            "timeline": [e.as_dict() for e in self.timeline],
            "checks": [c.as_dict() for c in self.checks],
            "moves": [m.as_dict() for m in self.moves],
            "final": self.final,
            "losses": self.losses.as_dict(),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.as_dict() for f in self.findings],
            "scenario": self.scenario,
            "description": self.description,
            "seed": self.seed,
            "until": self.until,
            "database": self.database,
            **self.comparable(),
            "final": {n: {"state": s, "reason": r} for n, (s, r) in self.final.items()},
            "load_timings": [vars(t) for t in self.load_timings],
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


def _groups(scenario: Scenario) -> list[GroupSpec]:
    topo = scenario.topology
    groups = []
    for group in topo.groups.values():
        nodes = []
        for name in group.nodes:
            spec = topo.nodes[name]
            services = {k: v for k, v in spec.services.items() if k in CRITICAL_SERVICES}
            nodes.append(NodeSpec(name, spec.users, services))
        groups.append(GroupSpec(group.name, group.high_availability, tuple(nodes)))
    return groups


class Simulation:
    """One run of a scenario against an engine whose database has the TC schema."""

    def __init__(self, scenario: Scenario, engine: sa.Engine, *, seed: int | None = None,
                 database: str = "") -> None:
        self.scenario = scenario
        self.engine = engine
        self.seed = scenario.seed if seed is None else seed
        self.database = database
        self.rooms = DbRooms(engine, scenario)
        self.model = HaModel(_groups(scenario), scenario.timers, clock=SimClock(),
                             seed=self.seed, rooms=self.rooms)
        self.acks: list[Ack] = []
        self.checks: list[Check] = []

    # -- helpers -------------------------------------------------------------------------
    def _at(self) -> dt.datetime:
        return self.scenario.start + dt.timedelta(seconds=self.model.now())

    def _check(self, what: str, expected: str, actual: str) -> None:
        check = Check(self.model.now(), what, expected, actual)
        self.checks.append(check)
        self.model.log("expect", f"{'ok' if check.ok else 'FAILED'}: {what}: expected "
                       f"{expected}, got {actual}", None, ok=check.ok)

    def _route(self, user_name: str, room: RoomDef) -> RoomService:
        user = self.model.user(user_name)
        if user.node is None:
            raise _Rejected(f"{user_name} is signed out")
        if not self.model.nodes[user.node].reachable:
            raise _Rejected(f"{user_name}'s node {user.node} is unreachable")
        host = self.model.room_host(room.owner)
        if host is None:
            raise _Rejected(f"{room.name} is unavailable (no TC service hosts the rooms "
                            f"of {room.owner})")
        return self.rooms.services[host]

    # -- events --------------------------------------------------------------------------
    def _apply(self, when: float, scheduled: object) -> None:
        assert isinstance(scheduled, _Scheduled)
        ev = scheduled.event
        m = self.model
        match ev.do:
            case "service_stop":
                m.service_stop(_s(ev.node), _s(ev.service))
            case "service_start":
                m.service_start(_s(ev.node), _s(ev.service))
            case "crash":
                m.crash(_s(ev.node))
            case "reboot":
                m.crash(_s(ev.node), reboot=True)
            case "boot":
                m.boot(_s(ev.node))
            case "network_loss":
                m.network_loss(_s(ev.node))
            case "network_restore":
                m.network_restore(_s(ev.node))
            case "database_loss":
                m.database_loss(_s(ev.node))
            case "database_restore":
                m.database_restore(_s(ev.node))
            case "failover" | "fallback" | "recover":
                self._admin(ev)
            case "join" | "post" | "read":
                self._user_action(ev)
            case "expect":
                self._expect(ev)

    def _admin(self, ev: Event) -> None:
        try:
            if ev.do == "failover":
                self.model.failover(_s(ev.node))
            elif ev.do == "fallback":
                self.model.fallback(_s(ev.node))
            else:
                self.model.recover(_s(ev.group))
            outcome = "ok"
        except RequestRefusedError as exc:
            self.model.log("event", f"admin {ev.do} refused: {exc.message}", ev.node)
            outcome = "rejected"
        self._check(ev.describe(), ev.expect, outcome)

    def _user_action(self, ev: Event) -> None:
        room = self.scenario.room(_s(ev.room))
        user = _s(ev.user)
        jid = self.scenario.topology.user_jid(user)
        outcome = "ok"
        try:
            service = self._route(user, room)
            if ev.do == "join":
                history = service.join(room.jid, jid, self._at())
                self.model.log("join", f"{user} joined {room.name} ({len(history)} message(s) "
                               "of history shown)", service.node, user=user, room=room.jid)
            elif ev.do == "post":
                body = ev.body if ev.body is not None else f"{user} message {ev.index}"
                result = service.post(room.jid, jid, user, body, self._at())
                self.acks.append(Ack(room.jid, result.msg_id, jid, body))
                self.model.log("message", f"{user} → {room.name} #{result.msg_id}: {body}",
                               service.node, user=user, room=room.jid, msg_id=result.msg_id)
            else:
                self._read(ev, service, room, user)
        except (_Rejected, TcmergeError) as exc:
            outcome = "rejected"
            reason = exc.message if isinstance(exc, TcmergeError) else str(exc)
            self.model.log("message" if ev.do == "post" else ev.do,
                           f"{user} {ev.do} {room.name} rejected: {reason}", None,
                           user=user, room=room.jid, rejected=True)
        self._check(ev.describe(), ev.expect, outcome)

    def _read(self, ev: Event, service: RoomService, room: RoomDef, user: str) -> None:
        messages = service.read_last(room.jid, ev.last)
        self.model.log("read", f"{user} read {len(messages)} message(s) of {room.name}",
                       service.node, user=user, room=room.jid,
                       msg_ids=[msg.msg_id for msg in messages])
        bodies = [msg.body for msg in messages]
        if ev.includes:
            self._check(f"{user} reads {room.name} including {len(ev.includes)} given "
                        "message(s) in order", "yes",
                        "yes" if _subsequence(list(ev.includes), bodies) else
                        f"no (read: {bodies})")
        if ev.all_acknowledged:
            acked = [(a.from_jid, a.body) for a in self.acks if a.room_jid == room.jid]
            got = [(msg.from_jid, msg.body) for msg in messages]
            self._check(f"{user} reads all {len(acked)} acknowledged message(s) of "
                        f"{room.name} in order", "yes",
                        "yes" if _subsequence(acked, got) else
                        f"no ({len(got)} read)")

    def _expect(self, ev: Event) -> None:
        m = self.model
        for node, state in ev.states.items():
            self._check(f"state of {node}", state.value, m.nodes[node].state.value)
        for node, reason in ev.reasons.items():
            self._check(f"reason of {node}", reason.value, m.nodes[node].reason.value)
        for name, host in ev.room_host.items():
            room = self.scenario.room(name)
            self._check(f"host of {name}", host, m.room_host(room.owner) or NO_HOST)
        for user, node in ev.users.items():
            self._check(f"{user} signed in to", node, m.users[user].node or SIGNED_OUT)

    # -- run -----------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        started = time.perf_counter()
        ensure_lease_table(self.engine)
        create_rooms(self.engine, [(r.jid, r.creator, r.subject) for r in self.scenario.rooms])
        # a database used before keeps its rows: only this run's posts are checked
        before = highest_archived_ids(self.engine, [r.jid for r in self.scenario.rooms])
        for ev in self.scenario.events:
            self.model.queue.push(ev.at, _Scheduled(ev), priority=1 if ev.do == "expect" else 0)
        self.model.start()
        self.model.run_until(self.scenario.until, on_event=self._apply)
        losses = verify_acknowledged(self.engine, self.acks, before)
        return SimulationResult(
            scenario=self.scenario.name, description=self.scenario.description,
            seed=self.seed, until=self.scenario.until, database=self.database,
            timeline=list(self.model.timeline), checks=list(self.checks),
            moves=list(self.model.moves), losses=losses, final=self.model.states(),
            load_timings=list(self.rooms.timings),
            elapsed_seconds=time.perf_counter() - started,
            database_errors=list(self.rooms.errors),
        )


_T = TypeVar("_T")


class _Rejected(Exception):
    pass


def _s(value: str | None) -> str:
    assert value is not None
    return value


def _subsequence(wanted: list[_T], got: list[_T]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


SIMULATION_DIALECTS = ("postgresql", "oracle")


def run_scenario(scenario: Scenario, ref: DatabaseRef | None = None, *,
                 seed: int | None = None) -> SimulationResult:
    """Run on ``ref`` (which must hold the TC schema) or on a fresh embedded PostgreSQL."""
    if ref is not None:
        if ref.dialect not in SIMULATION_DIALECTS:
            raise UnsupportedDatabaseError(
                f"{ref.label}: the HA simulation runs on PostgreSQL or Oracle, "
                f"not {ref.dialect}")
        engine = create_engine(ref, application_name=ROOM_SERVICE_APPLICATION)
        try:
            try:
                with engine.connect() as conn:
                    present = sa.inspect(conn).has_table(tc_rooms.name)
            except sa.exc.DBAPIError as exc:
                from tcmerge.db import server_reason
                from tcmerge.errors import DatabaseError

                raise DatabaseError(f"cannot connect to {ref.label}: "
                                    f"{server_reason(exc, ref)}",
                                    code="CONNECTION_FAILED") from None
            if not present:
                raise ConfigError(f"{ref.label} has no TC schema; run: tcmerge schema upgrade DB")
            return Simulation(scenario, engine, seed=seed, database=ref.label).run()
        finally:
            engine.dispose()
    from tcmerge.providers import get_provider
    from tcmerge.schema import manage

    with get_provider() as provider:
        server = provider.start_server("ha-simulate")
        db = server.create_database("tcmerge_ha_simulation")
        manage.upgrade(db)
        engine = create_engine(db, application_name=ROOM_SERVICE_APPLICATION)
        try:
            return Simulation(scenario, engine, seed=seed,
                              database=f"embedded PostgreSQL {server.version}").run()
        finally:
            engine.dispose()
