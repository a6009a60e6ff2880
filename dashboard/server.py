"""The app factory: one function that assembles a whole LabLink server process."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import panel as pn
from bokeh.server.server import Server

from dashboard.api.routes import api_routes
from dashboard.auth import configure_auth, guard_autoload_scripts, login_routes
from dashboard.body_limit import refuse_large_bodies
from dashboard.heap import freeze_startup_heap
from dashboard.live import close_live_table
from dashboard.pages import build_pages
from dashboard.prefork import bokeh_binds_these, label_responses
from dashboard.public_state import close_public_state
from dashboard.runtime import Runtime, build_runtime, current, install
from dashboard.security_headers import allowed_origins, bokeh_websocket_origins, harden_application
from dashboard.signin import signin_routes
from lablink_core.config import AppConfig, LablinkConfig
from lablink_core.errors import InvalidInput
from lablink_core.shared_buckets import SharedBuckets

log = logging.getLogger(__name__)


def create_server(
    config: LablinkConfig,
    *,
    port: int | None = None,
    address: str | None = None,
    sockets: list[socket.socket] | None = None,
    process_index: int | None = None,
    buckets: SharedBuckets | None = None,
) -> tuple[Server, Runtime]:
    """Build the runtime and a (not yet started) Panel server with the API routes.

    ``sockets``: already-bound listening sockets to accept on (a forked process of
    ``--processes``, numbered ``process_index``) instead of binding the port; ``buckets``:
    the rate limits' table that process shares with the others."""
    tls = tls_files(config.app)
    chosen_port = config.app.port if port is None else port
    origins = allowed_origins(
        config.app.allowed_origins, config.app.public_url, chosen_port, https=tls is not None
    )
    runtime = build_runtime(config, buckets)
    install(runtime)
    pages: dict[str, Callable[[], Any]] = build_pages(current)
    binding = bokeh_binds_these(sockets) if sockets else nullcontext()
    with binding:
        server = _panel_server(config, runtime, pages, chosen_port, address, origins, tls)
    if process_index is not None:
        label_responses(server._tornado, process_index)
    harden_application(server._tornado, origins)
    guard_autoload_scripts(server._tornado)
    refuse_large_bodies(server._tornado, config.app.max_body_bytes)
    scheme = "https" if tls else "http"
    runtime.attach_fleet(local_url(address or config.app.host, server.port, scheme))
    return server, runtime


def _panel_server(
    config: LablinkConfig,
    runtime: Runtime,
    pages: dict[str, Callable[[], Any]],
    chosen_port: int,
    address: str | None,
    origins: frozenset[str],
    tls: tuple[str, str] | None,
) -> Server:
    server: Server = pn.serve(
        pages,
        port=chosen_port,
        address=address or config.app.host,
        websocket_origin=bokeh_websocket_origins(origins),
        extra_patterns=api_routes(current) + login_routes() + signin_routes(current),
        start=False,
        show=False,
        title="LabLink",
        http_server_kwargs=body_limits(config.app.max_body_bytes),
        **({"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}),
        **configure_auth(runtime, current),
    )
    return server


def tls_files(app: AppConfig) -> tuple[str, str] | None:
    """``(certfile, keyfile)`` when TLS is configured; both or neither must be set."""
    cert, key = app.ssl_certfile, app.ssl_keyfile
    if not cert and not key:
        return None
    if not (cert and key):
        raise InvalidInput("app.ssl_certfile and app.ssl_keyfile must be set together")
    return str(cert), str(key)


def body_limits(max_body_bytes: int) -> dict[str, int]:
    """The HTTP server refuses a larger body from its headers, before reading it; the buffer
    cap also bounds what a websocket message or a slow client can make it hold."""
    return {"max_body_size": max_body_bytes, "max_buffer_size": max_body_bytes + (64 << 10)}


def local_url(host: str, port: int, scheme: str = "http") -> str:
    """How VM processes on this machine reach the server (loopback unless bound elsewhere)."""
    if host in ("", "0.0.0.0", "::", "localhost", "127.0.0.1"):  # noqa: S104
        return f"{scheme}://127.0.0.1:{port}"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def shutdown_summary(local_vms: int, private_database: bool) -> str:
    """The one line ``lablink serve`` prints as it stops."""
    vms = f"{local_vms} local VM{'' if local_vms == 1 else 's'} stopped"
    database = "private database stopped" if private_database else "database left running"
    return f"LabLink stopped: {vms}, {database}."


def run_server(
    server: Server, runtime: Runtime, *, on_ready: Callable[[], None] | None = None
) -> str:
    """Serve until SIGINT/SIGTERM, then stop listening, close the pool and the private DB;
    returns :func:`shutdown_summary`."""
    loop = server.io_loop

    async def start() -> None:
        await runtime.start()
        log.info("%d startup objects left out of full collections", freeze_startup_heap())
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
        present = runtime.fleet.present() if runtime.fleet is not None else None
        private = runtime.services.local_postgres is not None
        # First, so no local VM process outlives the server (nor polls a closing one).
        runtime.stop_fleet()
        close_live_table(runtime)
        close_public_state(runtime)
        server.stop()
        asyncio.get_event_loop().run_until_complete(runtime.stop())
        runtime.close()
        install(None)
    return shutdown_summary(len(present or ()), private)
