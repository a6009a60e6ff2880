"""Talking to one chosen process of a `lablink serve --processes N`: connections pinned to it
by :class:`bench.server.Pinner`, its JSON endpoints, its pid, and how many VMs it holds."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from bench.rawhttp import HttpConnection, build_request
from bench.server import ADMIN_PASSWORD, ADMIN_USER, Pinner

REQUEST_TIMEOUT = 30.0


async def get_json(connection: HttpConnection, port: int, path: str, admin: bool = False) -> Any:
    """GET ``path`` on a pinned connection; its JSON (with the admin login if asked)."""
    login = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {login}"} if admin else None
    reply = await connection.request(build_request(path, port, headers=headers), REQUEST_TIMEOUT)
    if reply.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {reply.status} {reply.body[:200]!r}")
    return reply.json()


async def waiting_vms(connection: HttpConnection, port: int) -> int:
    """How many VMs the connection's process holds now."""
    return int((await get_json(connection, port, "/api/health"))["waiting_vms"])


async def wait_holding(connection: HttpConnection, port: int, count: int, timeout: float) -> int:
    """Poll the pinned process's health until it holds ``count`` VMs; the last count."""
    deadline, held = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        held = await waiting_vms(connection, port)
        if held >= count:
            break
        await asyncio.sleep(0.1)
    return held


async def probes_and_pids(
    pinner: Pinner, port: int, sides: tuple[str, ...]
) -> tuple[dict[str, HttpConnection], dict[str, int]]:
    """A pinned probe connection per process in ``sides``, and each one's pid (from
    /api/server)."""
    probes = {index: (await pinner.pinned(index, 1))[0] for index in sides}
    pids = {
        index: int((await get_json(c, port, "/api/server", admin=True))["pid"])
        for index, c in probes.items()
    }
    return probes, pids
