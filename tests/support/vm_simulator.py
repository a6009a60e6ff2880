"""Simulated VMs for fault-tolerance tests: each long-polls /vm_startup like lablink-client,
retrying through connection errors and 5xx, and records every task it receives. Many of them
share one asyncio loop in a worker thread (hundreds of real client processes would not fit)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SimulatedFleet:
    """N simulated VMs polling one allocator URL; ``tasks[hostname]`` is the latest task."""

    url: str
    credentials: dict[str, str]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SimulatedFleet:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=len(self.credentials) + 10)
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=30) as client:
            await asyncio.gather(*(self._vm(client, name) for name in self.credentials))

    async def _vm(self, client: httpx.AsyncClient, hostname: str) -> None:
        generation, delay = 0, 0.05
        while not self._stop.is_set():
            headers = {"Authorization": f"Bearer {self.credentials[hostname]}"}
            try:
                reply = await client.post(
                    "/vm_startup",
                    json={"hostname": hostname, "generation": generation},
                    headers=headers,
                )
            except httpx.TransportError:
                self.transport_errors += 1
                await asyncio.sleep(delay)  # the allocator is down: back off like the real client
                delay = min(delay * 2, 0.5)
                continue
            self.statuses[reply.status_code] += 1
            if reply.status_code >= 500:
                await asyncio.sleep(delay)  # a retryable answer: back off, as lablink-client does
                delay = min(delay * 2, 0.5)
                continue
            delay = 0.05
            if reply.status_code == 200:
                task = reply.json()
                generation = task["generation"]
                # A rotated credential (the VM was released under reuse) replaces the old.
                self.credentials[hostname] = task.get("credential", self.credentials[hostname])
                self.tasks[hostname] = task
