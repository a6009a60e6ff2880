"""Login throttling that holds across server processes: failures counted in the database.

Each key (an address, the admin's user name) gets a few free failures; after those every
failure blocks the key for twice as long as the one before, up to a ceiling. A success clears
the key. Blocks learned from the database are remembered in this process until they end, so a
blocked guesser is answered from memory without a query.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from threading import Lock

from sqlalchemy import Connection, Engine, text


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures are free, and how the wait after them grows."""

    free_failures: int = 5
    base_seconds: float = 2.0
    max_seconds: float = 300.0
    # A streak is forgotten this long after its last block ended (or its first failure).
    forget_after_seconds: float = 900.0

    def wait_after(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures, 30)
        return float(min(self.max_seconds, self.base_seconds * 2**exponent))


_RECORD_FAILURE = """
INSERT INTO lablink_throttle AS t (key, failures, window_start) VALUES (:key, 1, now())
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN COALESCE(t.blocked_until, t.window_start)
                         < now() - make_interval(secs => :forget)
                    THEN 1 ELSE t.failures + 1 END,
    window_start = CASE WHEN COALESCE(t.blocked_until, t.window_start)
                             < now() - make_interval(secs => :forget)
                        THEN now() ELSE t.window_start END,
    blocked_until = CASE WHEN COALESCE(t.blocked_until, t.window_start)
                              < now() - make_interval(secs => :forget)
                         THEN NULL ELSE t.blocked_until END
RETURNING failures
"""


class LoginThrottle:
    """Counts failures per key in ``lablink_throttle`` and says how long a key must wait."""

    def __init__(
        self,
        engine: Engine,
        policies: dict[str, ThrottlePolicy] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        # Policy by key prefix ("addr:", "user:"); the default for anything else.
        self._policies = policies or {}
        self._clock = clock
        self._blocked: dict[str, float] = {}  # key -> monotonic time the block ends
        self._lock = Lock()

    def policy(self, key: str) -> ThrottlePolicy:
        prefix = key.split(":", 1)[0] + ":"
        return self._policies.get(prefix, ThrottlePolicy())

    def known_wait(self, keys: Iterable[str]) -> float | None:
        """Seconds to wait if this process already knows a key is blocked (no query)."""
        now = self._clock()
        with self._lock:
            ends = [self._blocked.get(key, 0.0) for key in keys]
        wait = max(ends, default=0.0) - now
        return wait if wait > 0 else None

    def wait(self, keys: Iterable[str]) -> float | None:
        """Seconds to wait before another attempt for these keys, or None: go ahead."""
        keys = list(keys)
        known = self.known_wait(keys)
        if known is not None:
            return known
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT key, EXTRACT(EPOCH FROM blocked_until - now()) FROM lablink_throttle "
                    "WHERE key = ANY(:keys) AND blocked_until > now()"
                ),
                {"keys": keys},
            ).all()
        for key, seconds in rows:
            self._learn(str(key), float(seconds))
        return max((float(seconds) for _, seconds in rows), default=None)

    def failed(self, keys: Iterable[str]) -> float | None:
        """Count a failure for each key; the wait it now imposes, if any."""
        waits = []
        with self._engine.begin() as connection:
            for key in keys:
                policy = self.policy(key)
                failures = connection.execute(
                    text(_RECORD_FAILURE),
                    {"key": key, "forget": policy.forget_after_seconds},
                ).scalar_one()
                wait = policy.wait_after(int(failures))
                if wait > 0:
                    connection.execute(
                        text(
                            "UPDATE lablink_throttle SET blocked_until = "
                            "now() + make_interval(secs => :wait) WHERE key = :key"
                        ),
                        {"key": key, "wait": wait},
                    )
                    self._learn(key, wait)
                    waits.append(wait)
            if random.random() < 0.01:  # keep the table small: forget finished streaks
                self._forget_old(connection)
        return max(waits, default=None)

    def succeeded(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self._engine.begin() as connection:
            connection.execute(
                text("DELETE FROM lablink_throttle WHERE key = ANY(:keys)"), {"keys": keys}
            )
        with self._lock:
            for key in keys:
                self._blocked.pop(key, None)

    def _learn(self, key: str, seconds: float) -> None:
        with self._lock:
            self._blocked[key] = self._clock() + seconds
            if len(self._blocked) > 10_000:
                now = self._clock()
                self._blocked = {k: end for k, end in self._blocked.items() if end > now}

    def _forget_old(self, connection: Connection) -> None:
        longest = max(
            [ThrottlePolicy().forget_after_seconds]
            + [p.forget_after_seconds for p in self._policies.values()]
        )
        connection.execute(
            text(
                "DELETE FROM lablink_throttle WHERE COALESCE(blocked_until, window_start) "
                "< now() - make_interval(secs => :age)"
            ),
            {"age": 2 * longest},
        )
