"""Watching open admin sessions' VM tables: when each one first shows each change.

Used by :mod:`bench.dashboard`: a thread sweeps every session's server-side Tabulator value
(the frame its widget model is synced from) every few milliseconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import panel as pn

SAMPLE_EVERY = 0.002  # the sampler's sleep between sweeps over the sessions


@dataclass
class Change:
    hostname: str
    email: str
    committed_at: float


class Sampler(threading.Thread):
    """Sweeps every session's Tabulator value every few milliseconds and records when each
    one first shows each change.

    Per session only its oldest change not yet seen is looked at (the next ones once it is):
    a snapshot read after a COMMIT is also read after every earlier one, so no session can
    show a later change before an earlier one, and a sweep costs one lookup per session.
    """

    def __init__(self, tabulators: list[pn.widgets.Tabulator]) -> None:
        super().__init__(name="bench-dashboard-sampler", daemon=True)
        self.tabulators = tabulators
        self.changes: list[Change] = []
        # Per session, in commit order: (change, id of the session's value when committed).
        self.pending: list[list[tuple[int, int]]] = [[] for _ in tabulators]
        self.latency: dict[tuple[int, int], float] = {}  # (session, change) -> seconds
        self.swapped = 0
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def add(self, change: Change) -> None:
        with self._lock:
            index = len(self.changes)
            self.changes.append(change)
            for session, tabulator in enumerate(self.tabulators):
                self.pending[session].append((index, id(tabulator.value)))

    def outstanding(self) -> list[tuple[int, int]]:
        """(session, change) pairs not seen yet."""
        with self._lock:
            return [(s, c) for s, queue in enumerate(self.pending) for c, _ in queue]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def _shown(self, session: int, index: int) -> tuple[bool, int]:
        change = self.changes[index]
        value = self.tabulators[session].value
        try:
            return bool(value.at[change.hostname, "user_email"] == change.email), id(value)
        except (KeyError, AttributeError):
            return False, id(value)

    def run(self) -> None:
        while not self._stop_event.is_set():
            for session, queue in enumerate(self.pending):
                while True:
                    with self._lock:
                        if not queue:
                            break
                        index, before = queue[0]
                    shown, now_id = self._shown(session, index)
                    if not shown:
                        break
                    now = time.monotonic()
                    with self._lock:
                        queue.pop(0)
                        self.latency[(session, index)] = now - self.changes[index].committed_at
                        self.swapped += now_id != before
            self._stop_event.wait(SAMPLE_EVERY)
