"""An in-process token bucket per key (an address, an email), with bounded memory.

Each key has a bucket of ``burst`` tokens refilled at ``rate_per_minute``; a request takes one.
Only keys that are still short of tokens need remembering: a bucket that has refilled is the
same as no bucket, so the oldest entries beyond ``max_keys`` are dropped (which can only ever
let a client in early, never lock one out). Given ``shared``
(:class:`~lablink_core.shared_buckets.SharedBuckets`), the buckets are instead the ones all
the processes of one server take from.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lablink_core.shared_buckets import SharedBuckets


def refilled(tokens: float, counted_at: float, now: float, rate: float, burst: float) -> float:
    """A bucket's tokens at ``now``: ``tokens`` counted at ``counted_at``, refilled at ``rate``
    per second up to ``burst``."""
    return min(burst, tokens + max(0.0, now - counted_at) * rate)


def take_one(tokens: float, rate: float) -> tuple[float, float | None]:
    """Take a token from a bucket holding ``tokens``: the tokens left, and None if one was
    taken, else the seconds until one will be there."""
    if tokens >= 1.0:
        return tokens - 1.0, None
    return tokens, (1.0 - tokens) / rate


class RateLimiter:
    """``check(key)``: None if allowed now (a token is taken), else seconds until it would be."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
        shared: SharedBuckets | None = None,
    ) -> None:
        if rate_per_minute < 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_minute must be >= 0, burst and max_keys >= 1")
        self._rate = rate_per_minute / 60.0  # tokens per second; 0 means unlimited
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens, when they were counted); least recently touched first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = Lock()
        # The buckets of all the processes of one server, when it has several.
        self._shared = shared

    @property
    def unlimited(self) -> bool:
        return self._rate == 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> float | None:
        if self.unlimited:
            return None
        now = self._clock()
        if self._shared is not None:
            return self._shared.take(key, now, self._rate, self._burst)
        with self._lock:
            left, wait = take_one(self._tokens(key, now), self._rate)
            self._remember(key, left, now)
            return wait

    def _tokens(self, key: str, now: float) -> float:
        saved = self._buckets.get(key)
        if saved is None:
            return self._burst
        tokens, then = saved
        return refilled(tokens, then, now, self._rate, self._burst)

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
