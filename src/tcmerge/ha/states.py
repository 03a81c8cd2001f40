"""Node HA states, reasons and the transition table (reference/ha-model.md), as plain data.

The enum values are the exact display names of IM and Presence. The transition
table lists every legal (from, to) pair with the situation that causes it;
``check_transition`` refuses everything else with ``IllegalTransitionError``.
Nothing here touches a database.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from tcmerge.errors import EXIT_FAILURE, TcmergeError


class HaState(enum.StrEnum):
    INITIALIZING = "Initializing"
    IDLE = "Idle"
    NORMAL = "Normal"
    RUNNING_IN_BACKUP_MODE = "Running in Backup Mode"
    TAKING_OVER = "Taking Over"
    FAILING_OVER = "Failing Over"
    FAILED_OVER = "Failed Over"
    FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING = "Failed Over with Critical Services not Running"
    FALLING_BACK = "Falling Back"
    TAKING_BACK = "Taking Back"
    RUNNING_IN_FAILED_MODE = "Running in Failed Mode"
    UNKNOWN = "Unknown"

    @property
    def kind(self) -> StateKind:
        return STATE_KINDS[self]

    @classmethod
    def parse(cls, text: str) -> HaState:
        """A state from its display name (case and spacing forgiven) or its enum name."""
        return _parse(cls, text)


class StateKind(enum.StrEnum):
    TRANSIENT = "transient"
    STEADY = "steady"
    ERROR = "error"


STATE_KINDS: dict[HaState, StateKind] = {
    HaState.INITIALIZING: StateKind.TRANSIENT,
    HaState.IDLE: StateKind.STEADY,
    HaState.NORMAL: StateKind.STEADY,
    HaState.RUNNING_IN_BACKUP_MODE: StateKind.STEADY,
    HaState.TAKING_OVER: StateKind.TRANSIENT,
    HaState.FAILING_OVER: StateKind.TRANSIENT,
    HaState.FAILED_OVER: StateKind.STEADY,
    HaState.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING: StateKind.STEADY,
    HaState.FALLING_BACK: StateKind.TRANSIENT,
    HaState.TAKING_BACK: StateKind.TRANSIENT,
    HaState.RUNNING_IN_FAILED_MODE: StateKind.ERROR,
    HaState.UNKNOWN: StateKind.ERROR,
}


class HaReason(enum.StrEnum):
    NORMAL = "Normal"
    ON_ADMIN_REQUEST = "On Admin Request"
    INITIALIZATION = "Initialization"
    AUTOMATIC_FALLBACK = "Automatic Fallback"
    CRITICAL_SERVICE_DOWN = "Critical Service Down"
    DATABASE_FAILURE = "Database Failure"
    START_OF_CRITICAL_SERVICES_FAILED = "Start of Critical Services Failed"
    PEER_DOWN = "Peer Down"
    PEER_REBOOT = "Peer Reboot"
    PEER_DOWN_DURING_INITIALIZATION = "Peer Down During Initialization"
    TAKE_OVER_USERS_FAILED = "Cisco Server Recovery Manager Take Over Users Failed"
    TAKE_BACK_USERS_FAILED = "Cisco Server Recovery Manager Take Back Users Failed"
    AUTO_RECOVER_DATABASE_FAILURE = "Auto Recover Database Failure"
    AUTO_RECOVER_CRITICAL_SERVICE_DOWN = "Auto Recover Critical Service Down"
    HIGH_AVAILABILITY_NOT_ENABLED = "High Availability Not Enabled"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str) -> HaReason:
        return _parse(cls, text)


_E = TypeVar("_E", bound=enum.StrEnum)


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def _parse(cls: type[_E], text: str) -> _E:
    wanted = _norm(text)
    for member in cls:
        if wanted in (_norm(member.value), _norm(member.name)):
            return member
    from tcmerge.errors import ConfigError

    raise ConfigError(
        f"{text!r} is not an HA {cls.__name__[2:].lower()}; use one of: "
        + ", ".join(m.value for m in cls)
    )


#: Critical services of a node (Cisco's list); ``text_conference`` only when
#: persistent chat is on. A database failure is a failover reason of its own.
CRITICAL_SERVICES = (
    "text_conference",
    "xcp_router",
    "presence_engine",
    "sip_proxy",
    "sync_agent",
    "client_profile_agent",
)
#: Other names a topology or scenario may give a critical service.
SERVICE_ALIASES = {"router": "xcp_router"}


def critical_service(name: object) -> str | None:
    """The critical service ``name`` stands for (``router`` is ``xcp_router``), else None."""
    if not isinstance(name, str):
        return None
    name = SERVICE_ALIASES.get(name, name)
    return name if name in CRITICAL_SERVICES else None


@dataclass(frozen=True)
class Transition:
    """One legal state change and the situation that causes it (I = inferred)."""

    source: HaState
    target: HaState
    when: str


S = HaState
_ANY_LIVE = tuple(s for s in HaState if s is not HaState.UNKNOWN)

TRANSITIONS: tuple[Transition, ...] = (
    # start-up and recovery
    Transition(S.INITIALIZING, S.NORMAL, "SRM started, node healthy, peer not serving its users"),
    Transition(S.INITIALIZING, S.FAILED_OVER, "back after failover; critical services up"),
    Transition(S.INITIALIZING, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING,
               "back after failover (or recovering) with a critical service down"),
    Transition(S.INITIALIZING, S.TAKING_OVER,
               "peer down during initialization, or peer unhealthy after recover"),
    Transition(S.INITIALIZING, S.RUNNING_IN_FAILED_MODE, "neither node can serve after recover"),
    # automatic failover (critical service / database / peer lost)
    Transition(S.NORMAL, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING,
               "critical service or database down longer than the delay"),
    Transition(S.NORMAL, S.TAKING_OVER, "peer failed or was failed over (I)"),
    Transition(S.TAKING_OVER, S.RUNNING_IN_BACKUP_MODE, "peer's users and rooms taken over"),
    Transition(S.TAKING_OVER, S.RUNNING_IN_FAILED_MODE,
               "taking over failed (e.g. database unreachable while loading rooms)"),
    # manual failover
    Transition(S.NORMAL, S.FAILING_OVER, "admin failover"),
    Transition(S.FAILING_OVER, S.IDLE, "manual failover done; services stopped"),
    Transition(S.FAILING_OVER, S.RUNNING_IN_FAILED_MODE, "peer could not take over"),
    Transition(S.IDLE, S.RUNNING_IN_FAILED_MODE, "peer could not take over"),
    # services restored on the failed node
    Transition(S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING, S.FAILED_OVER,
               "critical services running again"),
    Transition(S.FAILED_OVER, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING,
               "a critical service stopped again"),
    # fallback (manual or automatic)
    Transition(S.FAILED_OVER, S.TAKING_BACK, "fallback"),
    Transition(S.IDLE, S.TAKING_BACK, "fallback after manual failover"),
    Transition(S.RUNNING_IN_BACKUP_MODE, S.FALLING_BACK, "fallback"),
    Transition(S.TAKING_BACK, S.NORMAL, "users and rooms taken back"),
    Transition(S.FALLING_BACK, S.NORMAL, "peer's users and rooms handed back"),
    Transition(S.TAKING_BACK, S.RUNNING_IN_FAILED_MODE,
               "services failed to start or moving users failed"),
    Transition(S.FALLING_BACK, S.RUNNING_IN_FAILED_MODE, "moving users back failed"),
    # the backup fails
    Transition(S.RUNNING_IN_BACKUP_MODE, S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING,
               "auto-recovery: backup failed while the home node can serve"),
    Transition(S.FAILED_OVER, S.TAKING_OVER, "auto-recovery: taking every user from the backup"),
    Transition(S.RUNNING_IN_BACKUP_MODE, S.RUNNING_IN_FAILED_MODE,
               "backup failed while the home node cannot serve"),
    Transition(S.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING, S.RUNNING_IN_FAILED_MODE,
               "backup failed while this node cannot serve"),
    Transition(S.FAILED_OVER, S.RUNNING_IN_FAILED_MODE, "backup failed during a transition"),
    Transition(S.NORMAL, S.RUNNING_IN_FAILED_MODE,
               "critical service down while the peer cannot take over"),
    # recover (admin)
    Transition(S.RUNNING_IN_FAILED_MODE, S.INITIALIZING, "admin recover: SRM restarted"),
    # the node stops (crash, reboot) or HA is disabled: state cannot be determined
    *(Transition(s, S.UNKNOWN, "node down or HA not enabled") for s in _ANY_LIVE),
    Transition(S.UNKNOWN, S.INITIALIZING, "node (or SRM) started"),
)

TRANSITION_TABLE: dict[HaState, frozenset[HaState]] = {
    state: frozenset(t.target for t in TRANSITIONS if t.source is state) for state in HaState
}


class IllegalTransitionError(TcmergeError):
    """A state change the transition table does not allow."""

    code = "HA_ILLEGAL_TRANSITION"
    exit_code = EXIT_FAILURE

    def __init__(self, node: str, source: HaState, target: HaState) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITION_TABLE[source])) or "none"
        super().__init__(
            f"node {node}: illegal HA transition {source.value} → {target.value} "
            f"(allowed from {source.value}: {allowed})"
        )
        self.node = node
        self.source = source
        self.target = target


class RequestRefusedError(TcmergeError):
    """An admin request (failover, fallback, recover) that the current states forbid."""

    code = "HA_REQUEST_REFUSED"
    exit_code = EXIT_FAILURE


def is_legal(source: HaState, target: HaState) -> bool:
    return target in TRANSITION_TABLE[source]


def check_transition(node: str, source: HaState, target: HaState) -> None:
    if not is_legal(source, target):
        raise IllegalTransitionError(node, source, target)


def transitions_from(state: HaState) -> Iterable[Transition]:
    return (t for t in TRANSITIONS if t.source is state)
