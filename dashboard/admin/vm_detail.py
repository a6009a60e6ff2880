"""One VM up close, opened from the instance table: its state and why, its last log lines,
its action history, and what an admin can do to it (reboot or replace it through the fleet,
revoke its credential), each behind a confirmation naming the VM.

:class:`VMDetailState` calls lablink_core (the registry, the log ring, the action log, the
enrolment, the fleet) and holds what was read; :class:`VMDetailView` shows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import param

from lablink_core.errors import LablinkError
from lablink_core.fleet.base import FleetProgress

LOG_LINES_SHOWN = 200
ACTIONS_SHOWN = 20
ADMIN_REASON = "asked by an admin on the instance page"


class HealingFleet(Protocol):
    """The part of :class:`lablink_core.fleet.fleet.Fleet` the detail view uses."""

    def heal(self, hostname: str, action: str, *, reason: str, actor: str = ...) -> Any: ...

    def start(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class DetailServices:
    """The core services one VM's detail reads and acts through (``fleet`` may be None)."""

    registry: Any  # lablink_core.vms.VMRegistry
    logs: Any  # lablink_core.vm_logs.VMLogStore
    actions: Any  # lablink_core.vm_actions.ActionLog
    enrolment: Any  # lablink_core.enrolment.VMEnrolment
    fleet: HealingFleet | None = None
    unresponsive_after: float = 120.0


class VMDetailState(param.Parameterized):
    """What the detail view shows about one VM, and the admin's actions on it."""

    hostname = param.String(default="", doc="The VM shown; empty when the view is closed.")
    vm = param.Dict(default={}, doc="The VM's row as the registry lists it.")
    log_lines = param.List(default=[], doc="Its last log lines, oldest first, redacted.")
    history = param.List(default=[], doc="Its latest actions (healer, reclaim, admin), newest 1st.")
    message = param.String(default="", doc="What the last action did, or why it was refused.")
    read_at = param.Date(default=None, allow_None=True, doc="When the VM was last read.")

    def __init__(self, services: DetailServices, **params: Any) -> None:
        super().__init__(**params)
        self._services = services

    @property
    def can_heal(self) -> bool:
        return self._services.fleet is not None

    def read(self, hostname: str) -> dict[str, Any]:
        """Read one VM (blocking: call off the event loop); the result is for :meth:`show`."""
        services = self._services
        vm = services.registry.get(hostname, unresponsive_after=services.unresponsive_after)
        lines = services.logs.tail(hostname, LOG_LINES_SHOWN)
        history = services.actions.for_vm(hostname, ACTIONS_SHOWN)
        return {"hostname": hostname, "vm": vm, "log_lines": lines, "history": history}

    def show(self, values: dict[str, Any]) -> None:
        self.param.update(**values, read_at=dt.datetime.now(dt.UTC))

    def close(self) -> None:
        self.param.update(hostname="", vm={}, log_lines=[], history=[], message="")

    def heal(self, action: str, on_progress: Callable[[FleetProgress], None]) -> bool:
        """Start a reboot or a replacement of the VM shown (recorded, with the admin as actor)."""
        fleet = self._services.fleet
        if fleet is None:
            self.message = "This server has no fleet, so VMs cannot be repaired here."
            return False
        try:
            fleet.start(
                fleet.heal,
                self.hostname,
                action,
                reason=ADMIN_REASON,
                actor="admin",
                on_progress=on_progress,
            )
        except LablinkError as error:
            self.message = error.message
            return False
        words = "Rebooting" if action == "reboot" else "Replacing"
        self.message = f"{words} {self.hostname}..."
        return True

    def revoke(self) -> bool:
        """Make the VM's credential (and any enrolment token) useless from now on."""
        try:
            revoked = bool(self._services.enrolment.revoke(self.hostname))
        except LablinkError as error:
            self.message = error.message
            return False
        self.message = (
            f"Revoked the credential of {self.hostname}: it can no longer call in."
            if revoked
            else f"{self.hostname} is no longer in the table."
        )
        return revoked
