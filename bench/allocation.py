"""Benchmark 1: claims per second through `Allocator.request_vm`, from threads.

Each worker thread claims VMs for its own stream of emails until every free VM is taken;
then the database is audited for double assignments. Run alone: `python bench/allocation.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.database import TABLE, DatabaseServer, database_server, scratch_database
from bench.procstat import standard_meter
from bench.report import result, table_markdown, target
from bench.stats import latency_ms, rate
from bench.vmtable import audit, crd_command, email, reset_free_vms
from lablink_core.allocation import Allocator
from lablink_core.async_claim import AsyncClaims
from lablink_core.async_db import AsyncStatements
from lablink_core.db import make_engine
from lablink_core.errors import NoVMAvailable
from lablink_core.listener import libpq_dsn

NAME = "allocation"
LEVELS = (1, 10, 50)
TIME_LIMIT = 120.0
COLUMNS = [
    ("path", "path"),
    ("workers", "workers"),
    ("claims", "claims"),
    ("claims_per_s", "claims/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("refused", "refused (503)"),
    ("errors", "errors"),
    ("doubles", "doubles"),
    ("cpu_bench", "bench CPU %"),
    ("cpu_postgres", "PostgreSQL CPU %"),
    ("cpu_other", "other CPU %"),
]


@dataclass
class WorkerLog:
    """What one thread saw; merged after the threads end (no lock on the hot path)."""

    told: list[tuple[str, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def _worker(
    allocator: Allocator,
    tickets: itertools.count[int],
    total: int,
    start: threading.Barrier,
    deadline: float,
    log: WorkerLog,
) -> None:
    start.wait()
    for index in tickets:
        if index >= total or time.monotonic() > deadline:
            return
        address = email(index)
        began = time.perf_counter()
        try:
            assignment = allocator.request_vm(address, crd_command(index))
        except NoVMAvailable:
            log.refused += 1
            continue
        except Exception as error:  # counted and shown, never hidden
            log.errors.append(f"{type(error).__name__}: {error}")
            continue
        log.latencies.append(time.perf_counter() - began)
        log.told.append((address, assignment.hostname))


def _claim_all(allocator: Allocator, workers: int, total: int) -> tuple[list[WorkerLog], float]:
    tickets = itertools.count()
    start = threading.Barrier(workers + 1)
    deadline = time.monotonic() + TIME_LIMIT
    logs = [WorkerLog() for _ in range(workers)]
    threads = [
        threading.Thread(target=_worker, args=(allocator, tickets, total, start, deadline, log))
        for log in logs
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(TIME_LIMIT + 30)
    return logs, time.perf_counter() - began


def measure(server: DatabaseServer, url: str, workers: int, vms: int) -> dict[str, Any]:
    """One row: ``workers`` threads claim ``vms`` free VMs."""
    engine = make_engine(url, pool_size=workers)
    try:
        reset_free_vms(engine, vms)
        held = [engine.connect() for _ in range(workers)]  # open the pool before timing
        for connection in held:
            connection.close()
        meter = standard_meter(postmaster_pid=server.postmaster_pid())
        meter.start()
        logs, elapsed = _claim_all(Allocator(engine, TABLE), workers, vms)
        cpu = meter.stop()
        told = [pair for log in logs for pair in log.told]
        checked = audit(engine, told)
    finally:
        engine.dispose()
    refused = sum(log.refused for log in logs)
    failures = [message for log in logs for message in log.errors]
    return {
        "path": "threads",
        "workers": workers,
        "claims": len(told),
        "claims_per_s": rate(len(told), elapsed),
        **latency_ms([s for log in logs for s in log.latencies]),
        "refused": refused,
        # Every claim had a free VM waiting for it: a refusal, failure or missed claim is an error.
        "errors": vms - len(told),
        "doubles": checked.doubles,
        **cpu,
        "audit": checked.as_dict(),
        "error_samples": failures[:5],
    }


async def _claim_all_on_a_loop(
    claims: AsyncClaims, workers: int, total: int
) -> tuple[WorkerLog, float]:
    tickets, log = itertools.count(), WorkerLog()

    async def worker() -> None:
        for index in tickets:
            if index >= total:
                return
            address, began = email(index), time.perf_counter()
            try:
                assignment = await claims.request_vm(address, crd_command(index))
            except NoVMAvailable:
                log.refused += 1
                continue
            except Exception as error:
                log.errors.append(f"{type(error).__name__}: {error}")
                continue
            log.latencies.append(time.perf_counter() - began)
            log.told.append((address, assignment.hostname))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return log, time.perf_counter() - began


def measure_on_a_loop(server: DatabaseServer, url: str, workers: int, vms: int) -> dict[str, Any]:
    """One row of the server's own path: ``workers`` coroutines claim through AsyncClaims on
    one event loop, on as many asynchronous connections."""
    engine = make_engine(url, pool_size=1)
    statements = AsyncStatements(libpq_dsn(url), size=workers)
    claims = AsyncClaims(Allocator(engine, TABLE), statements)

    async def timed() -> tuple[WorkerLog, float, dict[str, float]]:
        await statements.warm(workers)  # open the connections before timing
        meter = standard_meter(postmaster_pid=server.postmaster_pid())
        meter.start()
        log, elapsed = await _claim_all_on_a_loop(claims, workers, vms)
        cpu = meter.stop()
        statements.close()
        return log, elapsed, cpu

    try:
        reset_free_vms(engine, vms)
        log, elapsed, cpu = asyncio.run(timed())
        checked = audit(engine, log.told)
    finally:
        engine.dispose()
    return {
        "path": "event loop",
        "workers": workers,
        "claims": len(log.told),
        "claims_per_s": rate(len(log.told), elapsed),
        **latency_ms(log.latencies),
        "refused": log.refused,
        "errors": vms - len(log.told),
        "doubles": checked.doubles,
        **cpu,
        "audit": checked.as_dict(),
        "error_samples": log.errors[:5],
    }


def run(quick: bool) -> dict[str, Any]:
    vms = 200 if quick else 2000
    with database_server() as server, scratch_database(server) as url:
        rows = [measure(server, url, workers, vms) for workers in LEVELS]
        rows += [measure_on_a_loop(server, url, workers, vms) for workers in LEVELS]
    at_ten = next(row["claims_per_s"] for row in rows if row["workers"] == 10)
    return result(
        NAME,
        f"claims/s through Allocator.request_vm, {vms:,} free VMs per row",
        COLUMNS,
        rows,
        errors=sum(row["errors"] for row in rows),
        doubles=sum(row["doubles"] for row in rows),
        targets=[target("claims/s at 10 workers", "> 1,000", at_ten, at_ten > 1000)],
        notes=[
            "Threads in the benchmark process call the allocator directly (one engine as the "
            "server makes it, pool = workers, no pre-ping); each claim is one UPDATE ... SKIP "
            "LOCKED in autocommit: one round trip.",
            "bench CPU is this Python process (the allocator's own code included).",
            "path 'threads': Allocator.request_vm from threads, the in-process claim the "
            "request_vm ratio targets are measured against. 'event loop': the server's own "
            "path for a first claim (AsyncClaims on psycopg2's asynchronous connections, "
            "one coroutine per worker, no thread).",
        ],
    )


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
