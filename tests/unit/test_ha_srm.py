"""The Server Recovery Manager in simulated time (pure model, fake clock)."""

from __future__ import annotations

import time

import pytest

from tcmerge.errors import ConfigError
from tcmerge.ha.srm import (
    EventQueue,
    GroupSpec,
    HaModel,
    MemoryRooms,
    NodeSpec,
    SimClock,
    SrmTimers,
)
from tcmerge.ha.states import HaState, RequestRefusedError

S = HaState


def model(seed: int = 1, timers: SrmTimers | None = None, ha: bool = True,
          rooms: MemoryRooms | None = None) -> HaModel:
    groups = [GroupSpec("sub1", ha, (NodeSpec("1A", ("andy",)), NodeSpec("1B", ("bob",))))]
    m = HaModel(groups, timers, seed=seed, rooms=rooms)
    m.start()
    return m


def state(m: HaModel, node: str) -> str:
    return m.nodes[node].state.value


def test_defaults_are_the_reference_timers() -> None:
    t = SrmTimers()
    assert (t.heartbeat_interval, t.heartbeat_timeout, t.init_heartbeat_timeout) == (15, 60, 120)
    assert t.critical_service_delay == 90
    assert t.automatic_fallback is False and t.automatic_fallback_delay == 1800
    assert (t.relogin_lower, t.relogin_upper) == (120, 537)


def test_timers_are_configurable_and_checked() -> None:
    assert SrmTimers.from_mapping({"critical_service_delay": 30}).critical_service_delay == 30
    with pytest.raises(ConfigError):
        SrmTimers.from_mapping({"no_such_timer": 1})
    with pytest.raises(ConfigError):
        SrmTimers(relogin_lower=600, relogin_upper=100)


def test_queue_orders_by_time_priority_then_insertion() -> None:
    q = EventQueue()
    q.push(5, "late")
    q.push(1, "check", priority=1)
    q.push(1, "first")
    q.push(1, "second")
    assert [q.pop()[1] for _ in range(4)] == ["first", "second", "check", "late"]


def test_critical_service_down_fails_over_after_the_delay() -> None:
    m = model()
    m.run_until(100)
    m.service_stop("1A", "text_conference")
    m.run_until(189.9)
    assert (state(m, "1A"), state(m, "1B")) == ("Normal", "Normal")
    m.run_until(190)
    assert state(m, "1A") == "Failed Over with Critical Services not Running"
    assert state(m, "1B") == "Taking Over"
    m.run_until(192)
    assert state(m, "1B") == "Running in Backup Mode"
    assert m.room_host("1A") == "1B"
    [move] = m.moves
    assert (move.detection_seconds, move.takeover_seconds) == (90, 92)


def test_the_delay_is_configurable() -> None:
    m = model(timers=SrmTimers(critical_service_delay=30, transition_time=0))
    m.service_stop("1A", "xcp_router")
    m.run_until(30)
    assert state(m, "1B") == "Running in Backup Mode"


def test_a_service_back_within_the_delay_causes_no_failover() -> None:
    m = model()
    m.service_stop("1A", "text_conference")
    m.run_until(60)
    m.service_start("1A", "text_conference")
    m.run_until(3600)
    assert (state(m, "1A"), state(m, "1B")) == ("Normal", "Normal")
    assert m.room_host("1A") == "1A"


def test_peer_loss_is_detected_by_missing_heartbeats() -> None:
    m = model(timers=SrmTimers(heartbeat_interval=10, heartbeat_timeout=30))
    m.run_until(100)
    m.crash("1A")  # last heartbeat seen at 100
    m.run_until(129)
    assert state(m, "1B") == "Normal"
    m.run_until(130)
    assert state(m, "1B") == "Taking Over"
    assert m.nodes["1B"].reason.value == "Peer Down"
    m.run_until(400)
    m.boot("1A")
    m.run_until(410)
    assert state(m, "1A") == "Failed Over"


