"""The waitlist, followed through the process's NOTIFY listener.

:class:`Dispatcher` runs :meth:`Waitlist.dispatch` soon after anything that can free a VM
(a release, a VM heard from, one created, someone joining), coalesced so that a burst of
200 releases costs a handful of dispatches, and every few seconds in case a VM came back
without a notification (heartbeats notify nobody). Every process dispatches; the advisory
lock inside ``dispatch`` keeps them in single file.

:class:`TicketWaiters` lets an API client long-poll its ticket: woken when the ticket's
entry changes state, as the VM waiters are when their row changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from lablink_core.listener import Notification, NotificationListener

log = logging.getLogger(__name__)
_FREEING = frozenset({"released", "status", "created", "credential"})


def _may_free_or_join(notification: Notification) -> bool:
    if notification.what == "waitlist":
        return notification.state == "waiting"
    return notification.what in _FREEING


class Dispatcher:
    """Coalesced, notification-driven calls of ``dispatch`` (a blocking function)."""

    def __init__(
        self,
        listener: NotificationListener,
        dispatch: Callable[[], object],
        queue_length: Callable[[], int],
        *,
        period: float = 2.0,
    ) -> None:
        self._dispatch = dispatch
        self._queue_length = queue_length
        self.period = period
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = listener.subscribe(self)
        self.runs = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def on_notifications(self, notifications: list[Notification]) -> None:
        if any(_may_free_or_join(n) for n in notifications):
            self._wanted.set()

    def on_resync(self) -> None:
        self._wanted.set()

    async def _loop(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self.period)
            self._wanted.clear()
            try:
                if await asyncio.to_thread(self._queue_length):
                    await asyncio.to_thread(self._dispatch)
                    self.runs += 1
            except Exception as error:  # the database may be restarting: next time
                log.warning("waitlist dispatch failed: %s", error)


class TicketWaiters:
    """Futures of API clients waiting for news of their queue entry."""

    def __init__(self, listener: NotificationListener) -> None:
        self._waiting: dict[int, set[asyncio.Future[None]]] = {}
        self._unsubscribe = listener.subscribe(self)

    def close(self) -> None:
        self._unsubscribe()

    @property
    def count(self) -> int:
        return sum(len(group) for group in self._waiting.values())

    @asynccontextmanager
    async def waiting(self, entry_id: int) -> AsyncIterator[asyncio.Future[None]]:
        """Subscribe for the block (before reading the entry); the future resolves when
        the entry changes state."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(entry_id, set()).add(future)
        try:
            yield future
        finally:
            group = self._waiting.get(entry_id)
            if group is not None:
                group.discard(future)
                if not group:
                    del self._waiting[entry_id]
            if not future.done():
                future.cancel()

    def on_notifications(self, notifications: list[Notification]) -> None:
        for n in notifications:
            if n.what == "waitlist" and n.ticket is not None:
                self._wake(self._waiting.get(n.ticket, set()))

    def on_resync(self) -> None:
        for group in self._waiting.values():
            self._wake(group)

    @staticmethod
    def _wake(group: set[asyncio.Future[None]]) -> None:
        for future in list(group):
            if not future.done():
                future.set_result(None)
