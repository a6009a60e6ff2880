"""The healer's rules, the session clock's and the schedules', as pure functions of a VM's
row and the time (no database: the passes that act on them are tested on real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lablink_core.config import HealthConfig, SessionConfig
from lablink_core.healing import decide
from lablink_core.maintenance import Maintenance, Step
from lablink_core.reclaim import reclaim_plan
from lablink_core.schedules import Teardown, next_daily

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
HEALTH = HealthConfig(
    boot_timeout_seconds=600, silence_limit_seconds=300, reboots=1, replacements=1
)


def vm(**values: Any) -> dict[str, Any]:
    """A well VM's row, heard a moment ago, with ``values`` changed."""
    row: dict[str, Any] = {
        "hostname": "vm-1",
        "status": "available",
        "user_email": None,
        "health": "Tesla T4",
        "health_state": "healthy",
        "status_message": None,
        "created_at": NOW - 60 * MIN,
        "last_heard_at": NOW - 0.1 * MIN,
        "healing": None,
        "healing_since": None,
        "heal_attempts": 0,
    }
    return {**row, **values}


def test_a_well_vm_is_left_alone() -> None:
    assert decide(vm(), NOW, HEALTH) is None


@pytest.mark.parametrize(
    ("row", "present", "why"),
    [
        (vm(status="error", status_message="start-host failed"), None, "start-host failed"),
        (vm(health_state="unhealthy", health="nvidia-smi failed"), None, "GPU is unhealthy"),
        (vm(status="booting", last_heard_at=None, created_at=NOW - 11 * MIN), None, "booting"),
        (vm(last_heard_at=NOW - 6 * MIN), None, "silent for 6 min"),
        (vm(), False, "machine is gone"),
    ],
)
def test_each_kind_of_trouble_is_rebooted_first(
    row: dict[str, Any], present: bool | None, why: str
) -> None:
    decision = decide(row, NOW, HEALTH, present)
    assert decision is not None and decision.action == "reboot" and why in decision.reason


def test_a_booting_vm_within_its_limit_is_left_alone() -> None:
    assert decide(vm(status="booting", created_at=NOW - 9 * MIN), NOW, HEALTH) is None


def test_reboot_then_replace_then_give_up_then_nothing() -> None:
    sick = vm(status="error")
    actions = [decide({**sick, "heal_attempts": n}, NOW, HEALTH) for n in range(4)]
    assert [a.action if a else None for a in actions] == ["reboot", "replace", "give_up", None]
    assert "2 repairs did not help" in actions[2].reason  # type: ignore[union-attr]


def test_an_action_under_way_is_given_time() -> None:
    rebooting = vm(status="error", healing="rebooting", healing_since=NOW - 2 * MIN)
    assert decide({**rebooting, "heal_attempts": 1}, NOW, HEALTH) is None
    later = {**rebooting, "heal_attempts": 1, "healing_since": NOW - 11 * MIN}
    assert decide(later, NOW, HEALTH).action == "replace"  # type: ignore[union-attr]


def test_a_process_that_died_again_during_the_grace_is_acted_on() -> None:
    row = vm(healing="rebooting", healing_since=NOW - 1 * MIN, heal_attempts=1)
    assert decide(row, NOW, HEALTH, present=False).action == "replace"  # type: ignore[union-attr]


def test_a_repaired_vm_that_stays_well_has_its_count_reset() -> None:
    recent = vm(heal_attempts=1, healing_since=NOW - 2 * MIN)
    assert decide(recent, NOW, HEALTH) is None  # too early to call it well
    settled = vm(heal_attempts=1, healing_since=NOW - 20 * MIN)
    assert decide(settled, NOW, HEALTH).action == "recovered"  # type: ignore[union-attr]


def test_a_recycled_vm_is_replaced_whatever_its_count() -> None:
    decision = decide(vm(status="recycling", heal_attempts=0), NOW, HEALTH)
    assert decision is not None and decision.action == "replace"


SESSION = SessionConfig(max_minutes=120, idle_minutes=30, extensions=1, extension_minutes=30)


def held(**values: Any) -> dict[str, Any]:
    row = {"assigned_at": NOW - 10 * MIN, "last_activity_at": None, "extended_until": None}
    return {**row, "extensions_used": 0, **values}


