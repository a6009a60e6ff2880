"""Benchmark 7: the assignment crosses processes. One `lablink serve --processes 2` on one
database: N simulated VMs long-poll POST /vm_startup on process 0 only, 10 researchers'
keep-alive clients POST /request_vm on process 1 only, and take every VM. Each assignment is
committed by process 1 and must reach its VM through process 0's LISTEN on PostgreSQL.

Pinning connections to a process: the kernel, not the client, picks which forked process
accepts a connection (they share one listening socket), and a keep-alive connection stays
with the process that accepted it. So the benchmark opens connections in batches, sends one
cheap `GET /api/health` on each, keeps those whose reply carries `X-LabLink-Process: 0` (for
VMs) or `1` (for researchers), and closes the rest; the kept connections then carry the
VMs' polls and the researchers' requests. Every reply's header is checked again: a request
answered by the wrong process is an error.

Measured: correct assignments/s (database-audited, from the first request to the last
researcher's answer), wake latency (from the researcher's 200 being read to the VM's
/vm_startup reply being read, and from the request being sent to that VM reply; the commit
lies between the two), errors, doubles, whether each VM received the CRD code its own
researcher sent, and the CPU of each side. Run alone: `python bench/cross_process.py
[--quick]`.
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

from sqlalchemy import create_engine

from bench.database import database_server, scratch_database
from bench.pinned import REQUEST_TIMEOUT, probes_and_pids, wait_holding, waiting_vms
from bench.procstat import CpuMeter, machine_busy, process_cpu, raise_file_limit, self_cpu, tree_cpu
from bench.rawhttp import HttpConnection, build_request
from bench.report import result, table_markdown, target
from bench.server import PROCESS_HEADER, Pinner, ServerProcess, running_server
from bench.stats import latency_ms, rate
from bench.vmsim import PollingVM, close_all, wait_replies
from bench.vmtable import Audit, audit, crd_code, crd_command, email, hostnames

NAME = "cross_process"
VM_SIDE, RESEARCHER_SIDE = "0", "1"
RESEARCHERS = 10
VM_WAIT_SECONDS = 300.0
HOLD_TIMEOUT = 180.0
WAKE_TIMEOUT = 60.0
COLUMNS = [
    ("vms", "VMs"),
    ("researchers", "researcher clients"),
    ("correct", "correct"),
    ("correct_per_s", "correct/s"),
    ("vm_own_command", "VMs with own researcher's code"),
    ("wake_p50_ms", "wake after 200 p50 ms"),
    ("wake_p99_ms", "wake after 200 p99 ms"),
    ("sent_p50_ms", "request to VM p50 ms"),
    ("sent_p99_ms", "request to VM p99 ms"),
    ("request_p50_ms", "request p50 ms"),
    ("last_vm_s", "last VM command s"),
    ("pinning_opened", "connections opened to pin"),
    ("errors", "errors"),
    ("doubles", "doubles"),
    ("cpu_bench", "generator CPU %"),
    ("cpu_vm_side", "process 0 (VMs) CPU %"),
    ("cpu_researcher_side", "process 1 (researchers) CPU %"),
    ("cpu_parent", "parent CPU %"),
    ("cpu_postgres", "PostgreSQL CPU %"),
    ("cpu_other", "other CPU %"),
]


def _poll_request(port: int, hostname: str, credential: str) -> bytes:
    body = {"hostname": hostname, "generation": 0}
    return build_request("/vm_startup", port, body, {"Authorization": f"Bearer {credential}"})


async def _hold(
    app: ServerProcess, pinner: Pinner, names: list[str], probe: HttpConnection
) -> tuple[list[PollingVM], int]:
    """Every VM long-polling on a connection of process 0; the count process 0 holds."""
    credentials = await asyncio.to_thread(app.enrol, names)
    connections = await pinner.pinned(VM_SIDE, len(names))
    vms = [PollingVM(name, connection) for name, connection in zip(names, connections, strict=True)]
    for vm in vms:
        assert vm.connection is not None
        vm.reply = vm.connection.send(
            _poll_request(app.port, vm.hostname, credentials[vm.hostname])
        )
    held = await wait_holding(probe, app.port, len(names), HOLD_TIMEOUT)
    await asyncio.sleep(1.0)  # the registrations' notifications settle
    return vms, held


@dataclass
class Answers:
    """What the researchers were told: index -> (hostname, request sent, reply read)."""

    told: dict[int, tuple[str, float, float]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _researcher(
    connection: HttpConnection,
    port: int,
    tickets: itertools.count[int],
    total: int,
    answers: Answers,
) -> None:
    """One keep-alive client of process 1, asking for VMs one after another."""
    for index in tickets:
        if index >= total:
            return
        payload = {"email": email(index), "crd_command": crd_command(index)}
        sent = time.monotonic()
        try:
            reply = await connection.request(
                build_request("/request_vm", port, payload), REQUEST_TIMEOUT
            )
        except Exception as error:  # a pinned connection cannot be reopened: this client stops
            answers.errors.append(f"researcher {index}: {type(error).__name__}: {error}")
            return
        answers.latencies.append(reply.arrived - sent)
        body = reply.json() if reply.status == 200 else None
        if reply.headers.get(PROCESS_HEADER) != RESEARCHER_SIDE:
            answers.errors.append(
                f"researcher {index} answered by {reply.headers.get(PROCESS_HEADER)}"
            )
        elif body is None or body.get("email") != email(index):
            answers.errors.append(f"researcher {index}: HTTP {reply.status}: {reply.body[:200]!r}")
        else:
            answers.told[index] = (str(body["hostname"]), sent, reply.arrived)


def _meter(app: ServerProcess, pids: dict[str, int], postmaster: int | None) -> CpuMeter:
    sources = {
        "cpu_bench": self_cpu,
        "cpu_vm_side": lambda: process_cpu(pids[VM_SIDE]),
        "cpu_researcher_side": lambda: process_cpu(pids[RESEARCHER_SIDE]),
        "cpu_parent": lambda: process_cpu(app.pid),
        "cpu_machine": machine_busy,
    }
    if postmaster is not None:
        sources["cpu_postgres"] = lambda: tree_cpu(postmaster)
    return CpuMeter(sources)


def _vm_results(vms: list[PollingVM], answers: Answers, began: float) -> dict[str, Any]:
    """Each VM must get, from process 0, exactly the code its own researcher sent."""
    by_host = {host: (index, sent, read) for index, (host, sent, read) in answers.told.items()}
    wakes, from_sent, arrivals, errors = [], [], [], []
    for vm in vms:
        task, reply = vm.task(), vm.response()
        if vm.hostname not in by_host:
            errors.append(f"{vm.hostname}: no researcher was given it")
            continue
        index, sent, read = by_host[vm.hostname]
        if task is None or reply is None:
            errors.append(vm.error or f"{vm.hostname} got no command")
        elif reply.headers.get(PROCESS_HEADER) != VM_SIDE:
            errors.append(f"{vm.hostname} answered by process {reply.headers.get(PROCESS_HEADER)}")
        elif task.get("code") != crd_code(index):
            errors.append(f"{vm.hostname} got {task.get('code')}, not {crd_code(index)}")
        else:
            wakes.append(reply.arrived - read)
            from_sent.append(reply.arrived - sent)
            arrivals.append(reply.arrived - began)
    wake, sent_ms = latency_ms(wakes), latency_ms(from_sent)
    return {
        "vm_own_command": len(wakes),
        "wake_p50_ms": wake["p50_ms"],
        "wake_p99_ms": wake["p99_ms"],
        "wake_max_ms": wake["max_ms"],
        "sent_p50_ms": sent_ms["p50_ms"],
        "sent_p99_ms": sent_ms["p99_ms"],
        "last_vm_s": round(max(arrivals, default=0.0), 3),
        "vm_errors": errors,
    }


async def _take_all(
    app: ServerProcess, vms: list[PollingVM], clients: list[HttpConnection], meter: CpuMeter
) -> tuple[Answers, dict[str, Any]]:
    """The researchers take every VM; the VMs' commands are awaited and checked."""
    answers, tickets = Answers(), itertools.count()
    meter.start()
    began = time.monotonic()
    await asyncio.gather(*(_researcher(c, app.port, tickets, len(vms), answers) for c in clients))
    answered = time.monotonic()
    assigned = {host for host, _, _ in answers.told.values()}
    await wait_replies([vm for vm in vms if vm.hostname in assigned], WAKE_TIMEOUT)
    outcome = {**meter.stop(), **_vm_results(vms, answers, began)}
    outcome["elapsed_s"] = answered - began
    outcome.update({f"request_{k}": v for k, v in latency_ms(answers.latencies).items()})
    return answers, outcome


