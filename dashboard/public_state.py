"""What every researcher page of a process shows, read once for all of them: the free VM
count, the queue's positions, the next teardown, and each assigned VM's session end and
repairs. A :class:`~dashboard.shared_reader.SharedReader`: re-read when a notification says
something changed (coalesced) and every few seconds, never once per page.

It also keeps alive the queue entries of this process's open pages, in one statement per
read (an entry whose page is gone expires, see :mod:`lablink_core.waitlist`).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from dashboard.shared_reader import (
    ListenerLike,
    SharedReader,
    close_process_reader,
    process_reader,
)
from lablink_core.reclaim import HeldVM
from lablink_core.schedules import Teardown


@dataclass(frozen=True)
class PublicSnapshot:
    """One read of what researcher pages show."""

    free: int | None = None
    silent: int = 0
    queue_length: int = 0
    positions: dict[int, int] = field(default_factory=dict)  # queue entry id -> place
    teardown: Teardown | None = None
    held: dict[str, HeldVM] = field(default_factory=dict)  # hostname -> its session
    read_at: dt.datetime | None = None


class PublicState(SharedReader[PublicSnapshot]):
    """The process's :class:`PublicSnapshot`, shared by its researcher sessions."""

    thread_name = "lablink-public-state"

    def __init__(self, services: Any, listener: ListenerLike | None = None, **params: Any) -> None:
        super().__init__(PublicSnapshot(), listener, **params)
        self._services = services
        self._alive_lock = threading.Lock()
        self._alive: dict[int, int] = {}  # queue entry id -> pages showing it

    def keep_alive(self, entry_id: int) -> None:
        with self._alive_lock:
            self._alive[entry_id] = self._alive.get(entry_id, 0) + 1

    def let_go(self, entry_id: int) -> None:
        with self._alive_lock:
            left = self._alive.get(entry_id, 0) - 1
            if left > 0:
                self._alive[entry_id] = left
            else:
                self._alive.pop(entry_id, None)

    def _read(self) -> PublicSnapshot:
        services = self._services
        now = dt.datetime.now(dt.UTC)
        with self._alive_lock:
            alive = list(self._alive)
        services.waitlist.touch(alive)
        pool = services.allocator.pool_counts()
        positions = services.waitlist.positions()
        return PublicSnapshot(
            free=pool["free"],
            silent=pool["silent"],
            queue_length=len(positions),
            positions=positions,
            teardown=services.schedules.next_teardown(now),
            held=services.sessions.held(now),
            read_at=now,
        )


def public_state(runtime: Any) -> PublicState:
    """The process's one public state for ``runtime``, started on first use."""
    return process_reader(
        runtime, "public-state", lambda: PublicState(runtime.services, runtime.listener)
    )


def close_public_state(runtime: object) -> None:
    close_process_reader(runtime, "public-state")