def test_idle_session_ends_thirty_minutes_after_the_last_activity() -> None:
    plan = reclaim_plan(held(last_activity_at=NOW - 5 * MIN), SESSION)
    assert plan is not None and plan.kind == "idle" and plan.at == NOW + 25 * MIN
    assert plan.reason == "idle 30 min" and plan.extendable


def test_never_connected_counts_from_the_assignment() -> None:
    plan = reclaim_plan(held(), SESSION)
    assert plan is not None and plan.at == NOW + 20 * MIN


def test_a_busy_session_ends_at_its_limit_and_an_extension_moves_it() -> None:
    busy = held(assigned_at=NOW - 119 * MIN, last_activity_at=NOW)
    plan = reclaim_plan(busy, SESSION)
    assert plan is not None and plan.kind == "session" and plan.at == NOW + MIN
    extended = reclaim_plan({**busy, "extensions_used": 1}, SESSION)
    assert extended is not None and extended.at == NOW + 30 * MIN  # idle now ends first


def test_an_extension_postpones_an_idle_end() -> None:
    plan = reclaim_plan(held(extended_until=NOW + 40 * MIN, extensions_used=1), SESSION)
    assert plan is not None and plan.kind == "idle" and plan.at == NOW + 40 * MIN


def test_a_teardown_comes_first_when_it_is_earliest_and_cannot_be_extended() -> None:
    plan = reclaim_plan(held(), SESSION, teardown_at=NOW + 3 * MIN)
    assert plan is not None and plan.kind == "teardown" and not plan.extendable


def test_no_limits_no_end() -> None:
    assert reclaim_plan(held(), SessionConfig()) is None
    assert reclaim_plan({"assigned_at": None}, SESSION) is None


def test_daily_teardown_runs_at_the_local_time_across_daylight_saving() -> None:
    seventeen = dt.time(17, 0)
    before = dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.UTC)  # Europe/Berlin: winter time
    first = next_daily(seventeen, "Europe/Berlin", before)
    assert first == dt.datetime(2026, 3, 28, 16, 0, tzinfo=dt.UTC)
    after_change = next_daily(seventeen, "Europe/Berlin", first)
    assert after_change == dt.datetime(2026, 3, 29, 15, 0, tzinfo=dt.UTC)  # summer time


def test_teardown_warnings_at_fifteen_and_five_minutes() -> None:
    teardown = Teardown(NOW + 30 * MIN, 1)
    assert teardown.warning(NOW) is None
    assert teardown.warning(NOW + 16 * MIN) == "15 minutes"
    assert teardown.warning(NOW + 26 * MIN) == "5 minutes"


class FakeLease:
    """Held by whoever the test says."""

    def __init__(self) -> None:
        self.held = True
        self.released = False

    def acquire(self, now: dt.datetime) -> bool:
        return self.held

    def release(self) -> None:
        self.released = True


def test_maintenance_runs_due_steps_only_while_leading() -> None:
    clock = {"now": NOW}
    runs: list[tuple[str, dt.datetime]] = []
    steps = [
        Step("fast", 1.0, lambda now: runs.append(("fast", now))),
        Step("slow", 10.0, lambda now: runs.append(("slow", now))),
    ]
    lease = FakeLease()
    loop = Maintenance(lease, steps, clock=lambda: clock["now"])
    assert loop.tick() == ["fast", "slow"]
    clock["now"] += dt.timedelta(seconds=2)
    assert loop.tick() == ["fast"]
    lease.held = False
    clock["now"] += dt.timedelta(seconds=20)
    assert loop.tick() == []
    lease.held = True
    assert loop.tick() == ["fast", "slow"]
    loop.stop()
    assert lease.released


def test_a_failing_step_does_not_stop_the_others() -> None:
    def broken(now: dt.datetime) -> None:
        raise RuntimeError("database away")

    seen: list[str] = []
    loop = Maintenance(
        FakeLease(), [Step("broken", 1, broken), Step("ok", 1, lambda n: seen.append("ok"))]
    )
    assert loop.tick() == ["broken", "ok"] and seen == ["ok"]
