"""Fixtures shared by every test folder live in tests/fixtures; this file only registers them."""

import os
import sys
import threading
from concurrent.futures.thread import _worker

import pytest

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.aws",
    "tests.fixtures.server",
    "tests.fixtures.browser",
    "tests.fixtures.notebooks",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's session keeps an event loop on the main thread."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A thread a test left running (not a daemon) would keep this process from exiting after
    the summary, and CI would wait for ever: name them and fail the run instead."""
    lingering = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    # Idle executor workers are told to exit at shutdown (concurrent.futures does that).
    lingering = [
        t for t in lingering if t.is_alive() and getattr(t, "_target", None) is not _worker
    ]
    if not lingering:
        return
    names = ", ".join(sorted(t.name for t in lingering))
    print(f"\nthreads left running by tests, which would hang the run: {names}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(exitstatus or 3)
