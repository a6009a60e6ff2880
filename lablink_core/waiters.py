"""VMs waiting for an assignment, each an asyncio future: no thread, no connection.

A waiter subscribes *before* it reads the VM's current state, so an assignment that commits
between the read and the wait still wakes it. Woken hostnames are fetched in rounds, one
query each and one round at a time: notifications that arrive while a round's query runs
join the next round. A statement assigning a thousand VMs reaches the listener in several
socket reads; read one round per read, it cost six concurrent queries, two of them on loop
connections opened in the middle of the wake-up (a measured quarter of its server CPU).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from lablink_core.listener import Notification, NotificationListener
from lablink_core.metrics import Metrics
from lablink_core.vms import VMTask

log = logging.getLogger(__name__)
_WAKING = frozenset({"assigned", "released", "credential", "deleted"})
# A waiter hears of these whatever their generation: its credential no longer works.
_ENDING = frozenset({"credential", "deleted"})


@dataclass(eq=False)
class Waiter:
    """One VM waiting for a task newer than ``after_generation``."""

    hostname: str
    after_generation: int
    future: asyncio.Future[VMTask | None] = field(repr=False)
    # Whether this process vouches for the VM while it waits (see AssignmentWaiters.vouched).
    vouch: bool = True

    async def wait(self, timeout: float) -> VMTask | None:
        """The new task, or None when ``timeout`` seconds pass first. Cancelling
        :attr:`future` (the VM hung up) raises CancelledError here.

        The future is awaited as it is, with a timer beside it: no task or shield per
        waiting VM, so a thousand woken at once are answered with less work each."""
        timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        try:
            return await self.future
        finally:
            timer.cancel()

    def _expire(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def offer(self, task: VMTask) -> bool:
        """Hand ``task`` over if it is news: newer, or the VM's credential died."""
        if self.future.done() or (task.generation <= self.after_generation and not task.revoked):
            return False
        self.future.set_result(task)
        return True


class AssignmentWaiters:
    """The room where VMs wait; fed by the process's :class:`NotificationListener`."""

    def __init__(
        self,
        listener: NotificationListener,
        fetch_tasks: Callable[[Sequence[str]], dict[str, VMTask]],
        metrics: Metrics | None = None,
        *,
        fetch_on_loop: Callable[[Sequence[str]], Awaitable[dict[str, VMTask]]] | None = None,
    ) -> None:
        # fetch_tasks runs on a thread; fetch_on_loop, when given, on the event loop itself.
        self._fetch_tasks = fetch_tasks
        self._fetch_on_loop = fetch_on_loop
        self._metrics = metrics or Metrics()
        self._waiters: dict[str, set[Waiter]] = {}
        # Hostnames heard of and not fetched yet, and when the oldest of them was heard.
        self._pending: set[str] = set()
        self._pending_since = 0.0
        self._waking: asyncio.Task[None] | None = None
        self.wakeups = 0
        self.fetch_attempts = 10
        self._unsubscribe = listener.subscribe(self)

    def close(self) -> None:
        self._unsubscribe()

    @property
    def count(self) -> int:
        return sum(len(group) for group in self._waiters.values())

    def vouched(self) -> list[str]:
        """VMs waiting here now whose liveness this process vouches for: a long poll in
        progress is proof of life (the original client is left out: it is held for up to
        an hour, and its heartbeats speak for it)."""
        return sorted(name for name, group in self._waiters.items() if any(w.vouch for w in group))

    @asynccontextmanager
    async def waiting(
        self, hostname: str, after_generation: int, *, vouch: bool = True
    ) -> AsyncIterator[Waiter]:
        """Register a waiter for the block's duration; read the current state inside it."""
        future = asyncio.get_running_loop().create_future()
        waiter = Waiter(hostname, after_generation, future, vouch)
        self._waiters.setdefault(hostname, set()).add(waiter)
        self._metrics.waiting(1)
        try:
            yield waiter
        finally:
            self._metrics.waiting(-1)
            group = self._waiters.get(hostname)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._waiters[hostname]
            if not waiter.future.done():
                waiter.future.cancel()

    def on_notifications(self, notifications: list[Notification]) -> None:
        names = {
            n.hostname
            for n in notifications
            if n.what in _WAKING
            and (self._wants(n.hostname, n.generation) or n.what in _ENDING)
            and n.hostname in self._waiters
        }
        if names:
            self._start_wake(sorted(names))

    def on_resync(self) -> None:
        if self._waiters:
            self._start_wake(sorted(self._waiters))

    def _start_wake(self, hostnames: list[str]) -> None:
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._pending_since = loop.time()
        self._pending.update(hostnames)
        if self._waking is None or self._waking.done():
            # The loop keeps only a weak reference to a task: hold it until it is done.
            self._waking = loop.create_task(self._wake_rounds())

    async def _wake_rounds(self) -> None:
        """Fetch and offer round after round until no hostname is pending."""
        while self._pending:
            names, heard_at = sorted(self._pending), self._pending_since
            self._pending.clear()
            try:
                await self._wake(names, heard_at)
            except Exception:
                # The next round must still run; these waiters time out and poll again.
                log.warning("%d waiting VMs were not woken; they poll again", len(names))

    async def _fetch_with_retry(self, hostnames: list[str]) -> dict[str, VMTask]:
        # A wake-up follows a commit or a reconnect, so the database is up; a failure here is
        # a passing one (a pooled connection that died with the old server). Never drop it.
        delay = 0.05
        for attempt in range(self.fetch_attempts):
            try:
                if self._fetch_on_loop is not None:
                    return await self._fetch_on_loop(hostnames)
                return await asyncio.to_thread(self._fetch_tasks, hostnames)
            except Exception:
                if attempt == self.fetch_attempts - 1:
                    log.exception("could not fetch tasks for %d waiting VMs", len(hostnames))
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        return {}

    def _wants(self, hostname: str, generation: int) -> bool:
        return any(w.after_generation < generation for w in self._waiters.get(hostname, ()))

    async def _wake(self, hostnames: list[str], heard_at: float) -> None:
        tasks = await self._fetch_with_retry(hostnames)
        woken = 0
        for name in hostnames:
            # A VM whose row is gone (destroyed) is answered as revoked.
            task = tasks.get(name) or VMTask(name, 0, None, None, credential_hash=None)
            for waiter in list(self._waiters.get(name, ())):
                if waiter.offer(task):
                    woken += 1
        if woken:
            self.wakeups += woken
            self._metrics.woken(asyncio.get_running_loop().time() - heard_at, woken)
