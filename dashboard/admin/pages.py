"""The admin pages; each function builds one session's page from a runtime.

The views take core services, not the runtime, so a notebook can build them from
:func:`lablink_core.services.open_services` too. A view that follows live data subscribes in
``attach()`` and unsubscribes when its session is destroyed.
"""

from __future__ import annotations

from typing import Any

import panel as pn

from dashboard.admin.access import AccessState, AccessView, ScheduleState, ScheduleView
from dashboard.admin.actions import InstanceActions
from dashboard.admin.create import CreateView
from dashboard.admin.credentials import CredentialsState, CredentialsView
from dashboard.admin.instances import InstancesView
from dashboard.admin.launch import LaunchState
from dashboard.admin.overview import OverviewState, OverviewView
from dashboard.admin.widgets import notice
from dashboard.live import live_table
from dashboard.runtime import Runtime
from lablink_core.aws_credentials import AwsCredentialStore
from lablink_core.services import data_dir


def _fleet(runtime: Runtime) -> Any:
    """The process's fleet, or None when the server runs without one."""
    return getattr(runtime, "fleet", None)


def _no_fleet_note(runtime: Runtime, what: str) -> list[Any]:
    if _fleet(runtime) is not None:
        return []
    reason = getattr(runtime, "fleet_error", None) or "no fleet provider is configured"
    return [notice(f"This server has no fleet ({reason}), so {what}.", "warning")]


def _page(title: str, *parts: Any) -> pn.Column:
    return pn.Column(pn.pane.Markdown(f"# {title}"), *parts, sizing_mode="stretch_width")


def overview_page(runtime: Runtime) -> Any:
    """/admin: VM counts, assignments over time, start-up times, links."""
    state = OverviewState(runtime.services.engine, runtime.config.db.table_name)
    view = OverviewView(state)
    view.attach(executor=runtime.executor)
    return _page("LabLink admin", view)


def instances_page(runtime: Runtime) -> Any:
    """/admin/instances: the live VM table with export, release and destroy."""
    table = live_table(runtime)
    if table.reads == 0:
        table.refresh()  # the process's first page: show rows at once, not after a tick
    actions = InstanceActions(
        runtime.services.allocator, _fleet(runtime), on_change=table.request_refresh
    )
    view = InstancesView(table, actions)
    view.attach()
    return _page("Instances", *_no_fleet_note(runtime, "VMs cannot be destroyed here"), view)


def create_page(runtime: Runtime) -> Any:
    """/admin/create: launch VMs and follow the fleet operation's progress."""
    state = LaunchState(
        _fleet(runtime),
        runtime.config.machine,
        max_instances=runtime.config.fleet.max_instances,
    )
    view = CreateView(state)
    view.attach(executor=runtime.executor)
    return _page("Create instances", *_no_fleet_note(runtime, "VMs cannot be launched here"), view)


def access_page(runtime: Runtime) -> Any:
    """/admin/access: who may take a VM, and scheduled teardowns."""
    services, user = runtime.services, runtime.admin.user
    access = AccessView(AccessState(services.access, user))
    schedules = ScheduleView(ScheduleState(services.schedules, user))
    return _page("Access and schedules", pn.Row(access, schedules, sizing_mode="stretch_width"))


def credentials_page(runtime: Runtime) -> Any:
    """/admin/set-aws-credentials: store the AWS keys Terraform uses."""
    store = AwsCredentialStore(data_dir(runtime.config))
    view = CredentialsView(CredentialsState(store))
    return _page("AWS credentials", view)
