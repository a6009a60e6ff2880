"""Simulated VMs: each opens one connection and long-polls POST /vm_startup until it gets a
command. Thousands of them cost one asyncio protocol object each in the benchmark process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.rawhttp import HttpConnection, Response, build_request

CONNECT_CONCURRENCY = 200


@dataclass(eq=False)
class PollingVM:
    """One VM's long-poll: its connection and the reply it is waiting for."""

    hostname: str
    connection: HttpConnection | None = None
    reply: asyncio.Future[Response] | None = None
    error: str | None = None

    def response(self) -> Response | None:
        """The reply, if it arrived; records why not otherwise."""
        if self.reply is None or not self.reply.done() or self.reply.cancelled():
            return None
        failure = self.reply.exception()
        if failure is not None:
            self.error = f"{type(failure).__name__}: {failure}"
            return None
        return self.reply.result()

    def task(self) -> dict[str, Any] | None:
        """The task JSON the VM received (200 only)."""
        reply = self.response()
        if reply is None or reply.status != 200:
            return None
        body: dict[str, Any] = reply.json()
        return body


async def _start_one(
    vm: PollingVM, port: int, credentials: Mapping[str, str], gate: asyncio.Semaphore
) -> None:
    async with gate:
        try:
            vm.connection = await HttpConnection.open(port)
        except OSError as error:
            vm.error = f"connect: {error}"
            return
        request = build_request(
            "/vm_startup",
            port,
            {"hostname": vm.hostname, "generation": 0},
            {"Authorization": f"Bearer {credentials[vm.hostname]}"},
        )
        vm.reply = vm.connection.send(request)


async def start_polls(
    port: int, hostnames: list[str], credentials: Mapping[str, str]
) -> list[PollingVM]:
    """Connect every VM and send its /vm_startup; returns once all requests are sent."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    vms = [PollingVM(name) for name in hostnames]
    await asyncio.gather(*(_start_one(vm, port, credentials, gate) for vm in vms))
    return vms


async def wait_replies(vms: list[PollingVM], timeout: float) -> None:
    """Until every VM has its reply (or failure), or ``timeout`` seconds pass."""
    pending = [vm.reply for vm in vms if vm.reply is not None and not vm.reply.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def close_all(vms: list[PollingVM]) -> None:
    for vm in vms:
        if vm.reply is not None and not vm.reply.done():
            vm.reply.cancel()
        if vm.connection is not None:
            with contextlib.suppress(Exception):
                vm.connection.close()


async def until(condition: Any, timeout: float, interval: float = 0.05) -> bool:
    """Await a blocking ``condition()`` (run in a thread) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A status request may time out while the server is flooded: that is "not yet".
        with contextlib.suppress(Exception):
            if await asyncio.to_thread(condition):
                return True
        await asyncio.sleep(interval)
    return False
