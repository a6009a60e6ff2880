"""The live VM table: one server-wide snapshot of the VM table (a
:class:`~dashboard.shared_reader.SharedReader`), re-read when the database says something
changed, pushed to every admin session that subscribed; each applies it to its own widgets
on its document's next tick (see :mod:`dashboard.admin.table`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import pandas as pd
import param

from dashboard.admin.frames import row_changes, vm_frame
from dashboard.shared_reader import (
    ListenerLike,
    SharedReader,
    close_process_reader,
    process_reader,
)
from lablink_core.listener import Notification

log = logging.getLogger(__name__)

SnapshotCallback = Callable[[pd.DataFrame], None]
Changes = dict[str, list[tuple[Any, Any]]]


class VMSource(Protocol):
    """What the table reads: :class:`lablink_core.vms.VMRegistry` or a fake."""

    def list(self, *, unresponsive_after: float = ...) -> list[dict[str, Any]]: ...


class ActionSource(Protocol):
    """Where the reasons come from: :class:`lablink_core.vm_actions.ActionLog` or a fake."""

    def latest_by_vm(self, hostnames: Any = ...) -> dict[str, dict[str, Any]]: ...


class LiveVMTable(SharedReader[pd.DataFrame]):
    """The process's snapshot of the VM table, kept fresh for the sessions that subscribe."""

    unresponsive_after = param.Number(
        default=120.0, bounds=(1.0, 86400.0), doc="Silence after which a VM is unresponsive."
    )

    thread_name = "lablink-live-table"

    def __init__(
        self,
        source: VMSource,
        listener: ListenerLike | None = None,
        *,
        actions: ActionSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        **params: Any,
    ) -> None:
        super().__init__(vm_frame([]), listener, clock=clock, **params)
        self._source = source
        self._actions = actions
        self._step_changes: tuple[pd.DataFrame, Changes | None] | None = None

    def wants(self, notification: Notification) -> bool:
        return notification.what != "waitlist"

    def _read(self) -> pd.DataFrame:
        rows = self._source.list(unresponsive_after=self.unresponsive_after)
        latest = self._actions.latest_by_vm() if self._actions is not None and rows else {}
        return vm_frame(rows, actions=latest)

    def changes(self, old: pd.DataFrame, new: pd.DataFrame) -> Changes | None:
        """:func:`~dashboard.admin.frames.row_changes` of ``old`` -> ``new``, computed once
        for every session when that is the latest step (sessions are usually in step)."""
        with self._condition:
            latest = old is self._previous and new is self._snapshot
            cached = self._step_changes
        if latest and cached is not None and cached[0] is new:
            return cached[1]
        result = row_changes(old, new)
        if latest:
            with self._condition:
                self._step_changes = (new, result)
        return result


def live_table(runtime: Any) -> LiveVMTable:
    """The process's one live table for ``runtime`` (a :class:`dashboard.runtime.Runtime` or
    anything with its ``services``, ``listener`` and ``config``), started on first use."""

    def make() -> LiveVMTable:
        return LiveVMTable(
            runtime.services.registry,
            runtime.listener,
            actions=runtime.services.actions,
            unresponsive_after=runtime.config.app.unresponsive_after_seconds,
        )

    return process_reader(runtime, "live-table", make)


def close_live_table(runtime: object) -> None:
    """Stop ``runtime``'s live table, if it has one (server shutdown, tests)."""
    close_process_reader(runtime, "live-table")