def test_manual_failover_only_from_normal_and_fallback_only_when_failed_over() -> None:
    m = model()
    with pytest.raises(RequestRefusedError):
        m.fallback("1A")
    m.failover("1A")
    assert (state(m, "1A"), state(m, "1B")) == ("Failing Over", "Taking Over")
    m.run_until(2)
    assert (state(m, "1A"), state(m, "1B")) == ("Idle", "Running in Backup Mode")
    with pytest.raises(RequestRefusedError):
        m.failover("1B")
    m.fallback("1A")
    assert (state(m, "1A"), state(m, "1B")) == ("Taking Back", "Falling Back")
    m.run_until(4)
    assert (state(m, "1A"), state(m, "1B")) == ("Normal", "Normal")


def test_backup_failing_while_home_cannot_serve_ends_in_failed_mode() -> None:
    m = model()
    m.service_stop("1A", "text_conference")
    m.run_until(200)
    m.service_stop("1B", "presence_engine")
    m.run_until(290)
    assert (state(m, "1A"), state(m, "1B")) == ("Running in Failed Mode",) * 2


def test_backup_failing_while_home_can_serve_auto_recovers() -> None:
    m = model()
    m.service_stop("1A", "text_conference")
    m.run_until(200)
    m.service_start("1A", "text_conference")
    assert state(m, "1A") == "Failed Over"
    m.service_stop("1B", "text_conference")
    m.run_until(292)
    assert state(m, "1B") == "Failed Over with Critical Services not Running"
    assert m.nodes["1B"].reason.value == "Auto Recover Critical Service Down"
    assert state(m, "1A") == "Running in Backup Mode"
    assert m.room_host("1A") == "1A" and m.room_host("1B") == "1A"


def test_failed_room_load_stops_tc_and_fails_the_takeover() -> None:
    rooms = MemoryRooms(fail=lambda node, owner: node == "1B")
    m = model(rooms=rooms)
    m.service_stop("1A", "text_conference")
    m.run_until(192)
    assert state(m, "1B") == "Running in Failed Mode"
    assert m.nodes["1B"].reason.value == \
        "Cisco Server Recovery Manager Take Over Users Failed"
    assert not m.nodes["1B"].tc_running
    assert m.room_host("1A") is None and m.room_host("1B") is None


def test_automatic_fallback_is_off_by_default_and_waits_30_minutes_when_on() -> None:
    for enabled, expected in ((False, "Failed Over"), (True, "Normal")):
        m = model(timers=SrmTimers(automatic_fallback=enabled))
        m.service_stop("1A", "text_conference")
        m.run_until(300)
        m.service_start("1A", "text_conference")
        m.run_until(300 + 1799)
        assert state(m, "1A") == "Failed Over"
        m.run_until(300 + 1800 + 2)
        assert state(m, "1A") == expected


def test_without_ha_users_move_but_rooms_do_not() -> None:
    m = model(ha=False)
    assert m.states()["1A"] == ("Unknown", "High Availability Not Enabled")
    m.service_stop("1A", "text_conference")
    m.run_until(1000)
    assert m.users["andy"].node == "1B"
    assert m.room_host("1A") is None
    assert state(m, "1A") == state(m, "1B") == "Unknown"


def test_relogin_waits_within_the_limits() -> None:
    m = model()
    m.service_stop("1A", "text_conference")
    m.run_until(90)
    assert m.users["andy"].node is None
    relogin = m.users["andy"].relogin_at
    assert relogin is not None and 90 + 120 <= relogin <= 90 + 537
    m.run_until(relogin)
    assert m.users["andy"].node == "1B"


def _timeline(seed: int) -> list[dict[str, object]]:
    m = model(seed=seed)
    m.run_until(100)
    m.service_stop("1A", "text_conference")
    m.run_until(800)
    m.service_start("1A", "text_conference")
    m.fallback("1A")
    m.run_until(3600)
    return [e.as_dict() for e in m.timeline]


def test_same_seed_same_timeline_other_seed_other_relogins() -> None:
    assert _timeline(42) == _timeline(42)
    assert _timeline(42) != _timeline(43)


def test_a_simulated_hour_runs_in_milliseconds() -> None:
    m = model()
    clock_before = time.perf_counter()
    m.run_until(3600)
    elapsed = time.perf_counter() - clock_before
    assert m.now() == 3600
    assert elapsed < 1.0  # 480 heartbeats; generous bound for a loaded machine


def test_sim_clock_cannot_go_back() -> None:
    clock = SimClock(10)
    with pytest.raises(ValueError):
        clock.advance_to(5)
