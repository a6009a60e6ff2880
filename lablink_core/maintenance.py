"""The loops that act over time, in one process at a time: healing, reclaiming idle or
overdue sessions, scheduled teardowns, and the waitlist's upkeep.

Every server process runs a :class:`Maintenance` thread; only the holder of the
``maintenance`` lease does the work, so two replicas never heal or tear down the same VM
twice. Each step has its own period and is given the time from an injectable clock: tests
move the clock instead of sleeping. A failing step is logged and tried again next time.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


class LeaseLike(Protocol):
    """What the loop needs of :class:`lablink_core.leases.Lease`."""

    def acquire(self, now: dt.datetime) -> bool: ...

    def release(self) -> None: ...


def utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Step:
    """One periodic piece of work: ``run(now)`` every ``period`` seconds."""

    name: str
    period: float
    run: Callable[[dt.datetime], object]
    due: dt.datetime | None = field(default=None, repr=False)


class Maintenance:
    """Runs steps while holding the lease; call :meth:`tick` yourself or :meth:`start`."""

    def __init__(
        self, lease: LeaseLike, steps: list[Step], *, clock: Clock = utc_clock, tick: float = 1.0
    ) -> None:
        self.lease = lease
        self.steps = steps
        self.clock = clock
        self.tick_seconds = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leading = False

    def tick(self) -> list[str]:
        """One look at the clock: run the steps that are due, if this process leads.
        Returns the names of the steps that ran."""
        now = self.clock()
        try:
            self.leading = self.lease.acquire(now)
        except Exception as error:  # the database may be away: try again next tick
            log.warning("maintenance lease unavailable: %s", error)
            self.leading = False
        if not self.leading:
            return []
        ran = []
        for step in self.steps:
            if step.due is not None and step.due > now:
                continue
            step.due = now + dt.timedelta(seconds=step.period)
            try:
                step.run(now)
            except Exception:
                log.exception("maintenance step %s failed", step.name)
            ran.append(step.name)
        return ran

    def start(self) -> Maintenance:
        self._thread = threading.Thread(target=self._loop, name="lablink-maintenance", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            self.tick()

    def stop(self) -> None:
        """Stop the thread and give the lease up, so another process takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leading:
            try:
                self.lease.release()
            except Exception as error:
                log.warning("could not release the maintenance lease: %s", error)
