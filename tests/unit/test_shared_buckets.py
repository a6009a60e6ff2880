"""The rate limits' buckets shared by forked server processes: counting, refill, a full
table, and a token taken in a child process missing in the parent."""

from __future__ import annotations

import fcntl
import multiprocessing
import os

import pytest

from lablink_core.ratelimit import RateLimiter
from lablink_core.shared_buckets import PROBES, SharedBuckets

RATE = 1.0  # a token per second


def take_all(buckets: SharedBuckets, key: str, now: float, burst: float = 3.0) -> int:
    taken = 0
    while buckets.take(key, now, RATE, burst) is None:
        taken += 1
    return taken


def test_a_bucket_gives_its_burst_then_says_how_long_to_wait() -> None:
    buckets = SharedBuckets(64)
    assert take_all(buckets, "address:10.0.0.1", now=100.0) == 3
    assert buckets.take("address:10.0.0.1", 100.0, RATE, 3.0) == pytest.approx(1.0)
    assert buckets.take("address:10.0.0.1", 100.5, RATE, 3.0) == pytest.approx(0.5)
    assert buckets.take("address:10.0.0.1", 101.0, RATE, 3.0) is None  # refilled one
    assert take_all(buckets, "address:10.0.0.2", now=101.0) == 3  # keys are apart


def test_a_full_table_lets_a_new_key_in_and_never_locks_one_out() -> None:
    buckets = SharedBuckets(PROBES)  # every key probes every slot
    for index in range(PROBES):
        assert take_all(buckets, f"email:{index}@example.org", now=0.0) == 3
    newcomer = take_all(buckets, "email:new@example.org", now=0.0)
    assert newcomer == 3  # the fullest slot was given up for it
    # A refilled slot is free again: after the burst's time every key starts full.
    assert take_all(buckets, "email:0@example.org", now=10.0) == 3


def _drain(buckets: SharedBuckets) -> None:
    take_all(buckets, "address:shared", now=0.0, burst=5.0)


def test_a_child_process_takes_from_the_parents_buckets() -> None:
    buckets = SharedBuckets(64)
    assert buckets.take("address:shared", 0.0, RATE, 5.0) is None
    child = multiprocessing.get_context("fork").Process(target=_drain, args=(buckets,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert buckets.take("address:shared", 0.0, RATE, 5.0) is not None  # the child took the rest


def test_the_limiter_uses_the_shared_table_when_given_one() -> None:
    buckets = SharedBuckets(64)
    first = RateLimiter(60.0, 2, clock=lambda: 50.0, shared=buckets)
    second = RateLimiter(60.0, 2, clock=lambda: 50.0, shared=buckets)  # another process's
    assert first.check("address:a") is None and second.check("address:a") is None
    assert first.check("address:a") == pytest.approx(1.0)


def test_a_table_smaller_than_the_probes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        SharedBuckets(PROBES - 1)


def _take_the_lock_and_die(buckets: SharedBuckets) -> None:
    fcntl.lockf(buckets._lock_file, fcntl.LOCK_EX)
    os._exit(0)  # dies holding it


def test_a_process_that_dies_holding_the_lock_does_not_stop_the_others() -> None:
    buckets = SharedBuckets(64)
    child = multiprocessing.get_context("fork").Process(
        target=_take_the_lock_and_die, args=(buckets,)
    )
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert buckets.take("address:after", 0.0, RATE, 5.0) is None  # would hang on a semaphore
