"""Benchmark 2: correct assignments per second of POST /request_vm against one server process.

N keep-alive clients (raw HTTP/1.1 on asyncio) each send requests one after another, each for
a new email, until every free VM is taken. An assignment counts only if the database agrees
with what the client was told. Run alone: `python bench/request_vm.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine

from bench.database import DatabaseServer, database_server, scratch_database
from bench.procstat import raise_file_limit, standard_meter
from bench.rawhttp import HttpConnection, build_request
from bench.report import result, table_markdown, target
from bench.server import ServerProcess, running_server
from bench.stats import latency_ms, rate
from bench.vmtable import audit, crd_command, email, reset_free_vms

NAME = "request_vm"
LEVELS = (1, 10, 50)
TIME_LIMIT = 120.0
REQUEST_TIMEOUT = 30.0
COLUMNS = [
    ("clients", "clients"),
    ("requests", "requests"),
    ("correct", "correct"),
    ("correct_per_s", "correct/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("errors", "errors"),
    ("doubles", "doubles"),
    ("cpu_bench", "generator CPU %"),
    ("cpu_server", "server CPU %"),
    ("cpu_postgres", "PostgreSQL CPU %"),
    ("cpu_other", "other CPU %"),
]


@dataclass
class LoadLog:
    """What the clients saw, in arrival order."""

    told: list[tuple[str, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _client(
    port: int, tickets: itertools.count[int], total: int, deadline: float, log: LoadLog
) -> None:
    connection = await HttpConnection.open(port)
    try:
        for index in tickets:
            if index >= total or time.monotonic() > deadline:
                return
            address = email(index)
            payload = {"email": address, "crd_command": crd_command(index)}
            request = build_request("/request_vm", port, payload)
            began = time.monotonic()
            try:
                reply = await connection.request(request, REQUEST_TIMEOUT)
            except Exception as error:  # timeouts, resets, protocol errors: all counted
                log.errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = await HttpConnection.open(port)
                continue
            log.latencies.append(reply.arrived - began)
            body = reply.json() if reply.status == 200 else None
            if body is None or body.get("email") != address:
                log.errors.append(f"HTTP {reply.status}: {reply.body[:200]!r}")
                continue
            log.told.append((address, str(body["hostname"])))
    finally:
        connection.close()


async def _warm_up(port: int, clients: int) -> None:
    """Open the server's pool and executor threads before timing (GET /api/health)."""
    for _ in range(2):
        connections = [await HttpConnection.open(port) for _ in range(clients)]
        request = build_request("/api/health", port)
        await asyncio.gather(*(c.request(request, REQUEST_TIMEOUT) for c in connections))
        for connection in connections:
            connection.close()


async def _load(
    app: ServerProcess, postmaster: int | None, clients: int, total: int
) -> tuple[LoadLog, float, dict[str, float]]:
    await _warm_up(app.port, clients)
    log, tickets = LoadLog(), itertools.count()
    deadline = time.monotonic() + TIME_LIMIT
    meter = standard_meter(app.pid, postmaster)
    meter.start()
    began = time.monotonic()
    await asyncio.gather(
        *(_client(app.port, tickets, total, deadline, log) for _ in range(clients))
    )
    elapsed = time.monotonic() - began
    return log, elapsed, meter.stop()


def measure(
    server: DatabaseServer, app: ServerProcess, engine: Engine, clients: int, vms: int
) -> dict[str, Any]:
    """One row: ``clients`` clients take ``vms`` free VMs through the server."""
    reset_free_vms(engine, vms)
    time.sleep(0.5)  # let the server's listener drain the registrations' notifications
    log, elapsed, cpu = asyncio.run(_load(app, server.postmaster_pid(), clients, vms))
    checked = audit(engine, log.told)
    return {
        "clients": clients,
        "requests": len(log.latencies) + len(log.errors),
        "correct": checked.correct,
        "correct_per_s": rate(checked.correct, elapsed),
        **latency_ms(log.latencies),
        # Every request had a free VM: anything but a confirmed assignment is an error.
        "errors": len(log.errors) + (vms - len(log.told) - len(log.errors)),
        "doubles": checked.doubles,
        **cpu,
        "audit": checked.as_dict(),
        "error_samples": log.errors[:5],
    }


def run(quick: bool) -> dict[str, Any]:
    raise_file_limit()
    vms = 200 if quick else 3000
    with (
        database_server() as server,
        scratch_database(server) as url,
        running_server(url) as app,
    ):
        engine = create_engine(url)
        try:
            rows = [measure(server, app, engine, clients, vms) for clients in LEVELS]
        finally:
            engine.dispose()
    at_fifty = next(row["correct_per_s"] for row in rows if row["clients"] == 50)
    errors = sum(row["errors"] for row in rows)
    doubles = sum(row["doubles"] for row in rows)
    return result(
        NAME,
        f"correct assignments/s of POST /request_vm, one server process, {vms:,} VMs per row",
        COLUMNS,
        rows,
        errors=errors,
        doubles=doubles,
        targets=[
            target("correct/s at 50 clients", ">= 1,000", at_fifty, at_fifty >= 1000),
            target("errors", "0", errors, errors == 0),
            target("doubles", "0", doubles, doubles == 0),
        ],
        notes=[
            "Clients: keep-alive HTTP/1.1 on asyncio protocols in one benchmark process "
            "(generator CPU). Latency: request written to response fully read.",
        ],
    )


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