async def _exchange(
    app: ServerProcess, postmaster: int | None, count: int
) -> tuple[Answers, dict[str, Any]]:
    pinner = Pinner(app.port)
    probes, pids = await probes_and_pids(pinner, app.port, (VM_SIDE, RESEARCHER_SIDE))
    vms: list[PollingVM] = []
    clients: list[HttpConnection] = []
    try:
        vms, held = await _hold(app, pinner, hostnames(count, prefix="xproc"), probes[VM_SIDE])
        other = await waiting_vms(probes[RESEARCHER_SIDE], app.port)
        clients = await pinner.pinned(RESEARCHER_SIDE, RESEARCHERS)
        answers, outcome = await _take_all(app, vms, clients, _meter(app, pids, postmaster))
    finally:
        close_all(vms)
        for connection in [*clients, *probes.values()]:
            connection.close()
    outcome.update(held=held, held_by_process_1=other, pinning_opened=pinner.opened)
    return answers, outcome


def _row(answers: Answers, outcome: dict[str, Any], checked: Audit, count: int) -> dict[str, Any]:
    errors = answers.errors + outcome.pop("vm_errors")
    if outcome["held"] != count:
        errors.append(f"process 0 held {outcome['held']} of {count} VMs")
    if outcome["held_by_process_1"]:
        errors.append(f"process 1 held {outcome['held_by_process_1']} VMs (should be none)")
    return {
        "vms": count,
        "researchers": RESEARCHERS,
        "correct": checked.correct,
        "correct_per_s": rate(checked.correct, outcome.pop("elapsed_s")),
        **outcome,
        "errors": len(errors),
        "doubles": checked.doubles,
        "audit": checked.as_dict(),
        "error_samples": errors[:5],
    }


