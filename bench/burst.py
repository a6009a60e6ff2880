"""Benchmark 4: a class starts. R researchers request a VM within one second while V free VMs
(V < R) long-poll /vm_startup. Exactly V must be assigned, R - V told a clean 503, and each
VM must receive the command of the researcher it was given. Run alone:
`python bench/burst.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine

from bench.database import database_server, scratch_database
from bench.procstat import raise_file_limit, standard_meter
from bench.rawhttp import HttpConnection, build_request
from bench.report import result, table_markdown, target
from bench.server import ServerProcess, running_server
from bench.stats import latency_ms
from bench.vmsim import PollingVM, close_all, start_polls, until, wait_replies
from bench.vmtable import Audit, audit, crd_code, crd_command, email, hostnames

NAME = "burst"
SPREAD_SECONDS = 1.0
REQUEST_TIMEOUT = 30.0
COLUMNS = [
    ("researchers", "researchers"),
    ("vms", "VMs"),
    ("assigned", "assigned"),
    ("clean_503", "clean 503s"),
    ("errors", "errors"),
    ("doubles", "doubles"),
    ("p50_ms", "request p50 ms"),
    ("p99_ms", "request p99 ms"),
    ("max_ms", "request max ms"),
    ("last_answer_s", "last answer s"),
    ("last_vm_s", "last VM command s"),
    ("vm_lag_p99_ms", "VM after answer p99 ms"),
    ("cpu_bench", "generator CPU %"),
    ("cpu_server", "server CPU %"),
    ("cpu_postgres", "PostgreSQL CPU %"),
    ("cpu_other", "other CPU %"),
]


@dataclass
class Answers:
    """What the researchers were told."""

    told: dict[int, tuple[str, float]] = field(default_factory=dict)  # index -> (host, at)
    refused: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last: float = 0.0  # when the last answer arrived


async def _researcher(port: int, index: int, at: float, answers: Answers) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    began = time.monotonic()
    payload = {"email": email(index), "crd_command": crd_command(index)}
    try:
        connection = await HttpConnection.open(port)
        try:
            reply = await connection.request(
                build_request("/request_vm", port, payload), REQUEST_TIMEOUT
            )
        finally:
            connection.close()
    except Exception as error:  # resets, timeouts, protocol errors: all counted
        answers.errors.append(f"{type(error).__name__}: {error}")
        return
    answers.latencies.append(reply.arrived - began)
    answers.last = max(answers.last, reply.arrived)
    body = reply.json() or {}
    if reply.status == 200 and body.get("email") == email(index):
        answers.told[index] = (str(body["hostname"]), reply.arrived)
    elif reply.status == 503 and body.get("error", {}).get("code") == "no_vm_available":
        answers.refused += 1
    else:
        answers.errors.append(f"HTTP {reply.status}: {reply.body[:200]!r}")


def _vm_results(vms: list[PollingVM], answers: Answers, start: float) -> dict[str, Any]:
    """Each VM must get exactly the command of the researcher it was given."""
    code_of = {host: crd_code(index) for index, (host, _) in answers.told.items()}
    answered_at = {host: at for host, at in answers.told.values()}
    arrivals, lags, errors = [], [], []
    for vm in vms:
        task, reply = vm.task(), vm.response()
        if vm.hostname not in code_of:
            continue  # not assigned: its poll is still open, as it should be
        if task is None or reply is None:
            errors.append(vm.error or f"{vm.hostname} got no command")
        elif task.get("code") != code_of[vm.hostname]:
            errors.append(f"{vm.hostname} got {task.get('code')}, not {code_of[vm.hostname]}")
        else:
            arrivals.append(reply.arrived - start)
            lags.append(reply.arrived - answered_at[vm.hostname])
    return {
        "last_vm_s": round(max(arrivals, default=0.0), 3),
        "vm_lag_p99_ms": latency_ms(lags)["p99_ms"],
        "vm_errors": errors,
    }


async def _burst(
    app: ServerProcess, postmaster: int | None, researchers: int, count: int
) -> tuple[Answers, dict[str, Any]]:
    names = hostnames(count, prefix="burst")
    credentials = await asyncio.to_thread(app.enrol, names)
    vms = await start_polls(app.port, names, credentials)
    try:
        await until(lambda: app.info()["waiting_vms"] >= count, 60.0)
        meter = standard_meter(app.pid, postmaster)
        meter.start()
        start = time.monotonic() + 0.05
        step = SPREAD_SECONDS / researchers
        answers = Answers()
        await asyncio.gather(
            *(_researcher(app.port, i, start + i * step, answers) for i in range(researchers))
        )
        assigned = {host for host, _ in answers.told.values()}
        await wait_replies([vm for vm in vms if vm.hostname in assigned], REQUEST_TIMEOUT)
        cpu = meter.stop()
        outcome = {**_vm_results(vms, answers, start), **cpu}
        outcome["last_answer_s"] = round(max(0.0, answers.last - start), 3)
        return answers, outcome
    finally:
        close_all(vms)


def _row(
    answers: Answers, outcome: dict[str, Any], checked: Audit, researchers: int, count: int
) -> dict[str, Any]:
    assigned = len(answers.told)
    errors = answers.errors + outcome.pop("vm_errors")
    if assigned + answers.refused == researchers and assigned < count:
        errors.append(f"only {assigned} of {count} free VMs were assigned")
    return {
        "researchers": researchers,
        "vms": count,
        "assigned": assigned,
        "clean_503": answers.refused,
        "errors": len(errors),
        "doubles": checked.doubles,
        **latency_ms(answers.latencies),
        **outcome,
        "audit": checked.as_dict(),
        "error_samples": errors[:5],
    }


def _targets(row: dict[str, Any]) -> list[dict[str, Any]]:
    refused = row["researchers"] - row["vms"]
    failures = row["errors"] + row["doubles"]
    return [
        target(
            "assignments", f"exactly {row['vms']}", row["assigned"], row["assigned"] == row["vms"]
        ),
        target("clean 503s", f"exactly {refused}", row["clean_503"], row["clean_503"] == refused),
        target("errors and doubles", "0", failures, failures == 0),
    ]


def run(quick: bool) -> dict[str, Any]:
    raise_file_limit()
    researchers, count = (50, 20) if quick else (500, 200)
    with (
        database_server() as server,
        scratch_database(server) as url,
        running_server(url, vm_wait_seconds=120) as app,
    ):
        answers, outcome = asyncio.run(_burst(app, server.postmaster_pid(), researchers, count))
        engine = create_engine(url)
        try:
            told = [(email(index), host) for index, (host, _) in answers.told.items()]
            checked = audit(engine, told)
        finally:
            engine.dispose()
    row = _row(answers, outcome, checked, researchers, count)
    return result(
        NAME,
        f"class-start burst: {researchers} researchers within {SPREAD_SECONDS:.0f} s, "
        f"{count} free VMs waiting on /vm_startup",
        COLUMNS,
        [row],
        errors=row["errors"],
        doubles=row["doubles"],
        targets=_targets(row),
        notes=[
            "Researchers start evenly over the second, each on a new connection. Times are "
            "from the first request; 'VM after answer' is from a researcher's 200 to their "
            "VM's command arriving. Each VM's command is checked against its researcher's.",
        ],
    )


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
