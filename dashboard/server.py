"""The app factory: one function that assembles a whole LabLink server process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

import panel as pn
from bokeh.server.server import Server

from dashboard.api.routes import api_routes
from dashboard.auth import configure_auth, login_routes
from dashboard.live import close_live_table
from dashboard.pages import build_pages
from dashboard.public_state import close_public_state
from dashboard.runtime import Runtime, build_runtime, current, install
from lablink_core.config import LablinkConfig

log = logging.getLogger(__name__)


def create_server(
    config: LablinkConfig, *, port: int | None = None, address: str | None = None
) -> tuple[Server, Runtime]:
    """Build the runtime and a (not yet started) Panel server with the API routes."""
    runtime = build_runtime(config)
    install(runtime)
    pages: dict[str, Callable[[], Any]] = build_pages(current)
    server = pn.serve(
        pages,
        port=config.app.port if port is None else port,
        address=address or config.app.host,
        websocket_origin="*",
        extra_patterns=api_routes(current) + login_routes(),
        start=False,
        show=False,
        title="LabLink",
        **configure_auth(runtime, current),
    )
    runtime.attach_fleet(local_url(address or config.app.host, server.port))
    return server, runtime


def local_url(host: str, port: int) -> str:
    """How VM processes on this machine reach the server (loopback unless bound elsewhere)."""
    if host in ("", "0.0.0.0", "::", "localhost", "127.0.0.1"):  # noqa: S104
        return f"http://127.0.0.1:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(
    server: Server, runtime: Runtime, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM, then stop listening, close the pool and the private DB."""
    loop = server.io_loop

    async def start() -> None:
        await runtime.start()
        if on_ready is not None:
            on_ready()

    def request_stop(*_: object) -> None:
        # Later signals during shutdown are ignored: stopping twice would abort the cleanup
        # that stops local VMs and the private database.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    loop.add_callback(start)
    server.start()
    try:
        loop.start()
    finally:
        # First, so no local VM process outlives the server (nor polls a closing one).
        runtime.stop_fleet()
        close_live_table(runtime)
        close_public_state(runtime)
        server.stop()
        asyncio.get_event_loop().run_until_complete(runtime.stop())
        runtime.close()
        install(None)