NOTES = [
    "Connections are pinned to a process by keeping those whose GET /api/health reply "
    "names it (X-LabLink-Process); 'connections opened to pin' counts all opened.",
    "correct/s: database-audited assignments from the first request to the last "
    "researcher's answer. Wake after 200: from the researcher's 200 being read to its "
    "VM's /vm_startup reply being read (negative when the VM was told first); request "
    "to VM: from the request being sent. The COMMIT (on process 1) lies between them.",
]


def _targets(row: dict[str, Any], count: int) -> list[dict[str, Any]]:
    wrong = row["errors"] + row["doubles"]
    return [
        target(
            "VMs with their own researcher's code",
            f"all {count:,}",
            row["vm_own_command"],
            row["vm_own_command"] == count,
        ),
        target("errors and doubles", "0", wrong, wrong == 0),
    ]


def run(quick: bool) -> dict[str, Any]:
    raise_file_limit()
    count = 50 if quick else 1000
    with (
        database_server() as server,
        scratch_database(server) as url,
        running_server(url, vm_wait_seconds=VM_WAIT_SECONDS, processes=2) as app,
    ):
        answers, outcome = asyncio.run(_exchange(app, server.postmaster_pid(), count))
        engine = create_engine(url)
        try:
            checked = audit(engine, [(email(i), host) for i, (host, _, _) in answers.told.items()])
        finally:
            engine.dispose()
    row = _row(answers, outcome, checked, count)
    return result(
        NAME,
        f"{count:,} VMs waiting on process 0 of `lablink serve --processes 2`, taken by "
        f"{RESEARCHERS} researcher clients on process 1",
        COLUMNS,
        [row],
        errors=row["errors"],
        doubles=row["doubles"],
        targets=_targets(row, count),
        notes=NOTES,
    )


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
