"""Running work on a session's own event-loop tick, coalesced, from any thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

from bokeh.document import Document
from panel.io.state import set_curdoc

log = logging.getLogger(__name__)


class SessionTicker:
    """Calls ``callback`` on the session's next tick when :meth:`request` is called from any
    thread; requests that arrive before it runs share one call, and calls are at least
    ``min_interval`` seconds apart. Without a server session (notebook, tests) it calls
    ``callback`` at once, in the requesting thread.
    """

    def __init__(
        self, callback: Callable[[], None], doc: Document | None, *, min_interval: float = 0.0
    ) -> None:
        self._callback = callback
        self._doc = doc if doc is not None and doc.session_context is not None else None
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._scheduled = False
        self._last_run = -float("inf")
        self.closed = False

    def request(self) -> None:
        if self.closed:
            return
        if self._doc is None:
            self._callback()
            return
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._doc.add_next_tick_callback(self._on_tick)
        except Exception:  # the session is going away
            with self._lock:
                self._scheduled = False

    def close(self) -> None:
        self.closed = True

    def _on_tick(self) -> None:
        wait = self._last_run + self._min_interval - time.monotonic()
        if wait > 0 and self._doc is not None:
            # Too soon after the last run: come back later (Bokeh schedules thread-safely).
            self._doc.add_timeout_callback(self._on_tick, int(wait * 1000) + 1)
            return
        with self._lock:
            self._scheduled = False
        self._last_run = time.monotonic()
        if self.closed:
            return
        with set_curdoc(self._doc):
            self._callback()


class Poller[T]:
    """Runs ``read`` off the event loop (on ``executor``, or a thread of its own) and hands
    the result to ``apply`` on the session's tick, where changing Bokeh models is safe.
    A poll requested while one is in flight is skipped."""

    def __init__(
        self,
        read: Callable[[], T],
        apply: Callable[[T], None],
        doc: Document | None,
        executor: Executor | None = None,
    ) -> None:
        self._read = read
        self._apply = apply
        self._executor = executor
        self._ticker = SessionTicker(self._apply_latest, doc)
        self._lock = threading.Lock()
        self._busy = False
        self._results: list[T] = []

    def poll(self) -> None:
        with self._lock:
            if self._busy or self._ticker.closed:
                return
            self._busy = True
        if self._executor is not None:
            self._executor.submit(self._work)
        else:
            threading.Thread(target=self._work, name="lablink-admin-poll", daemon=True).start()

    def close(self) -> None:
        self._ticker.close()

    def _work(self) -> None:
        try:
            result = self._read()
        except Exception:
            log.exception("an admin page could not read its data")
            return
        finally:
            with self._lock:
                self._busy = False
        with self._lock:
            self._results = [result]
        self._ticker.request()

    def _apply_latest(self) -> None:
        with self._lock:
            results, self._results = self._results, []
        for result in results:
            self._apply(result)
