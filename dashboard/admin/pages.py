"""The admin pages; each function builds one session's page from a runtime.

The views take core services, not the runtime, so a notebook can build them from
:func:`lablink_core.services.open_services` too. A view that follows live data subscribes in
``attach()`` and unsubscribes when its session is destroyed.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from dashboard.admin.access import (
    AccessState,
    AccessView,
    ScheduleState,
    ScheduleView,
    access_summary,
)
from dashboard.admin.actions import InstanceActions
from dashboard.admin.create import CreateView
from dashboard.admin.credentials import CredentialsState, CredentialsView
from dashboard.admin.instances import InstancesView
from dashboard.admin.launch import LaunchState
from dashboard.admin.overview import OverviewState, OverviewView
from dashboard.admin.vm_detail import DetailServices, VMDetailState
from dashboard.admin.vm_detail_view import VMDetailView
from dashboard.admin.widgets import notice
from dashboard.live import live_table
from dashboard.look import html_pane
from dashboard.runtime import Runtime
from lablink_core.aws_credentials import AwsCredentialStore
from lablink_core.prices import fleet_cost
from lablink_core.services import data_dir


def _fleet(runtime: Runtime) -> Any:
    """The process's fleet, or None when the server runs without one."""
    return getattr(runtime, "fleet", None)


def _no_fleet_note(runtime: Runtime, what: str) -> list[Any]:
    if _fleet(runtime) is not None:
        return []
    reason = getattr(runtime, "fleet_error", None) or "no fleet provider is configured"
    return [notice(f"This server has no fleet ({reason}), so {what}.", "warning")]


def _page(lead: str, *parts: Any) -> pn.Column:
    """A page's body: one line on what it is for (the header names the page), then its parts."""
    intro = html_pane(f'<p class="ll-lead">{html.escape(lead)}</p>', sizing_mode="stretch_width")
    return pn.Column(intro, *parts, sizing_mode="stretch_width")


def overview_page(runtime: Runtime) -> Any:
    """/admin: VM counts, assignments over time, start-up times, links."""
    services, config, fleet = runtime.services, runtime.config, _fleet(runtime)
    state = OverviewState(services.engine, config.db.table_name, services.waitlist)
    cost = None
    if fleet is not None:
        provider, machine, prices = fleet.provider.name, config.machine, config.fleet.hourly_prices
        cost = lambda count: fleet_cost(provider, machine.machine_type, count, prices)  # noqa: E731
    view = OverviewView(state, cost)
    table = live_table(runtime)
    if table.reads == 0:
        table.refresh()
    view.attach(executor=runtime.executor, live=table)
    return _page(
        "The fleet at a glance: free VMs, researchers, the queue and the cost.",
        pn.pane.HTML(access_summary(services.access.rule()), sizing_mode="stretch_width"),
        view,
    )


def instances_page(runtime: Runtime) -> Any:
    """/admin/instances: the live VM table with export, release and destroy."""
    table = live_table(runtime)
    if table.reads == 0:
        table.refresh()  # the process's first page: show rows at once, not after a tick
    actions = InstanceActions(
        runtime.services.allocator, _fleet(runtime), on_change=table.request_refresh
    )
    services = runtime.services
    detail = VMDetailView(
        VMDetailState(
            DetailServices(
                services.registry,
                services.logs,
                services.actions,
                services.enrolment,
                _fleet(runtime),
                runtime.config.app.unresponsive_after_seconds,
            )
        ),
        executor=runtime.admin_executor,
        on_change=table.request_refresh,
    )
    view = InstancesView(table, actions, detail)
    view.attach()
    lead = "Every VM, live. Tick VMs to release or destroy them; Details shows one VM's log."
    return _page(lead, *_no_fleet_note(runtime, "VMs cannot be destroyed here"), view)


def create_page(runtime: Runtime) -> Any:
    """/admin/create: launch VMs and follow the fleet operation's progress."""
    fleet = _fleet(runtime)
    config = runtime.config
    state = LaunchState(
        fleet,
        config.machine,
        max_instances=config.fleet.max_instances,
        prices=config.fleet.hourly_prices,
        provider=fleet.provider.name if fleet is not None else "",
        region=config.app.region,
    )
    view = CreateView(state)
    view.attach(executor=runtime.executor)
    lead = "Launch VMs and follow the fleet operation as it runs."
    return _page(lead, *_no_fleet_note(runtime, "VMs cannot be launched here"), view)


def access_page(runtime: Runtime) -> Any:
    """/admin/access: who may take a VM, and scheduled teardowns."""
    services, user = runtime.services, runtime.admin.user
    access = AccessView(AccessState(services.access, user))
    schedules = ScheduleView(ScheduleState(services.schedules, user))
    lead = "Who may take a VM, and when the whole fleet is torn down."
    return _page(lead, pn.Row(access, schedules, sizing_mode="stretch_width"))


def credentials_page(runtime: Runtime) -> Any:
    """/admin/set-aws-credentials: store the AWS keys Terraform uses."""
    store = AwsCredentialStore(data_dir(runtime.config))
    view = CredentialsView(CredentialsState(store))
    lead = "The AWS keys Terraform uses for an AWS fleet. They are never shown again."
    return _page(lead, view)
