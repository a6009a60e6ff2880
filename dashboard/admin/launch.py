"""/admin/create, without widgets: launch VMs, collect the operation's progress and log.

Progress arrives on the fleet's thread; it is buffered here and moved into the params by
:meth:`LaunchState.drain`, which the view calls on its session's tick (a notebook may call
it whenever it likes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import param

from dashboard.admin.actions import FleetLike
from lablink_core.config import MachineConfig
from lablink_core.errors import InvalidInput, LablinkError
from lablink_core.fleet.base import FleetOperationHandle, FleetProgress
from lablink_core.prices import FleetCost, fleet_cost

LOG_LINES_KEPT = 400
MACHINE_KEYS = ("machine_type", "ami_id", "image", "repository")


class LaunchState(param.Parameterized):
    """One admin's launch form and the operation it follows."""

    count = param.Integer(default=1, bounds=(1, 500), doc="How many VMs to launch.")
    machine_type = param.String(default="", doc="EC2 instance type of the new VMs.")
    ami_id = param.String(default="", doc="AMI of the new VMs.")
    image = param.String(default="", doc="Container image the new VMs run.")
    repository = param.String(default="", doc="Optional Git repository the VMs clone.")
    progress = param.ClassSelector(
        class_=FleetProgress,
        default=None,
        allow_None=True,
        doc="Latest progress of the launch this session started.",
    )
    log = param.String(default="", doc="Output lines of that launch (the last few hundred).")
    message = param.String(default="", doc="What happened to the last request, for the admin.")
    operations = param.List(default=[], doc="The latest fleet operations, newest first.")
    running = param.Dict(
        default=None, allow_None=True, doc="The fleet operation running now (any process)."
    )
    provider = param.String(default="", doc="Where VMs are launched: 'local', 'aws', or ''.")
    region = param.String(default="", doc="The AWS region of an AWS fleet.")

    def __init__(
        self,
        fleet: FleetLike | None,
        machine: MachineConfig,
        *,
        max_instances: int = 500,
        on_progress: Callable[[], None] | None = None,
        prices: Mapping[str, object] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self._fleet = fleet
        self._machine = machine
        self._prices = dict(prices or {})
        self._notify = on_progress or self.drain
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._latest: FleetProgress | None = None
        self.handle: FleetOperationHandle | None = None
        self.param.count.bounds = (1, max_instances)
        self.param.update(
            machine_type=machine.machine_type,
            ami_id=machine.ami_id,
            image=machine.image,
            repository=machine.repository or "",
        )

    def notify_with(self, notify: Callable[[], None]) -> None:
        """Who to tell (from the fleet's thread) that progress is waiting for :meth:`drain`."""
        self._notify = notify

    @property
    def has_fleet(self) -> bool:
        return self._fleet is not None

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    def where(self) -> str:
        """Where a launch starts VMs, and whether it costs money, in one line."""
        if self.is_local:
            return "Local fleet: processes on this machine, no cloud charges."
        if self.provider == "aws":
            return (
                f"AWS, region {self.region}: each VM is an EC2 instance billed to the AWS "
                "account until it is destroyed."
            )
        return "No fleet: this server cannot launch VMs."

    def cost(self) -> FleetCost:
        """The estimated hourly cost of the VMs the form would launch."""
        return fleet_cost(self.provider, self.machine_type.strip(), self.count, self._prices)

    def launch(self) -> bool:
        """Start the launch in the fleet's thread; False (and ``message``) when refused."""
        if self._fleet is None:
            self.message = "No fleet is configured in this server: VMs cannot be launched here."
            return False
        try:
            self._apply_machine()
            self.handle = self._fleet.start(
                self._fleet.launch, self.count, on_progress=self._on_progress
            )
        except LablinkError as error:
            self.message = error.message
            return False
        except ValueError as error:  # a machine setting the config refuses
            self.message = f"Invalid machine setting: {error}"
            return False
        self.message = f"Launching {self.count} VM{'s' if self.count != 1 else ''}."
        return True

    def _apply_machine(self) -> None:
        """Validate the form's machine settings and make them the process's settings, which
        the fleet's provider reads when it creates VMs."""
        values = {
            "machine_type": self.machine_type.strip(),
            "ami_id": self.ami_id.strip(),
            "image": self.image.strip(),
            "repository": self.repository.strip() or None,
        }
        MachineConfig(**values)  # raises ValueError on a value the config refuses
        changed = {k: v for k, v in values.items() if getattr(self._machine, k) != v}
        if not changed:
            return
        running = len(self._fleet.vms()) if self._fleet is not None else 0
        if running:
            # Every VM of a fleet shares these settings: changing them would make Terraform
            # replace the running VMs, researchers' included.
            raise InvalidInput(
                f"Machine settings apply to the whole fleet, and changing them would replace its "
                f"{running} running VMs. Launch with the current settings, or destroy the "
                f"fleet first. (Changed: {', '.join(sorted(changed))}.)"
            )
        self._machine.param.update(**changed)

    def shown_running(self) -> dict[str, Any] | None:
        """The running operation to show beside this session's own progress: only another
        one (this session's own is shown by its progress, which is newer than any read)."""
        running, mine = self.running, self.progress
        if running is None or (mine is not None and running.get("id") == mine.operation_id):
            return None
        return running

    def _on_progress(self, progress: FleetProgress) -> None:
        """The fleet's thread: buffer, then ask for a drain."""
        with self._lock:
            self._latest = progress
            if progress.message and not progress.finished:
                self._lines.append(progress.message)
            if progress.error:
                self._lines.append(f"failed: {progress.error}")
        self._notify()

    def drain(self) -> None:
        """Move buffered progress into the params (the view calls this on its tick)."""
        with self._lock:
            lines, self._lines = self._lines, []
            latest, self._latest = self._latest, None
        if lines:
            kept = (self.log.splitlines() + lines)[-LOG_LINES_KEPT:]
            self.log = "\n".join(kept)
        if latest is None:
            return
        self.progress = latest
        if latest.state == "failed":
            self.message = f"Launch #{latest.operation_id} failed: {latest.error}"
        elif latest.finished:
            self.message = f"Launch #{latest.operation_id} finished: {latest.done} VMs launched."

    def read_operations(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The latest operations and the running one (blocking: call off the event loop)."""
        if self._fleet is None:
            return [], None
        return self._fleet.operations(10), self._fleet.running_operation()

    def show_operations(
        self, operations: list[dict[str, Any]], running: dict[str, Any] | None
    ) -> None:
        self.operations = operations
        self.running = running
