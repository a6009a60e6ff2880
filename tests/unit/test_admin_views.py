"""The admin pages' new parts without a server: the create page's where-and-cost and its one
progress state, the overview's numbers and queue, the per-VM detail's actions, and a new
question clearing the last message."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dashboard.admin.create import CreateView
from dashboard.admin.frames import vm_frame
from dashboard.admin.launch import LaunchState
from dashboard.admin.numbers import cards_html, fleet_numbers, waiting_html
from dashboard.admin.vm_detail import ADMIN_REASON, DetailServices, VMDetailState
from dashboard.admin.vm_detail_view import VMDetailView, history_html, log_html
from dashboard.server import shutdown_summary
from lablink_core.config import MachineConfig
from lablink_core.fleet.base import FleetProgress
from lablink_core.prices import fleet_cost
from tests.unit.test_admin_pages import NOW, FakeFleet, instances_view


def test_a_local_create_page_says_so_and_hides_the_aws_fields() -> None:
    view = CreateView(LaunchState(FakeFleet(), MachineConfig(), provider="local"))
    assert "no cloud charges" in view.where.object
    assert not view.machine_box.visible and view.cost.object == ""


def test_an_aws_create_page_names_the_region_and_the_cost() -> None:
    state = LaunchState(FakeFleet(), MachineConfig(), provider="aws", region="eu-west-1")
    view = CreateView(state)
    assert "AWS, region eu-west-1" in view.where.object and view.machine_box.visible
    state.count = 3
    assert "3 g4dn.xlarge VMs at $0.53/h each: about $1.58/h" in view.cost.object


def test_the_create_page_shows_one_progress_state() -> None:
    state = LaunchState(FakeFleet(), MachineConfig(), provider="local")
    view = CreateView(state)
    running = {"id": 3, "kind": "launch", "provider": "local", "planned": 3, "done": 0}
    state.progress = FleetProgress(3, "launch", "succeeded", 3, 3, "started vm-003")
    state.show_operations([], running)  # a read from before the launch finished
    assert view.running.object == ""
    state.show_operations([], {**running, "id": 4})
    assert "Another fleet operation, #4" in view.running.object


def test_a_new_question_replaces_the_last_message() -> None:
    view = instances_view(FakeFleet(["vm-1"]))
    view.destroy_selected.clicks += 1
    assert "Select the VMs" in view.notice.object
    view.table.tabulator.selection = [0]
    view.destroy_selected.clicks += 1
    assert view.confirm.open and view.notice.object == ""


def test_the_overview_numbers_and_queue() -> None:
    rows = [
        {"hostname": "a", "status": "available", "last_heard_at": NOW, "created_at": NOW},
        {"hostname": "b", "status": "assigned", "user_email": "x@y.org"},
        {"hostname": "c", "status": "available", "unresponsive": True},
    ]
    numbers = fleet_numbers(vm_frame(rows, now=NOW), waiting=2)
    assert (numbers.total, numbers.free, numbers.assigned, numbers.trouble) == (3, 1, 1, 1)
    html = cards_html(numbers, fleet_cost("aws", "g5.xlarge", 3))
    assert "$3.02" in html and "ll-kpi-trouble" in html
    assert "no cloud charges" in cards_html(numbers, fleet_cost("local", "", 3))
    since = NOW - dt.timedelta(minutes=4)
    queue = waiting_html([{"position": 1, "email": "<b>@x.org", "created_at": since}], NOW)
    assert "&lt;b&gt;@x.org" in queue and "4 min" in queue


class FakeRegistry:
    def get(self, hostname: str, *, unresponsive_after: float = 120.0) -> dict[str, Any]:
        return {"hostname": hostname, "status": "available", "provider": "local"}


class FakeLogs:
    def tail(self, hostname: str, limit: int = 500) -> list[dict[str, Any]]:
        return [{"source": "agent", "line": "registered <ok>", "at": NOW}]


class FakeActions:
    def for_vm(self, hostname: str, limit: int = 50) -> list[dict[str, Any]]:
        return [{"action": "reboot", "actor": "healer", "reason": "silent", "at": NOW}]


class FakeEnrolment:
    def __init__(self) -> None:
        self.revoked: list[str] = []

    def revoke(self, hostname: str) -> bool:
        self.revoked.append(hostname)
        return True


class HealingFleet(FakeFleet):
    def heal(self, hostname: str, action: str, **kwargs: Any) -> None: ...


def detail_view(fleet: FakeFleet | None) -> tuple[VMDetailView, FakeEnrolment]:
    enrolment = FakeEnrolment()
    services = DetailServices(FakeRegistry(), FakeLogs(), FakeActions(), enrolment, fleet)
    view = VMDetailView(VMDetailState(services))
    view.state.show(view.state.read("vm-7"))
    return view, enrolment


def test_the_detail_shows_the_vm_and_reboots_it_after_a_question_naming_it() -> None:
    fleet = HealingFleet()
    view, _ = detail_view(fleet)
    assert "registered &lt;ok&gt;" in view.log.object and "reboot by healer" in view.history.object
    view.reboot.clicks += 1
    assert "Reboot vm-7?" in view.confirm.question.object and fleet.calls == []
    view.confirm.confirm.clicks += 1
    assert fleet.calls == [("heal", ("vm-7", "reboot"), {"reason": ADMIN_REASON, "actor": "admin"})]


def test_revoking_a_credential_asks_first_and_says_what_happened() -> None:
    view, enrolment = detail_view(None)
    assert view.reboot.disabled  # no fleet: nothing to reboot with
    view.revoke.clicks += 1
    assert "Revoke the credential of vm-7?" in view.confirm.question.object
    view.confirm.cancel.clicks += 1
    assert enrolment.revoked == []
    view.revoke.clicks += 1
    view.confirm.confirm.clicks += 1
    assert enrolment.revoked == ["vm-7"] and "can no longer call in" in view.notice.object


def test_empty_logs_and_history_say_so_and_the_summary_line() -> None:
    assert "no log lines" in log_html([]) and "No action" in history_html([])
    assert (
        shutdown_summary(3, True)
        == "LabLink stopped: 3 local VMs stopped, private database stopped."
    )
    assert (
        shutdown_summary(1, False) == "LabLink stopped: 1 local VM stopped, database left running."
    )
