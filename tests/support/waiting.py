"""Waiting on a condition with a deadline: the tests' only way to wait."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine
from typing import Any


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> object:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], object], *, timeout: float = 10.0, message: str = "condition"
) -> object:
    """The asyncio twin of :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        await asyncio.sleep(0.01)


def run_async[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread.

    Playwright's sync API keeps an event loop running on the main thread for the whole browser
    session, so ``asyncio.run`` there would fail; a thread of its own never clashes.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
