"""A `lablink serve` subprocess on a free port and its own database, as the benchmarks use it."""

from __future__ import annotations

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
from sqlalchemy import create_engine

from bench.procstat import process_cpu, raise_file_limit, rss_kib
from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.enrolment import VMEnrolment
from lablink_core.localdb import free_port

ADMIN_USER = "admin"
ADMIN_PASSWORD = "bench-admin-password"
START_TIMEOUT = 90.0


@dataclass
class ServerProcess:
    """One server process: start it, ask it how it is, measure it, stop it."""

    database_url: str
    vm_wait_seconds: float = 60.0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="lablink-bench-srv-")) / "server.log"
    )

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
            "LABLINK_ACCESS_REQUEST_RATE_PER_MINUTE": "100000000",
            "LABLINK_ACCESS_REQUEST_BURST": "100000000",
            "LABLINK_ACCESS_EMAIL_RATE_PER_MINUTE": "100000000",
        }

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "lablink_core.cli", "serve", "--host", "127.0.0.1"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
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
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited: {self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def info(self) -> dict[str, Any]:
        """GET /api/server with the admin login: waiting VMs, database backends, ..."""
        reply = httpx.get(f"{self.url}/api/server", auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=30)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def wait_for_waiting(self, count: int, timeout: float) -> int:
        """Poll until ``count`` VMs are held (or ``timeout`` passes); returns the last count."""
        deadline = time.monotonic() + timeout
        held = -1
        while time.monotonic() < deadline:
            held = int(self.info()["waiting_vms"])
            if held >= count:
                return held
            time.sleep(0.05)
        return held

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return process_cpu(self.pid)

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


@contextlib.contextmanager
def running_server(database_url: str, *, vm_wait_seconds: float = 60.0) -> Iterator[ServerProcess]:
    """A started server, stopped and cleaned up when the block ends."""
    server = ServerProcess(database_url, vm_wait_seconds=vm_wait_seconds)
    try:
        yield server.start()
    finally:
        server.cleanup()
