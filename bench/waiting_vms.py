"""Benchmark 3: N VMs long-poll POST /vm_startup against the server (one process, and
1,000 of them on `--processes 2` too), then all are assigned by one SQL statement and each
reply's arrival is timed from that COMMIT.

Reports how many the server held, its RSS, the database connections it used, and the wake
latency, beside what a bare Tornado application takes to answer as many held requests at once
(:mod:`bench.tornado_floor`). Run alone: `python bench/waiting_vms.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from bench.database import DatabaseServer, database_server, scratch_database
from bench.procstat import raise_file_limit
from bench.report import result, table_markdown, target
from bench.server import ServerProcess, running_server
from bench.stats import latency_ms
from bench.tornado_floor import measure as tornado_floor
from bench.vmsim import PollingVM, close_all, start_polls, until, wait_replies
from bench.vmtable import hostnames

NAME = "waiting_vms"
VM_WAIT_SECONDS = 300.0
HOLD_TIMEOUT = 180.0
WAKE_TIMEOUT = 60.0
REDIRECT = "https://remotedesktop.google.com/_/oauthredirect"
COLUMNS = [
    ("vms", "VMs"),
    ("processes", "processes"),
    ("held", "held"),
    ("ramp_s", "connect+register s"),
    ("rss_idle_mib", "server RSS idle MiB"),
    ("rss_held_mib", "server RSS held MiB"),
    ("kib_per_vm", "KiB/VM"),
    ("cpu_holding", "server CPU holding %"),
    ("backends", "DB backends"),
    ("backends_waiting", "DB conns for waiting"),
    ("commit_ms", "COMMIT ms"),
    ("p50_ms", "wake p50 ms"),
    ("p99_ms", "wake p99 ms"),
    ("max_ms", "wake max ms"),
    ("woken", "woken"),
    ("errors", "errors"),
    ("server_ms_per_wake", "server CPU ms/wake"),
    ("cpu_bench", "generator CPU % (wake)"),
    ("cpu_server", "server CPU % (wake)"),
    ("cpu_other", "other CPU % (wake)"),
]
# Every waiting VM gets a command whose code names it, so each reply can be checked.
ASSIGN_ALL = text(
    """
    UPDATE vms SET status = 'assigned', user_email = hostname || '@bench.example.org',
        crd_code = '4/0Wake_' || hostname, crd_redirect_url = :url,
        pin = lpad((abs(hashtext(hostname)) % 1000000)::text, 6, '0'),
        generation = generation + 1, assigned_at = now()
    WHERE status = 'available' AND user_email IS NULL
    """
)
BACKENDS = text(
    """
    SELECT application_name, state, count(*) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
    GROUP BY application_name, state
    """
)


def assign_all(url: str) -> tuple[float, float, int]:
    """One UPDATE assigning every free VM; returns (COMMIT sent, COMMIT returned, rows)."""
    engine = create_engine(url, connect_args={"application_name": "lablink-bench"})
    try:
        with engine.connect() as connection:
            rows = connection.execute(ASSIGN_ALL, {"url": REDIRECT}).rowcount
            sent = time.monotonic()
            connection.commit()
            return sent, time.monotonic(), int(rows)
    finally:
        engine.dispose()


def backends(url: str) -> dict[str, int]:
    """The server's connections to this database: all, the listener, and the busy ones."""
    engine = create_engine(url, connect_args={"application_name": "lablink-bench"})
    try:
        with engine.connect() as connection:
            rows = connection.execute(BACKENDS).all()
    finally:
        engine.dispose()
    mine = [r for r in rows if r.application_name != "lablink-bench"]
    listener = sum(r.n for r in mine if r.application_name == "lablink-listener")
    busy = sum(r.n for r in mine if r.application_name != "lablink-listener" and r.state != "idle")
    return {"backends": sum(r.n for r in mine), "listener": listener, "busy": busy}


def _check_wakes(vms: list[PollingVM], sent: float) -> tuple[list[float], list[str]]:
    latencies, errors = [], []
    for vm in vms:
        task, reply = vm.task(), vm.response()
        if task is None or reply is None:
            errors.append(vm.error or f"{vm.hostname}: no command ({reply and reply.status})")
        elif task.get("hostname") != vm.hostname or task.get("code") != f"4/0Wake_{vm.hostname}":
            errors.append(f"{vm.hostname}: got someone else's command {task}")
        else:
            latencies.append(reply.arrived - sent)
    return latencies, errors


