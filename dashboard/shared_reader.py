"""One snapshot per process, shared by every session that shows it.

A daemon thread does the reading. NOTIFYs (from the process's
:class:`~lablink_core.listener.NotificationListener`, on the event loop) only mark the
snapshot dirty; the thread re-reads once the burst has settled and at most once per
``min_interval`` seconds, plus every ``periodic_interval`` seconds for what changes without
a notification (ages, heartbeats). It reads nothing while no session watches.

Sessions never bind to a shared param (that leaks one watcher per session): each calls
:meth:`SharedReader.subscribe`, unsubscribes when the session is destroyed, and applies new
snapshots to its own widgets on its document's next tick.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import param

from lablink_core.listener import Notification, Subscriber

log = logging.getLogger(__name__)
T = TypeVar("T")


class ListenerLike(Protocol):
    """What a reader follows: :class:`lablink_core.listener.NotificationListener`."""

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]: ...


class SharedReader[T](param.Parameterized):
    """A snapshot kept fresh for its subscribers; subclasses say what :meth:`_read` reads."""

    min_interval = param.Number(
        default=1.0, bounds=(0.0, 60.0), doc="Fewest seconds between two change-driven reads."
    )
    settle = param.Number(
        default=0.1,
        bounds=(0.0, 5.0),
        doc="Seconds to wait after the first change of a burst, so the burst costs one read.",
    )
    periodic_interval = param.Number(
        default=5.0,
        bounds=(0.05, 3600.0),
        doc="Seconds between reads without changes (what changes without a notification).",
    )

    thread_name = "lablink-shared-reader"

    def __init__(
        self,
        initial: T,
        listener: ListenerLike | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self._clock = clock
        self._listener = listener
        self._condition = threading.Condition()
        self._read_lock = threading.Lock()
        self._callbacks: dict[int, Callable[[T], None]] = {}
        self._next_token = 0
        self._snapshot: T = initial
        self._previous: T | None = None
        self._loaded_at: float | None = None  # monotonic time of the last read's start
        self._dirty_since: float | None = None
        self._change_read_at: float | None = None  # start of the last change-driven read
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stop_listening: Callable[[], None] | None = None
        self.reads = 0
        self.last_read_seconds = 0.0

    def _read(self) -> T:
        """Read a new snapshot (blocking; on the reader's thread)."""
        raise NotImplementedError

    def wants(self, notification: Notification) -> bool:
        """Whether a notification can change the snapshot (all of them, by default)."""
        return True

    # Lifecycle ---------------------------------------------------------------------------

    def start(self) -> SharedReader[T]:
        """Follow the listener and start the reading thread (idempotent)."""
        with self._condition:
            if self._thread is not None:
                return self
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        if self._listener is not None:
            self._stop_listening = self._listener.subscribe(self)
        return self

    def close(self) -> None:
        """Stop following the listener and stop the thread."""
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        with self._condition:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # Sessions ----------------------------------------------------------------------------

    @property
    def snapshot(self) -> T:
        """The latest snapshot. Shared: copy it before changing it."""
        return self._snapshot

    def subscribe(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback(snapshot)`` from the reading thread with each new snapshot.

        Returns the function that unsubscribes (safe to call more than once). A stale
        snapshot is re-read at once for the newcomer.
        """
        with self._condition:
            token = self._next_token
            self._next_token += 1
            self._callbacks[token] = callback
            if self._is_stale(self._clock()):
                self._mark_dirty_locked()
            self._condition.notify_all()

        def unsubscribe() -> None:
            with self._condition:
                self._callbacks.pop(token, None)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        with self._condition:
            return len(self._callbacks)

    def refresh(self) -> T:
        """Read now, in the caller's thread (first page load, notebooks), and publish."""
        return self._read_and_publish()

    def request_refresh(self) -> None:
        """Ask the thread for a read soon (after an action of this process)."""
        with self._condition:
            self._mark_dirty_locked()
            self._condition.notify_all()

    # Subscriber protocol of the listener (called on the event loop: must stay cheap) -----

    def on_notifications(self, notifications: list[Notification]) -> None:
        if any(self.wants(n) for n in notifications):
            self.request_refresh()

    def on_resync(self) -> None:
        self.request_refresh()

    # The reading thread ------------------------------------------------------------------

    def _mark_dirty_locked(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = self._clock()

    def _is_stale(self, now: float) -> bool:
        return self._loaded_at is None or now - self._loaded_at >= self.periodic_interval

    def _due(self, now: float) -> float | None:
        """When the next read should start (monotonic), or None to sleep until woken."""
        if not self._callbacks:
            return None
        last = self._loaded_at if self._loaded_at is not None else -math.inf
        periodic = last + self.periodic_interval
        if self._dirty_since is None:
            return periodic
        # Periodic reads do not delay a change: only change-driven reads are rate-limited.
        last_change = self._change_read_at if self._change_read_at is not None else -math.inf
        changed = max(self._dirty_since + self.settle, last_change + self.min_interval)
        return min(changed, periodic)

    def _wait_until_due(self) -> bool:
        """Block until a read is due; False when the reader is closing."""
        with self._condition:
            while not self._stopping:
                now = self._clock()
                due = self._due(now)
                if due is not None and due <= now:
                    return True
                self._condition.wait(None if due is None else due - now)
            return False

    def _run(self) -> None:
        while self._wait_until_due():
            try:
                self._read_and_publish()
            except Exception:
                log.exception("%s could not read; retrying", type(self).__name__)

    def _read_and_publish(self) -> T:
        # One read at a time (the thread, or a page's first refresh()), so snapshots are
        # published in the order they were read.
        with self._read_lock:
            return self._read_and_publish_locked()

    def _read_and_publish_locked(self) -> T:
        started = self._clock()
        with self._condition:
            self._loaded_at = started  # a failed read also waits a period before the next
            if self._dirty_since is not None:
                self._change_read_at = started
            self._dirty_since = None  # changes from now on need another read
        snapshot = self._read()
        with self._condition:
            self._previous, self._snapshot = self._snapshot, snapshot
            self.reads += 1
            self.last_read_seconds = self._clock() - started
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            try:
                callback(snapshot)
            except Exception:
                log.exception("a %s subscriber failed", type(self).__name__)
        return snapshot


_readers: dict[tuple[int, str], tuple[object, SharedReader[Any]]] = {}
_readers_lock = threading.Lock()


def process_reader[R: SharedReader[Any]](owner: object, name: str, make: Callable[[], R]) -> R:
    """The process's one reader called ``name`` for ``owner`` (a runtime), made and started
    on first use (and again if it was closed)."""
    with _readers_lock:
        entry = _readers.get((id(owner), name))
        if entry is not None and entry[0] is owner and entry[1].running:
            found: R = entry[1]  # type: ignore[assignment]
            return found
        reader = make()
        reader.start()
        _readers[(id(owner), name)] = (owner, reader)
        return reader


def close_process_reader(owner: object, name: str) -> None:
    """Stop ``owner``'s reader called ``name``, if it has one (shutdown, tests)."""
    with _readers_lock:
        entry = _readers.pop((id(owner), name), None)
    if entry is not None:
        entry[1].close()
