"""The fleet's vocabulary: what an operation reports, and what a provider must do.

The admin pages, notebooks and tests talk to :class:`lablink_core.fleet.fleet.Fleet`; the
side effects (processes on this machine, Terraform on AWS) live behind a
:class:`FleetProvider`, so tests can swap in a provider of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

OPERATION_KINDS = ("launch", "scale", "remove", "destroy")
OPERATION_STATES = ("running", "succeeded", "failed")

LogCallback = Callable[[str, int], None]
"""What a provider calls as it works: ``log(line, done_count)``. Lines must hold no secret."""


@dataclass(frozen=True)
class FleetProgress:
    """A snapshot of one operation: what the dashboard's progress bar and log show."""

    operation_id: int
    kind: str  # one of OPERATION_KINDS
    state: str  # one of OPERATION_STATES
    planned: int  # how many VM creations/removals this operation will do
    done: int
    message: str  # latest log line (never a secret)
    error: str | None = None  # why it failed, for a person; None unless state == "failed"

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def fraction(self) -> float:
        """0.0-1.0 for a progress bar (1.0 once finished, even if nothing was planned)."""
        if self.finished or self.planned <= 0:
            return 1.0 if self.finished else 0.0
        return min(1.0, self.done / self.planned)


ProgressCallback = Callable[[FleetProgress], None]


class FleetProvider(Protocol):
    """Creates and deletes VMs. Every method may block; the Fleet calls them one at a time."""

    name: str  # "local" | "aws"; stored as the VM rows' provider

    def create(self, hostnames: Sequence[str], log: LogCallback) -> None:
        """Bring up one VM per hostname; raise on failure (some may exist by then)."""
        ...

    def delete(self, hostnames: Sequence[str], log: LogCallback) -> None:
        """Take these VMs down; hostnames the provider does not have are ignored."""
        ...

    def delete_all(self, log: LogCallback) -> None:
        """Every VM and the shared resources (security group, ...)."""
        ...

    def instances(self) -> set[str]:
        """The hostnames the provider has right now."""
        ...

    def close(self) -> None:
        """Stop what this process owns (local: its VM processes); AWS VMs outlive it."""
        ...
