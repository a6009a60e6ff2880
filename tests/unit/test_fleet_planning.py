"""The fleet's pure rules: new VM names, which VMs a scale-down removes, progress."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lablink_core.errors import InvalidInput
from lablink_core.fleet.base import (
    FleetOperationFailed,
    FleetOperationHandle,
    FleetProgress,
    choose_removals,
    name_number,
    next_names,
)

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def vm(name: str, status: str = "available", minute: int = 0, **extra: Any) -> dict[str, Any]:
    email = extra.pop("user_email", "a@b.org" if status in ("assigned", "connected") else None)
    created = T0 + dt.timedelta(minutes=minute)
    return {"hostname": name, "status": status, "user_email": email, "created_at": created, **extra}


def test_first_names_start_at_one() -> None:
    assert next_names([], "lablink-vm", 3) == ["lablink-vm-001", "lablink-vm-002", "lablink-vm-003"]


def test_names_continue_after_the_highest_ever_used() -> None:
    used = ["lablink-vm-002", "lablink-vm-017", "lablink-vm-005", "other-900", "lablink-vm-x"]
    assert next_names(used, "lablink-vm", 2) == ["lablink-vm-018", "lablink-vm-019"]


def test_names_grow_past_three_digits() -> None:
    assert next_names(["lab-999"], "lab", 2) == ["lab-1000", "lab-1001"]


def test_prefix_is_matched_literally() -> None:
    assert name_number("lablink-vm-007", "lablink-vm") == 7
    assert name_number("lablink-vm-007", "lablink") is None
    assert name_number("lablinkXvm-007", "lablink.vm") is None


def test_scale_down_takes_newest_free_vms_first() -> None:
    vms = [vm("v-001", minute=0), vm("v-002", minute=1), vm("v-003", minute=2)]
    assert choose_removals(vms, 2, force=False) == ["v-003", "v-002"]


def test_same_batch_is_ordered_by_number_not_text() -> None:
    vms = [vm("v-999"), vm("v-1000"), vm("v-998")]
    assert choose_removals(vms, 1, force=False) == ["v-1000"]


def test_broken_vms_go_before_booting_before_available() -> None:
    vms = [
        vm("v-001", "available", minute=5),
        vm("v-002", "booting", minute=4),
        vm("v-003", "error", minute=0),
    ]
    assert choose_removals(vms, 3, force=False) == ["v-003", "v-002", "v-001"]


def test_assigned_vms_are_kept() -> None:
    vms = [vm("v-001"), vm("v-002", "assigned", minute=1), vm("v-003", "connected", minute=2)]
    assert choose_removals(vms, 1, force=False) == ["v-001"]


def test_refusal_says_how_many_are_assigned() -> None:
    vms = [vm("v-001"), vm("v-002", "assigned"), vm("v-003", "connected")]
    with pytest.raises(InvalidInput, match="2 of 3 are assigned"):
        choose_removals(vms, 3, force=False)


def test_force_takes_idle_assigned_vms_before_busy_ones() -> None:
    vms = [
        vm("v-001", "connected", minute=0, in_use=False),
        vm("v-002", "connected", minute=2, in_use=True),
        vm("v-003"),
    ]
    assert choose_removals(vms, 2, force=True) == ["v-003", "v-001"]


def test_nothing_to_remove() -> None:
    assert choose_removals([vm("v-001", "assigned")], 0, force=False) == []


def test_progress_fraction() -> None:
    running = FleetProgress(1, "launch", "running", 4, 1, "started v-001")
    assert running.fraction == 0.25 and not running.finished
    assert FleetProgress(1, "destroy", "running", 0, 0, "").fraction == 0.0
    assert FleetProgress(1, "destroy", "succeeded", 0, 0, "").fraction == 1.0


def test_handle_reports_a_failure_with_its_final_progress() -> None:
    handle = FleetOperationHandle()
    final = FleetProgress(7, "launch", "failed", 3, 1, "failed: boom", error="boom")
    handle.fail(FleetOperationFailed("Fleet operation failed: boom", final))
    assert handle.done and handle.id == 7 and handle.progress == final
    with pytest.raises(FleetOperationFailed) as raised:
        handle.result(timeout=0)
    assert raised.value.progress.error == "boom"


def test_handle_result_times_out_while_running() -> None:
    handle = FleetOperationHandle()
    handle.update(FleetProgress(3, "scale", "running", 2, 0, "scaling"))
    with pytest.raises(TimeoutError, match="#3"):
        handle.result(timeout=0)
