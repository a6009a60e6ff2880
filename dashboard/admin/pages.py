"""The admin pages by URL; each function builds one session's page from a runtime."""

from __future__ import annotations

from typing import Any

import panel as pn

from dashboard.runtime import Runtime


def _stub(title: str) -> Any:
    return pn.Column(pn.pane.Markdown(f"# {title}\n\nThis page is being built."))


def overview_page(runtime: Runtime) -> Any:
    """/admin: VM counts, assignments over time, start-up times, links."""
    return _stub("LabLink admin")


def instances_page(runtime: Runtime) -> Any:
    """/admin/instances: the live VM table with export, release and destroy."""
    return _stub("Instances")


def create_page(runtime: Runtime) -> Any:
    """/admin/create: launch VMs and follow the fleet operation's progress."""
    return _stub("Create instances")


def credentials_page(runtime: Runtime) -> Any:
    """/admin/set-aws-credentials: store the AWS keys Terraform uses."""
    return _stub("AWS credentials")
