"""The admin pages' state and views without a server: fakes for the fleet and allocator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dashboard.admin.actions import InstanceActions, csv_text, split_selection
from dashboard.admin.confirm import ConfirmPanel, name_list
from dashboard.admin.credentials import CredentialsState, CredentialsView
from dashboard.admin.frames import vm_frame
from dashboard.admin.instances import InstancesView
from dashboard.admin.launch import LaunchState
from dashboard.admin.overview import histogram
from dashboard.live import LiveVMTable
from lablink_core.aws_credentials import AwsCredentialStore
from lablink_core.config import MachineConfig
from lablink_core.errors import NotFound, OperationInProgress
from lablink_core.fleet.base import FleetOperationHandle, FleetProgress
from tests.support.waiting import wait_until

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


class FakeFleet:
    """Records what was started; ``busy`` makes start() refuse like the real fleet."""

    def __init__(self, hostnames: list[str] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.busy: str | None = None
        self.hostnames = hostnames or []

    def launch(self, count: int, *, on_progress: Any = None) -> None: ...

    def remove(self, hostnames: Any, **kwargs: Any) -> None: ...

    def destroy_all(self, **kwargs: Any) -> None: ...

    def vms(self) -> list[dict[str, Any]]:
        return [{"hostname": h} for h in self.hostnames]

    def start(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.busy:
            raise OperationInProgress(self.busy)
        on_progress = kwargs.pop("on_progress")
        self.calls.append((operation.__name__, args, kwargs))
        handle = FleetOperationHandle()
        first = FleetProgress(7, operation.__name__, "running", 2, 0, "planning")
        handle.update(first)
        on_progress(first)
        return handle

    def operations(self, limit: int = 20) -> list[dict[str, Any]]:
        return []

    def running_operation(self) -> dict[str, Any] | None:
        return None


class FakeAllocator:
    def __init__(self) -> None:
        self.released: list[str] = []

    def release_hostname(self, hostname: object) -> None:
        if hostname == "vm-gone":
            raise NotFound("No VM named vm-gone is assigned.")
        self.released.append(str(hostname))


def vm(name: str, email: str | None = None) -> dict[str, Any]:
    return {
        "hostname": name,
        "status": "assigned" if email else "available",
        "user_email": email,
        "in_use": False,
        "created_at": NOW,
        "last_heard_at": NOW,
    }


# Actions ---------------------------------------------------------------------------------


def test_split_selection_and_csv_export_defuses_formulas() -> None:
    frame = vm_frame([vm("vm-1"), vm("vm-2", "ada@example.org")], now=NOW)
    chosen = split_selection(frame)
    assert chosen.free == ["vm-1"]
    assert chosen.assigned == [("vm-2", "ada@example.org")]
    frame.loc["vm-1", "health"] = '=HYPERLINK("http://evil")'
    text = csv_text(frame)
    assert "'=HYPERLINK" in text
    assert text.splitlines()[0].startswith("hostname,status,user_email")


def test_destroy_starts_a_background_removal_and_reports_progress() -> None:
    fleet = FakeFleet()
    changes: list[int] = []
    actions = InstanceActions(FakeAllocator(), fleet, on_change=lambda: changes.append(1))
    assert actions.destroy(["vm-1", "vm-2"], force=False)
    assert fleet.calls == [("remove", (["vm-1", "vm-2"],), {"force": False})]
    assert actions.message == "Started: planning"
    assert actions.progress is not None and actions.progress.operation_id == 7
    actions._record_progress(FleetProgress(7, "remove", "succeeded", 2, 2, "removed"))
    assert actions.message == "Fleet operation #7 finished: removed"
    assert changes


def test_a_busy_fleet_refuses_with_its_own_message() -> None:
    fleet = FakeFleet()
    fleet.busy = "Fleet operation #3 (launch of 5 VMs on local) is still running"
    actions = InstanceActions(FakeAllocator(), fleet)
    assert not actions.destroy_all(force=True)
    assert actions.message == fleet.busy
    assert fleet.calls == []


def test_without_a_fleet_nothing_is_destroyed() -> None:
    actions = InstanceActions(FakeAllocator(), None)
    assert not actions.destroy(["vm-1"], force=False)
    assert "No fleet" in actions.message


def test_release_reports_what_was_released_and_what_was_not() -> None:
    allocator = FakeAllocator()
    actions = InstanceActions(allocator, None)
    assert actions.release(["vm-1", "vm-gone"]) == ["vm-1"]
    assert actions.message == "Released vm-1. No VM named vm-gone is assigned."


# Confirmation ------------------------------------------------------------------------------


def test_confirm_runs_the_action_once_and_cancel_runs_nothing() -> None:
    panel = ConfirmPanel()
    ran: list[str] = []
    panel.ask("<p>Destroy vm-1?</p>", lambda: ran.append("yes"), confirm_label="Destroy 1 VM")
    assert panel.open and panel.confirm.label == "Destroy 1 VM"
    panel.confirm.clicks += 1
    panel.confirm.clicks += 1
    assert ran == ["yes"] and not panel.open
    panel.ask("<p>Again?</p>", lambda: ran.append("again"), confirm_label="Go")
    panel.cancel.clicks += 1
    assert ran == ["yes"] and not panel.open


def test_names_are_escaped_and_long_lists_shortened() -> None:
    assert name_list(["<b>x</b>"]) == "&lt;b&gt;x&lt;/b&gt;"
    assert name_list([f"vm-{i}" for i in range(205)]).endswith("and 5 more")


def instances_view(fleet: FakeFleet) -> InstancesView:
    class Source:
        def list(self, *, unresponsive_after: float = 120.0) -> list[dict[str, Any]]:
            return [vm("vm-1"), vm("vm-2", "ada@example.org"), vm("vm-3")]

    table = LiveVMTable(Source())
    table.refresh()
    return InstancesView(table, InstanceActions(FakeAllocator(), fleet))


def test_destroying_free_vms_needs_one_confirmation_naming_them() -> None:
    fleet = FakeFleet()
    view = instances_view(fleet)
    view.table.tabulator.selection = [0, 2]
    view.destroy_selected.clicks += 1
    assert "vm-1, vm-3" in view.confirm.question.object
    assert "assigned" not in view.confirm.question.object
    view.confirm.confirm.clicks += 1
    wait_until(lambda: fleet.calls, message="the removal started")
    assert fleet.calls == [("remove", (["vm-1", "vm-3"],), {"force": False})]


def test_destroying_an_assigned_vm_needs_a_second_confirmation_naming_it() -> None:
    fleet = FakeFleet()
    view = instances_view(fleet)
    view.table.tabulator.selection = [0, 1]
    view.destroy_selected.clicks += 1
    assert "vm-1, vm-2" in view.confirm.question.object
    view.confirm.confirm.clicks += 1
    assert view.confirm.open
    assert "vm-2 (ada@example.org)" in view.confirm.question.object
    assert fleet.calls == []
    view.confirm.confirm.clicks += 1
    wait_until(lambda: fleet.calls, message="the removal started")
    assert fleet.calls == [("remove", (["vm-1", "vm-2"],), {"force": True})]


def test_cancelling_the_second_confirmation_destroys_nothing() -> None:
    fleet = FakeFleet()
    view = instances_view(fleet)
    view.table.tabulator.selection = [1]
    view.destroy_selected.clicks += 1
    view.confirm.confirm.clicks += 1
    view.confirm.cancel.clicks += 1
    assert not view.confirm.open and fleet.calls == []


def test_destroy_all_names_every_fleet_vm() -> None:
    fleet = FakeFleet(["vm-1", "vm-3"])
    view = instances_view(fleet)
    view.destroy_all.clicks += 1
    assert "Destroy all 2 VMs" in view.confirm.question.object
    assert "vm-1, vm-3" in view.confirm.question.object
    view.confirm.confirm.clicks += 1
    wait_until(lambda: fleet.calls, message="destroy all started")
    assert fleet.calls == [("destroy_all", (), {"force": False})]


def test_nothing_selected_says_so() -> None:
    view = instances_view(FakeFleet())
    view.destroy_selected.clicks += 1
    assert not view.confirm.open
    assert "Select the VMs" in view.notice.object


# Launch ------------------------------------------------------------------------------------


def test_launch_starts_the_fleet_and_streams_lines_on_drain() -> None:
    fleet = FakeFleet()
    machine = MachineConfig()
    state = LaunchState(fleet, machine, max_instances=10)
    notified: list[int] = []
    state.notify_with(lambda: notified.append(1))
    state.count = 3
    assert state.launch()
    assert fleet.calls == [("launch", (3,), {})]
    assert notified and state.log == ""  # buffered until drained
    state._on_progress(FleetProgress(7, "launch", "running", 3, 1, "started vm-001"))
    state.drain()
    assert state.log.splitlines() == ["planning", "started vm-001"]
    state._on_progress(FleetProgress(7, "launch", "succeeded", 3, 3, "started vm-003"))
    state.drain()
    assert state.message == "Launch #7 finished: 3 VMs launched."


def test_launch_is_refused_while_another_operation_runs() -> None:
    fleet = FakeFleet()
    fleet.busy = "Fleet operation #1 (launch of 2 VMs on local) is still running"
    state = LaunchState(fleet, MachineConfig())
    assert not state.launch()
    assert state.message == fleet.busy


def test_launch_bounds_and_machine_settings() -> None:
    machine = MachineConfig()
    state = LaunchState(FakeFleet(), machine, max_instances=4)
    with pytest.raises(ValueError):
        state.count = 5
    state.ami_id = "not-an-ami"
    assert not state.launch()
    assert state.message.startswith("Invalid machine setting")
    state.ami_id = "ami-0123456789abcdef0"
    state.machine_type = "t3.micro"
    assert state.launch()
    assert (machine.ami_id, machine.machine_type) == ("ami-0123456789abcdef0", "t3.micro")


def test_machine_settings_of_a_running_fleet_cannot_change() -> None:
    machine = MachineConfig()
    state = LaunchState(FakeFleet(["lablink-vm-001"]), machine)
    state.machine_type = "p3.2xlarge"
    assert not state.launch()
    assert "would replace its 1 running VMs" in state.message
    assert machine.machine_type == "g4dn.xlarge"
    state.machine_type = "g4dn.xlarge"
    assert state.launch()  # the same settings: more VMs of the same kind


# Credentials and overview -----------------------------------------------------------------


def test_the_credentials_form_saves_clears_and_shows_only_the_suffix(tmp_path: Path) -> None:
    view = CredentialsView(CredentialsState(AwsCredentialStore(tmp_path)))
    assert "not set" in view.status.object
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    view.key_id.value = "AKIAIOSFODNN7EXAMPLE"
    view.secret.value = secret
    view.save.clicks += 1
    assert (view.key_id.value, view.secret.value, view.token.value) == ("", "", "")
    assert "set, key id ending MPLE" in view.status.object
    assert secret not in view.status.object + view.notice.object
    assert "AKIAIOSFODNN7EXAMPLE" not in view.status.object + view.notice.object
    view.key_id.value = "AKIAIOSFODNN7EXAMPLE"
    view.secret.value = "too short"
    view.save.clicks += 1
    assert view.secret.value == ""
    assert "printable characters" in view.notice.object
    assert "too short" not in view.notice.object


def test_histogram_of_startup_times() -> None:
    assert histogram([]) == {"left": [], "right": [], "top": []}
    bins = histogram([1.0, 2.0, 2.5, 10.0], bins=3)
    assert sum(bins["top"]) == 4
    assert isinstance(pd.Series(bins["left"]).iloc[0], float)
