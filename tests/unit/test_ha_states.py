"""The HA states, reasons and transition table (reference/ha-model.md)."""

from __future__ import annotations

import pytest

from tcmerge.errors import ConfigError
from tcmerge.ha.states import (
    TRANSITION_TABLE,
    TRANSITIONS,
    HaReason,
    HaState,
    IllegalTransitionError,
    StateKind,
    check_transition,
    is_legal,
)

REFERENCE_STATES = [
    "Initializing", "Idle", "Normal", "Running in Backup Mode", "Taking Over",
    "Failing Over", "Failed Over", "Failed Over with Critical Services not Running",
    "Falling Back", "Taking Back", "Running in Failed Mode", "Unknown",
]
REFERENCE_REASONS = [
    "Normal", "On Admin Request", "Initialization", "Automatic Fallback",
    "Critical Service Down", "Database Failure", "Start of Critical Services Failed",
    "Peer Down", "Peer Reboot", "Peer Down During Initialization",
    "Cisco Server Recovery Manager Take Over Users Failed",
    "Cisco Server Recovery Manager Take Back Users Failed", "Auto Recover Database Failure",
    "Auto Recover Critical Service Down", "High Availability Not Enabled", "Unknown",
]


def test_the_twelve_states_have_the_reference_names() -> None:
    assert [s.value for s in HaState] == REFERENCE_STATES
    assert str(HaState.FAILED_OVER_CRITICAL_SERVICES_NOT_RUNNING) == REFERENCE_STATES[7]


def test_the_reasons_have_the_reference_names() -> None:
    assert [r.value for r in HaReason] == REFERENCE_REASONS


def test_state_kinds_follow_the_reference() -> None:
    assert {s.value for s in HaState if s.kind is StateKind.TRANSIENT} == {
        "Initializing", "Taking Over", "Failing Over", "Falling Back", "Taking Back"}
    assert {s.value for s in HaState if s.kind is StateKind.ERROR} == {
        "Running in Failed Mode", "Unknown"}


@pytest.mark.parametrize(("source", "target"), [
    ("Normal", "Failed Over with Critical Services not Running"),  # critical service down
    ("Normal", "Taking Over"),
    ("Taking Over", "Running in Backup Mode"),
    ("Failed Over with Critical Services not Running", "Failed Over"),  # services restored
    ("Normal", "Failing Over"),  # manual failover
    ("Failing Over", "Idle"),
    ("Failed Over", "Taking Back"),  # fallback
    ("Idle", "Taking Back"),
    ("Running in Backup Mode", "Falling Back"),
    ("Taking Back", "Normal"),
    ("Falling Back", "Normal"),
    ("Taking Back", "Running in Failed Mode"),
    ("Running in Backup Mode", "Running in Failed Mode"),  # backup fails, A cannot serve
    ("Running in Failed Mode", "Initializing"),  # recover
    ("Initializing", "Failed Over"),  # back after peer loss
])
def test_reference_transitions_are_in_the_table(source: str, target: str) -> None:
    assert is_legal(HaState(source), HaState(target))
    check_transition("1A", HaState(source), HaState(target))


@pytest.mark.parametrize(("source", "target"), [
    ("Idle", "Normal"),  # fallback must pass through Taking Back
    ("Failed Over with Critical Services not Running", "Taking Back"),  # not ready
    ("Running in Failed Mode", "Normal"),  # only recover leaves failed mode
    ("Failed Over", "Running in Backup Mode"),
    ("Initializing", "Idle"),
    ("Normal", "Normal"),
])
def test_illegal_transitions_raise_a_typed_error(source: str, target: str) -> None:
    assert not is_legal(HaState(source), HaState(target))
    with pytest.raises(IllegalTransitionError) as info:
        check_transition("1A", HaState(source), HaState(target))
    assert info.value.code == "HA_ILLEGAL_TRANSITION"
    assert source in info.value.message and target in info.value.message


def test_table_is_data_covering_every_state() -> None:
    assert set(TRANSITION_TABLE) == set(HaState)
    assert all(t.when for t in TRANSITIONS)
    # every state can be left, and every state but Initializing/Normal's start can be reached
    assert all(TRANSITION_TABLE[s] for s in HaState)


def test_parse_forgives_case_but_refuses_unknown_names() -> None:
    assert HaState.parse("running in backup mode") is HaState.RUNNING_IN_BACKUP_MODE
    assert HaReason.parse("PEER_DOWN") is HaReason.PEER_DOWN
    with pytest.raises(ConfigError):
        HaState.parse("Backup")
