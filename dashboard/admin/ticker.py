"""Running work on a session's own event-loop tick, coalesced, from any thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bokeh.document import Document
from panel.io.state import set_curdoc


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
            # On the loop thread now, where timeout callbacks may be added.
            self._doc.add_timeout_callback(self._on_tick, int(wait * 1000) + 1)
            return
        with self._lock:
            self._scheduled = False
        self._last_run = time.monotonic()
        if self.closed:
            return
        with set_curdoc(self._doc):
            self._callback()