async def _hold(app: ServerProcess, url: str, count: int) -> tuple[list[PollingVM], dict[str, Any]]:
    names = hostnames(count, prefix="wait")
    credentials = await asyncio.to_thread(app.enrol, names)
    began = time.monotonic()
    vms = await start_polls(app.port, names, credentials)
    await until(lambda: app.waiting_total() >= count, HOLD_TIMEOUT)
    ramp = time.monotonic() - began
    await asyncio.sleep(1.0)  # the registrations' notifications settle
    cpu_before, cpu_began = app.cpu_seconds(), time.monotonic()
    await asyncio.sleep(2.0)
    holding = 100 * (app.cpu_seconds() - cpu_before) / (time.monotonic() - cpu_began)
    seen = await asyncio.to_thread(backends, url)
    return vms, {
        "held": await asyncio.to_thread(app.waiting_total),
        "ramp_s": round(ramp, 2),
        "rss_held_mib": round(app.rss_kib() / 1024, 1),
        "cpu_holding": round(holding, 1),
        "backends": seen["backends"],
        "backends_waiting": seen["listener"] + seen["busy"],
    }


async def _hold_and_wake(
    app: ServerProcess, url: str, count: int, postmaster: int | None
) -> dict[str, Any]:
    vms, row = await _hold(app, url, count)
    try:
        meter = app.meter(postmaster)
        meter.start()
        sent, done, assigned = await asyncio.to_thread(assign_all, url)
        await wait_replies(vms, WAKE_TIMEOUT)
        window, cpu = time.monotonic() - sent, meter.stop()
        latencies, errors = _check_wakes(vms, sent)
    finally:
        close_all(vms)
    return {
        **row,
        "assigned_rows": assigned,
        "commit_ms": round(1000 * (done - sent), 2),
        **latency_ms(latencies),
        "woken": len(latencies),
        "errors": len(errors),
        **cpu,
        "server_ms_per_wake": round(10 * cpu["cpu_server"] * window / max(1, len(latencies)), 3),
        "error_samples": errors[:5],
    }


def measure(server: DatabaseServer, count: int, processes: int = 1) -> dict[str, Any]:
    with (
        scratch_database(server) as url,
        running_server(url, vm_wait_seconds=VM_WAIT_SECONDS, processes=processes) as app,
    ):
        idle = app.rss_kib()
        row = asyncio.run(_hold_and_wake(app, url, count, server.postmaster_pid()))
    held_kib = row["rss_held_mib"] * 1024
    return {
        "vms": count,
        "processes": processes,
        "rss_idle_mib": round(idle / 1024, 1),
        "kib_per_vm": round((held_kib - idle) / count, 1),
        **row,
    }


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    biggest = max(rows, key=lambda row: row["vms"])
    held, waiting = biggest["held"], biggest["backends_waiting"]
    targets = [
        target(
            f"VMs held by one process (of {biggest['vms']:,})", "all", held, held == biggest["vms"]
        ),
        target("DB connections used for waiting", "<= 2", waiting, waiting <= 2),
    ]
    at_thousand = {row["processes"]: row["p99_ms"] for row in rows if row["vms"] == 1000}
    if at_thousand:
        best = min(at_thousand.values())
        shown = ", ".join(f"{count} process(es): {p99} ms" for count, p99 in at_thousand.items())
        targets.append(
            target("wake p99 at 1,000 (best process count)", "< 100 ms", shown, best < 100)
        )
    return targets


def run(quick: bool) -> dict[str, Any]:
    raise_file_limit()
    plan = ((200, 1), (200, 2)) if quick else ((1000, 1), (1000, 2), (10000, 1))
    with database_server() as server:
        rows = [measure(server, count, processes) for count, processes in plan]
    floor = tornado_floor(200 if quick else 1000)
    return result(
        NAME,
        "VMs long-polling /vm_startup, then woken by one UPDATE",
        COLUMNS,
        rows,
        errors=sum(row["errors"] for row in rows),
        doubles=0,
        targets=_targets(rows),
        notes=[
            "Wake latency: from the moment the assigning COMMIT is sent to each VM's reply "
            "being read by the generator (one asyncio process holding every connection).",
            "DB conns for waiting: the server's LISTEN connection plus its non-idle pool "
            "connections while all VMs wait (idle pool connections left from registration "
            "are in DB backends).",
            "processes 2: `lablink serve --processes 2`; the kernel spreads the VMs' "
            "connections over both, and each process answers its own from its own LISTEN.",
            f"Floor, same run: a bare Tornado application (no Panel, no database) answering "
            f"{floor['requests']:,} held requests at once: p50 {floor['p50_ms']} ms, p99 "
            f"{floor['p99_ms']} ms, max {floor['max_ms']} ms (bench/tornado_floor.py).",
        ],
    ) | {"tornado_floor": floor}


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
