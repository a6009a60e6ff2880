"""What an AWS fleet operation tells its caller while Terraform runs: one line per event,
and how many instances are done."""

from __future__ import annotations

from lablink_core.fleet.base import LogCallback
from lablink_core.fleet.terraform import TerraformEvent, TerraformProgress

INSTANCE_ADDRESS = 'aws_instance.client["'
_COUNTED_KINDS = ("apply_start", "apply_progress", "apply_complete", "apply_errored")


def instance_address(hostname: str) -> str:
    return f'{INSTANCE_ADDRESS}{hostname}"]'


class ProgressRelay:
    """Turns Terraform events into ``log(line, done)``: done counts the instances created
    or destroyed so far (or only created, with ``creations_only``); change lines carry
    Terraform's running counts. Notes which instances were created."""

    def __init__(self, log: LogCallback, *, creations_only: bool = False) -> None:
        self._log = log
        self._creations_only = creations_only
        self.done = 0
        self.created: set[str] = set()

    def note(self, line: str) -> None:
        self._log(line, self.done)

    def __call__(self, event: TerraformEvent, progress: TerraformProgress) -> None:
        address = event.resource or ""
        if event.kind == "apply_complete" and address.startswith(INSTANCE_ADDRESS):
            if event.action in ("create", "replace"):
                self.created.add(address[len(INSTANCE_ADDRESS) : -2])
            if not self._creations_only or event.action in ("create", "replace"):
                self.done += 1
        if not event.message or event.kind == "version":
            return
        line = event.message
        if event.kind in _COUNTED_KINDS:
            line += (
                f" ({progress.created} created, {progress.destroyed} destroyed"
                f" of {progress.planned} planned)"
            )
        self._log(line, self.done)
