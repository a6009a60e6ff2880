"""Benchmark 6: how long a change takes to show in the open admin sessions' VM tables.

N sessions of /admin/instances are opened with bokeh.client on a threaded in-process Panel
server over a runtime built like `lablink serve` builds it (same NOTIFY listener, same live
table), with M VMs in the table. K assignments are then made through the Allocator, each
committing its NOTIFY, and every session's server-side Tabulator value (the frame its widget
model is synced from) is sampled until it shows the assignment. Run alone:
`python bench/dashboard.py [--quick]`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine

from bench.database import database_server, scratch_database
from bench.panel_sessions import (
    PAGE,
    START_TIMEOUT,
    Served,
    close_sessions,
    open_sessions,
    serving,
    until,
    without_table,
)
from bench.procstat import CpuMeter, machine_busy, self_cpu, task_cpu, tree_cpu
from bench.report import result, table_markdown, target
from bench.stats import latency_ms, percentile
from bench.table_sampler import SAMPLE_EVERY, Change, Sampler
from bench.vmtable import audit, crd_command, email, reset_free_vms

NAME = "dashboard"
DEADLINE = 10.0  # seconds a session may take to show a change before it counts as an error
SPACING = 1.3  # seconds between spaced commits: past the live table's 1 s read rate limit

COLUMNS = [
    ("vms", "VMs"),
    ("sessions", "sessions"),
    ("mode", "changes made"),
    ("changes", "changes"),
    ("seen", "seen (session x change)"),
    ("errors", "errors"),
    ("doubles", "doubles"),
    ("p50_ms", "COMMIT->table p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("spread_p50_ms", "first->last session p50 ms"),
    ("reads", "live-table reads"),
    ("reads_per_change", "reads/change"),
    ("swapped_pct", "value swapped %"),
    ("open_s", "open sessions s"),
    ("server_ms_per_change", "server CPU ms/change"),
    ("cpu_server", "server CPU %"),
    ("cpu_sampler", "sampler CPU %"),
    ("cpu_postgres", "PostgreSQL CPU %"),
    ("cpu_other", "other CPU %"),
]


def _assign(served: Served, index: int) -> Change:
    assignment = served.runtime.services.allocator.request_vm(email(index), crd_command(index))
    return Change(assignment.hostname, assignment.email, time.monotonic())


def _wait_seen(sampler: Sampler, deadline: float) -> None:
    while sampler.outstanding() and time.monotonic() < deadline:
        time.sleep(0.005)


def _meter(sampler: Sampler, postmaster: int | None) -> CpuMeter:
    """The server's CPU without the sampler's thread, the sampler's, PostgreSQL's."""
    meter = CpuMeter(
        {
            "cpu_server": lambda: self_cpu() - task_cpu(sampler.native_id or 0),
            "cpu_sampler": lambda: task_cpu(sampler.native_id or 0),
            "cpu_machine": machine_busy,
        }
    )
    if postmaster is not None:
        meter.sources["cpu_postgres"] = lambda: tree_cpu(postmaster)
    return meter


def _assign_all(served: Served, sampler: Sampler, count: int, first: int, spaced: bool) -> None:
    for i in range(count):
        change = _assign(served, first + i)
        sampler.add(change)
        if spaced:
            _wait_seen(sampler, change.committed_at + DEADLINE)
            time.sleep(max(0.0, change.committed_at + SPACING - time.monotonic()))
    if not spaced:
        _wait_seen(sampler, time.monotonic() + DEADLINE)


def _spreads(sampler: Sampler, count: int) -> list[float]:
    """Per change, from the first session showing it to the last."""
    spreads = []
    for index in range(count):
        times = [t for (_, c), t in sampler.latency.items() if c == index]
        if times:
            spreads.append(max(times) - min(times))
    return spreads


def measure(
    served: Served, count: int, *, spaced: bool, first: int, postmaster: int | None
) -> dict[str, Any]:
    """Make ``count`` assignments (emails ``first``..) and time each session seeing each."""
    views = served.views()
    sampler = Sampler(views)
    sampler.start()
    meter = _meter(sampler, postmaster)
    reads = served.table.reads
    meter.start()
    began = time.monotonic()
    _assign_all(served, sampler, count, first, spaced)
    wall = time.monotonic() - began
    cpu = meter.stop()
    reads = served.table.reads - reads
    sampler.stop()
    late = [pair for pair, seconds in sampler.latency.items() if seconds > DEADLINE]
    missed = sampler.outstanding() + late
    seen = [seconds for seconds in sampler.latency.values() if seconds <= DEADLINE]
    return {
        "vms": len(served.table.snapshot),
        "sessions": len(views),
        "mode": "one at a time" if spaced else "back to back",
        "changes": count,
        "seen": len(seen),
        "errors": len(missed),
        **latency_ms(seen),
        "spread_p50_ms": round(1000 * percentile(_spreads(sampler, count), 0.5), 2),
        "reads": reads,
        "reads_per_change": round(reads / count, 2) if count else 0.0,
        "swapped_pct": round(100.0 * sampler.swapped / len(seen), 1) if seen else 0.0,
        "server_ms_per_change": round(cpu["cpu_server"] * wall * 10 / count, 1),
        **{k: v for k, v in cpu.items() if k != "cpu_machine"},
        "told": [(c.email, c.hostname) for c in sampler.changes],
        "error_samples": [
            f"session {s} never showed {sampler.changes[c].hostname} within {DEADLINE:g} s"
            for (s, c) in missed[:5]
        ],
    }


def run_size(
    url: str, postmaster: int | None, vms: int, sessions: int, changes: int
) -> list[dict[str, Any]]:
    """One server over ``vms`` free VMs, ``sessions`` sessions; spaced then back-to-back."""
    engine = create_engine(url)
    try:
        reset_free_vms(engine, vms, prefix="dash-vm")
    finally:
        engine.dispose()
    rows: list[dict[str, Any]] = []
    with serving(url) as served:
        began = time.monotonic()
        clients = open_sessions(served.url, sessions)
        try:
            until(
                lambda: (
                    len(served.views()) == sessions
                    and all(len(t.value) == vms for t in served.views())
                ),
                START_TIMEOUT,
                f"{sessions} sessions showing {vms} VMs",
            )
            opened = round(time.monotonic() - began, 2)
            broken = without_table(clients)
            for spaced, first in ((True, 0), (False, changes)):
                row = measure(served, changes, spaced=spaced, first=first, postmaster=postmaster)
                row["open_s"] = opened
                if broken and not rows:
                    row["errors"] += broken
                    row["error_samples"].append(f"{broken} sessions' documents have no table")
                rows.append(row)
        finally:
            close_sessions(clients)
    engine = create_engine(url)
    try:
        checked = audit(engine, [pair for row in rows for pair in row.pop("told")])
    finally:
        engine.dispose()
    for row in rows:
        row["doubles"] = 0
    rows[-1]["doubles"] = checked.doubles
    rows[-1]["audit"] = checked.as_dict()
    return rows


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spaced = [row for row in rows if row["mode"] == "one at a time"]
    worst = max((row["p99_ms"] for row in spaced), default=0.0)
    failures = sum(row["errors"] + row["doubles"] for row in rows)
    return [
        target("one change in every open table, p99", "< 2,000 ms", worst, worst < 2000),
        target("sessions that missed a change, and doubles", "0", failures, failures == 0),
    ]


def run(quick: bool) -> dict[str, Any]:
    sizes, sessions, changes = ((50,), 3, 2) if quick else ((500, 5000), 20, 10)
    rows: list[dict[str, Any]] = []
    with database_server() as server:
        for vms in sizes:
            with scratch_database(server) as url:
                rows += run_size(url, server.postmaster_pid(), vms, sessions, changes)
    return result(
        NAME,
        f"an assignment reaching {sessions} open {PAGE} sessions' tables, "
        f"{changes} assignments per row",
        COLUMNS,
        rows,
        errors=sum(row["errors"] for row in rows),
        doubles=sum(row["doubles"] for row in rows),
        targets=_targets(rows),
        notes=[
            "Sessions are opened with bokeh.client's pull_session on a threaded in-process "
            "Panel server (runtime from build_runtime, no fleet); latency runs from "
            "Allocator.request_vm returning (its COMMIT, which sends the NOTIFY, acknowledged) "
            "to the session's server-side Tabulator value showing the new user_email. The "
            f"browser's share (websocket, rendering) is not included. Sampled every "
            f"{SAMPLE_EVERY * 1000:.0f} ms.",
            f"'one at a time': each change waits for every session, and the next comes "
            f"{SPACING} s after the previous COMMIT (past the live table's 1 s rate limit). "
            "'back to back': all changes are committed at once and coalesce into few reads.",
            "Reads include the live table's periodic reads (every 5 s, for the age columns). "
            "'value swapped': the update replaced the session's frame instead of patching it "
            "(a read that changes more than 200 cells, e.g. every age column ticking, swaps).",
            "Server CPU: this process (Panel server, live table, listener, Allocator calls) "
            "minus the sampler thread, over the row's wall time including the pauses.",
        ],
    )


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
