"""The fleet's vocabulary: what an operation reports, and what a provider must do.

The admin pages, notebooks and tests talk to :class:`lablink_core.fleet.fleet.Fleet`; the
side effects (processes on this machine, Terraform on AWS) live behind a
:class:`FleetProvider`, so tests can swap in a provider of their own.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from lablink_core.errors import InvalidInput, LablinkError

OPERATION_KINDS = ("launch", "scale", "remove", "destroy", "heal")
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

    def close(self) -> list[str]:
        """Stop what this process owns (local: its VM processes, whose hostnames it
        returns); AWS VMs outlive it."""
        ...


@runtime_checkable
class HealingProvider(Protocol):
    """A provider that can also reboot and replace one VM (what the healer asks for). A
    replacement keeps the VM's name and row, and leaves every other VM untouched."""

    def reboot(self, hostname: str, log: LogCallback) -> None: ...

    def replace(self, hostname: str, log: LogCallback) -> None: ...


@runtime_checkable
class ResumingProvider(Protocol):
    """A provider whose VMs stop with the server (local processes) and start with it again."""

    def resume(self, hostnames: Sequence[str], log: LogCallback) -> None: ...


class FleetOperationFailed(LablinkError):
    """The provider failed part-way. ``progress`` is the operation's final ("failed") state;
    the cause is chained. By then the lock is released and the VM table agrees with the
    provider again."""

    code = "fleet_operation_failed"

    def __init__(self, message: str, progress: FleetProgress) -> None:
        super().__init__(message)
        self.progress = progress


class FleetOperationHandle:
    """A fleet operation running in a background thread (see ``Fleet.start``).

    ``progress`` is the latest snapshot (None until the operation is recorded); ``result()``
    waits for the end and returns the final progress or raises what the operation raised.
    """

    def __init__(self) -> None:
        self._begun = threading.Event()
        self._finished = threading.Event()
        self._progress: FleetProgress | None = None
        self._result: FleetProgress | None = None
        self._error: BaseException | None = None

    @property
    def id(self) -> int | None:
        return self._progress.operation_id if self._progress is not None else None

    @property
    def progress(self) -> FleetProgress | None:
        return self._progress

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def result(self, timeout: float | None = None) -> FleetProgress:
        if not self._finished.wait(timeout):
            raise TimeoutError(f"fleet operation #{self.id} is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def wait_begun(self) -> None:
        """Block until the operation is recorded or has ended (refused, say)."""
        self._begun.wait()

    def update(self, progress: FleetProgress) -> None:
        self._progress = progress
        self._begun.set()

    def succeed(self, progress: FleetProgress) -> None:
        self._progress = self._result = progress
        self._finished.set()
        self._begun.set()

    def fail(self, error: BaseException) -> None:
        if isinstance(error, FleetOperationFailed):
            self._progress = error.progress
        self._error = error
        self._finished.set()
        self._begun.set()


# Planning rules (pure, so they are tested without a database) ---------------------------

ASSIGNED_STATUSES = ("assigned", "connected")
# Which unassigned VMs go first when scaling down: broken or retired ones, then the rest.
_REMOVAL_RANK = {"error": 0, "recycling": 0, "booting": 1, "available": 2}


def name_number(hostname: str, prefix: str) -> int | None:
    """n in ``{prefix}-{n}``, or None for a name of another form."""
    match = re.fullmatch(re.escape(prefix) + r"-(\d{1,9})", hostname)
    return int(match.group(1)) if match else None


def next_names(used: Iterable[str], prefix: str, count: int) -> list[str]:
    """``count`` new names numbered after the highest ``{prefix}-{n}`` ever used."""
    highest = max((n for h in used if (n := name_number(h, prefix)) is not None), default=0)
    return [f"{prefix}-{n:03d}" for n in range(highest + 1, highest + 1 + count)]


def _newest_first(vm: Mapping[str, Any]) -> tuple[Any, ...]:
    digits = re.search(r"(\d+)$", vm["hostname"])
    return (vm.get("created_at") or 0, int(digits.group(1)) if digits else -1, vm["hostname"])


def is_assigned(vm: Mapping[str, Any]) -> bool:
    return vm.get("user_email") is not None or vm.get("status") in ASSIGNED_STATUSES


def choose_removals(vms: Sequence[Mapping[str, Any]], count: int, *, force: bool) -> list[str]:
    """The ``count`` VMs to remove: unassigned ones first (broken, then booting, then
    available; newest first), then, only with ``force``, assigned ones (idle, newest first).

    Raises InvalidInput, saying how many are assigned, if ``count`` needs assigned VMs
    and ``force`` is off.
    """
    if count <= 0:
        return []
    free = sorted((v for v in vms if not is_assigned(v)), key=_newest_first, reverse=True)
    free.sort(key=lambda v: _REMOVAL_RANK.get(v.get("status", ""), 1))
    chosen = [v["hostname"] for v in free[:count]]
    missing = count - len(chosen)
    if missing <= 0:
        return chosen
    held = sorted((v for v in vms if is_assigned(v)), key=_newest_first, reverse=True)
    if not force:
        raise InvalidInput(
            f"Cannot remove {count} VMs without taking VMs from researchers: {len(held)} of "
            f"{len(vms)} are assigned and only {len(chosen)} are free. Use force to remove "
            f"{missing} assigned VM{'s' if missing != 1 else ''} too."
        )
    held.sort(key=lambda v: bool(v.get("in_use")))
    return chosen + [v["hostname"] for v in held[:missing]]
