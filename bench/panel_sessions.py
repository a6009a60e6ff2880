"""The admin instances page on a threaded in-process Panel server, over a runtime built as
`lablink serve` builds it (same NOTIFY listener, same live table), and bokeh.client sessions
of it: what :mod:`bench.dashboard` measures."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import panel as pn
from bokeh.client import ClientSession, pull_session

from bench.server import ADMIN_PASSWORD
from lablink_core.config import LablinkConfig
from lablink_core.localdb import free_port

PAGE = "/admin/instances"
START_TIMEOUT = 60.0

# The dashboard package is not under mypy --strict (pyproject checks lablink_core only): a
# static import would make `mypy --strict bench` check all of it, so it is imported by name.
pages: Any = importlib.import_module("dashboard.admin.pages")
live: Any = importlib.import_module("dashboard.live")
runtimes: Any = importlib.import_module("dashboard.runtime")
# Imported before any session builds a Tabulator: once (not reproduced since), sessions built
# at once raced on Panel's lazy import of this module ("partially initialized module").
importlib.import_module("panel.models.tabulator")


@dataclass
class Served:
    """The in-process server, its runtime, and each opened session's Tabulator."""

    url: str
    runtime: Any  # dashboard.runtime.Runtime
    table: Any  # dashboard.live.LiveVMTable
    tabulators: list[pn.widgets.Tabulator] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def views(self) -> list[pn.widgets.Tabulator]:
        with self.lock:
            return list(self.tabulators)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.02)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.contextmanager
def serving(database_url: str) -> Iterator[Served]:
    """The instances page on a threaded in-process Panel server, runtime started."""
    data_dir = tempfile.mkdtemp(prefix="lablink-bench-dash-")
    config = LablinkConfig()
    config.db.url = database_url
    config.app.data_dir = data_dir
    config.app.admin_password = ADMIN_PASSWORD  # no bcrypt of a generated one
    runtime = runtimes.build_runtime(config)
    port = free_port()
    served = Served(f"http://127.0.0.1:{port}", runtime, live.live_table(runtime))

    def page() -> Any:
        built = pages.instances_page(runtime)
        with served.lock:
            served.tabulators.extend(built.select(pn.widgets.Tabulator)[:1])
        return built

    server: Any = pn.serve(  # type: ignore[no-untyped-call]
        {PAGE: page},
        port=port,
        address="127.0.0.1",
        websocket_origin=f"127.0.0.1:{port}",
        threaded=True,
        start=True,
        show=False,
    )
    try:
        until(lambda: _listening(port), START_TIMEOUT, "the in-process server")
        asyncio.run_coroutine_threadsafe(runtime.start(), server.asyncio_loop).result(30)
        yield served
    finally:
        live.close_live_table(runtime)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(runtime.stop(), server.asyncio_loop).result(30)
        server.stop()
        runtime.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def open_sessions(url: str, count: int) -> list[ClientSession]:
    """``count`` sessions of the instances page, ten being opened at a time."""
    with ThreadPoolExecutor(max_workers=min(10, count)) as pool:
        return list(pool.map(lambda _: pull_session(url=f"{url}{PAGE}"), range(count)))


def close_sessions(clients: list[ClientSession]) -> None:
    """Close the sessions from this thread. Tornado's close makes a Future, which needs a
    current event loop: after an earlier benchmark's asyncio.run the main thread has none."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def without_table(clients: list[ClientSession]) -> int:
    """Sessions whose client document holds no Tabulator model (the page failed to build)."""
    return sum(
        client.document is None
        or not any(type(m).__name__ == "DataTabulator" for m in client.document.models)
        for client in clients
    )
