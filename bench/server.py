"""A `lablink serve` subprocess on a free port and its own database, as the benchmarks use it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from bench.procstat import (
    CpuMeter,
    children_of,
    process_cpu,
    raise_file_limit,
    rss_kib,
    standard_meter,
)
from bench.rawhttp import HttpConnection, Response, build_request
from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.enrolment import VMEnrolment
from lablink_core.localdb import free_port

ADMIN_USER = "admin"
ADMIN_PASSWORD = "bench-admin-password"
START_TIMEOUT = 90.0
PROBE_TIMEOUT = 30.0
PIN_BATCH = 200
PIN_TRIES = 20  # connections opened per one kept, at most: beyond that the kernel never spreads
PROCESS_HEADER = "x-lablink-process"  # rawhttp and httpx both give header names lowercased


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``: the forked children of `lablink serve --processes`."""
    found, frontier = [], [pid]
    while frontier:
        children = children_of(frontier.pop())
        found += children
        frontier += children
    return found


@dataclass
class ServerProcess:
    """One `lablink serve` (``processes`` forked server processes behind one port): start
    it, ask it how it is, measure it, stop it."""

    database_url: str
    vm_wait_seconds: float = 60.0
    processes: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="lablink-bench-srv-")) / "server.log"
    )
    _answered: set[str] = field(default_factory=set, init=False, repr=False)  # healthy indices

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.pid

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "LABLINK_APP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "LABLINK_APP_ADMIN_USER": ADMIN_USER,
            "LABLINK_APP_VM_WAIT_SECONDS": str(self.vm_wait_seconds),
            # The load generator is one address asking thousands of times a second: the
            # limiter still runs (its cost is measured) but never refuses.
            "LABLINK_ACCESS_REQUEST_RATE_PER_MINUTE": "100000",
            "LABLINK_ACCESS_REQUEST_BURST": "100000",
            "LABLINK_ACCESS_EMAIL_RATE_PER_MINUTE": "100000",
        }

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "lablink_core.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--processes", str(self.processes)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=raise_file_limit,  # the server holds thousands of sockets
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {self.log_tail()}")
            time.sleep(0.1)
        return self

    def _healthy(self) -> bool:
        """Healthy once every process has answered /api/health (one answer for one process)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited: {self.log_tail()}")
        try:
            # A new connection each time: the kernel picks the process per connection.
            reply = httpx.get(f"{self.url}/api/health", headers={"Connection": "close"}, timeout=2)
        except httpx.HTTPError:
            return False
        if reply.status_code != 200:
            return False
        self._answered.add(reply.headers.get(PROCESS_HEADER, "0"))
        return len(self._answered) >= self.processes

    def info(self) -> dict[str, Any]:
        """GET /api/server with the admin login: waiting VMs, database backends, ..."""
        reply = httpx.get(f"{self.url}/api/server", auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=30)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def waiting_total(self) -> int:
        """VMs held by all the server's processes: one process's /api/server, or the summed
        ``lablink_waiting_vms`` of /metrics (any process answers it for all of them)."""
        if self.processes == 1:
            return int(self.info()["waiting_vms"])
        reply = httpx.get(
            f"{self.url}/metrics",
            auth=(ADMIN_USER, ADMIN_PASSWORD),
            headers={"Connection": "close"},
            timeout=30,
        )
        reply.raise_for_status()
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(reply.text)
                for sample in family.samples
                if sample.name == "lablink_waiting_vms"
            )
        )

    def pids(self) -> list[int]:
        """The server's process and, with ``processes`` > 1, the children it forked."""
        return [self.pid, *descendants(self.pid)] if self.processes > 1 else [self.pid]

    def rss_kib(self) -> int:
        """Resident memory of all the server's processes (pages the fork shares count once
        per process: an upper bound with ``processes`` > 1)."""
        return sum(rss_kib(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """CPU seconds of the parent and of every live child (a child that died and was
        restarted takes its seconds with it: the supervised children do not die in a run)."""
        return sum(process_cpu(pid) for pid in self.pids())

    def meter(self, postmaster_pid: int | None) -> CpuMeter:
        """standard_meter with ``cpu_server`` summed over all the server's processes."""
        meter = standard_meter(None, postmaster_pid)
        meter.sources = {"cpu_server": self.cpu_seconds, **meter.sources}
        return meter

    def enrol(self, hostnames: list[str]) -> dict[str, str]:
        """Enrol these VMs on the server's database; their credentials by hostname."""
        engine = create_engine(self.database_url)
        try:
            credentials = VMCredentials.from_store(SecretStore(engine))
            return VMEnrolment(engine, "vms", credentials).enrol_many(hostnames)
        finally:
            engine.dispose()

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
            self.log_path.parent.rmdir()


@dataclass
class Pinner:
    """Opens connections to one port and keeps those a given process accepted.

    Each process of `lablink serve --processes N` listens on its own socket of the port and
    the kernel picks one per new connection (by a hash of it), where a keep-alive
    connection then stays. So each connection is probed with a cheap GET /api/health, kept
    if its reply's X-LabLink-Process names the wanted process, closed otherwise.
    """

    port: int
    opened: int = 0

    async def pinned(self, index: str, count: int) -> list[HttpConnection]:
        kept: list[HttpConnection] = []
        limit = self.opened + PIN_TRIES * count + PIN_BATCH
        while len(kept) < count:
            if self.opened >= limit:
                raise RuntimeError(f"{len(kept)} of {count} connections reached process {index}")
            batch = min(PIN_BATCH, 2 * (count - len(kept)))
            self.opened += batch
            for connection, index_seen in await self._probe(batch):
                if index_seen == index and len(kept) < count:
                    kept.append(connection)
                else:
                    connection.close()
        return kept

    async def _probe(self, batch: int) -> list[tuple[HttpConnection, str | None]]:
        """``batch`` new connections, each with the process that answered its health GET."""
        connections = await asyncio.gather(*(HttpConnection.open(self.port) for _ in range(batch)))
        probe = build_request("/api/health", self.port)
        replies = await asyncio.gather(
            *(c.request(probe, PROBE_TIMEOUT) for c in connections), return_exceptions=True
        )
        return [(c, _answered_by(r)) for c, r in zip(connections, replies, strict=True)]


def _answered_by(reply: Response | BaseException) -> str | None:
    """The process index a healthy reply names (None for a failed probe)."""
    if isinstance(reply, Response) and reply.status == 200:
        return reply.headers.get(PROCESS_HEADER)
    return None


@contextlib.contextmanager
def running_server(
    database_url: str, *, vm_wait_seconds: float = 60.0, processes: int = 1
) -> Iterator[ServerProcess]:
    """A started server, stopped and cleaned up when the block ends."""
    server = ServerProcess(database_url, vm_wait_seconds=vm_wait_seconds, processes=processes)
    try:
        yield server.start()
    finally:
        server.cleanup()
