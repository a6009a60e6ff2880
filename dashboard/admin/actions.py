"""What the instances page does, without widgets: destroy, release, export, fleet progress.

:class:`InstanceActions` takes the core services it needs (an allocator, a fleet or None), so
a notebook can drive it as well as a page. Fleet operations run in the fleet's background
thread; their progress lands in the ``progress`` and ``message`` params.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import param

from lablink_core.errors import LablinkError
from lablink_core.fleet.base import FleetOperationHandle, FleetProgress, ProgressCallback

log = logging.getLogger(__name__)

ASSIGNED_STATUSES = ("assigned", "connected")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class FleetLike(Protocol):
    """The part of :class:`lablink_core.fleet.fleet.Fleet` the admin pages use."""

    def launch(self, count: int, *, on_progress: ProgressCallback | None = ...) -> Any: ...

    def remove(self, hostnames: Sequence[str], **kwargs: Any) -> Any: ...

    def destroy_all(self, **kwargs: Any) -> Any: ...

    def vms(self) -> list[dict[str, Any]]: ...

    def start(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def operations(self, limit: int = ...) -> list[dict[str, Any]]: ...

    def running_operation(self) -> dict[str, Any] | None: ...


class AllocatorLike(Protocol):
    def release_hostname(self, hostname: object) -> None: ...


@dataclass(frozen=True)
class Selection:
    """VMs picked for an action, split by whether a researcher holds them."""

    free: list[str]
    assigned: list[tuple[str, str]]  # (hostname, email)

    @property
    def hostnames(self) -> list[str]:
        return self.free + [name for name, _ in self.assigned]


def split_selection(rows: pd.DataFrame) -> Selection:
    """Free and assigned VMs among ``rows`` (a slice of the live table's frame)."""
    free: list[str] = []
    assigned: list[tuple[str, str]] = []
    for hostname, row in rows.iterrows():
        held = bool(row["user_email"]) or row["status"] in ASSIGNED_STATUSES
        if held:
            assigned.append((str(hostname), str(row["user_email"])))
        else:
            free.append(str(hostname))
    return Selection(free, assigned)


def csv_text(frame: pd.DataFrame) -> str:
    """The frame as CSV; text cells that a spreadsheet would run as formulas are quoted."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = safe[column].map(_defuse)
    buffer = io.StringIO()
    safe.to_csv(buffer, index=False)
    return buffer.getvalue()


def _defuse(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class InstanceActions(param.Parameterized):
    """Destroy, release and export, for one admin session (or a notebook)."""

    message = param.String(default="", doc="What the last action did, or why it was refused.")
    progress = param.ClassSelector(
        class_=FleetProgress,
        default=None,
        allow_None=True,
        doc="The latest progress of the fleet operation this session started.",
    )

    def __init__(
        self,
        allocator: AllocatorLike,
        fleet: FleetLike | None,
        *,
        on_change: Callable[[], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self._allocator = allocator
        self._fleet = fleet
        self._on_change = on_change or (lambda: None)
        self.handle: FleetOperationHandle | None = None

    @property
    def has_fleet(self) -> bool:
        return self._fleet is not None

    def fleet_hostnames(self) -> list[str]:
        """Every VM the fleet manages (what "Destroy all" takes down)."""
        if self._fleet is None:
            return []
        return [str(vm["hostname"]) for vm in self._fleet.vms()]

    def destroy(self, hostnames: Sequence[str], *, force: bool) -> bool:
        """Start removing ``hostnames`` in the background; False (and a message) if refused."""
        if self._fleet is None:
            self.message = "No fleet is configured in this server, so VMs cannot be destroyed."
            return False
        fleet = self._fleet
        return self._start(lambda: fleet.start(fleet.remove, list(hostnames), **self._kw(force)))

    def destroy_all(self, *, force: bool) -> bool:
        if self._fleet is None:
            self.message = "No fleet is configured in this server, so VMs cannot be destroyed."
            return False
        fleet = self._fleet
        return self._start(lambda: fleet.start(fleet.destroy_all, **self._kw(force)))

    def release(self, hostnames: Sequence[str]) -> list[str]:
        """Free these VMs whoever holds them; returns the ones released."""
        released: list[str] = []
        problems: list[str] = []
        for hostname in hostnames:
            try:
                self._allocator.release_hostname(hostname)
                released.append(hostname)
            except LablinkError as error:
                problems.append(error.message)
        parts = [f"Released {', '.join(released)}."] if released else []
        self.message = " ".join(parts + problems) or "Nothing to release."
        self._on_change()
        return released

    def _kw(self, force: bool) -> dict[str, Any]:
        return {"force": force, "on_progress": self._record_progress}

    def _start(self, start: Callable[[], FleetOperationHandle]) -> bool:
        try:
            self.handle = start()
        except LablinkError as error:
            self.message = error.message
            return False
        progress = self.handle.progress
        self.message = f"Started: {progress.message}" if progress is not None else "Started."
        return True

    def _record_progress(self, progress: FleetProgress) -> None:
        """Called from the fleet's thread."""
        self.progress = progress
        if progress.state == "failed":
            self.message = f"Fleet operation #{progress.operation_id} failed: {progress.error}"
        elif progress.finished:
            self.message = f"Fleet operation #{progress.operation_id} finished: {progress.message}"
        self._on_change()


def in_background(work: Callable[[], object], name: str = "lablink-admin-action") -> None:
    """Run ``work`` off the event loop (fleet.start waits for the fleet lock and the DB)."""

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("an admin action failed")

    threading.Thread(target=run, name=name, daemon=True).start()
