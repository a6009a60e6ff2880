"""`lablink serve --processes 2`: one port, two server processes, PostgreSQL between them."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from dashboard.prefork import PROCESS_HEADER
from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import crd
from tests.support.metrics import Samples, parse, scrape, value
from tests.support.vm_simulator import SimulatedFleet
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def two_processes(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """`lablink serve --processes 2` on a database of its own, shared by this module."""
    server = RunningServer(
        make_server_database(postgres_server_url, template_database),
        processes=2,
        extra_env={"LABLINK_APP_VM_WAIT_SECONDS": "30"},
    ).start()
    yield server
    if server.process and server.process.poll() is None:
        assert server.stop() == 0


def per_process(server: RunningServer) -> dict[str, dict[str, object]]:
    """``/api/server`` of each process, by its number (asked until both have answered)."""
    seen: dict[str, dict[str, object]] = {}

    def both() -> bool:
        with httpx.Client(auth=server.admin_auth(), timeout=5) as client:
            # A new connection each time: the kernel picks the process per connection.
            reply = client.get(f"{server.url}/api/server", headers={"Connection": "close"})
        seen[reply.headers[PROCESS_HEADER]] = reply.json()
        return len(seen) == 2

    wait_until(both, timeout=30, message="an answer from each process")
    return seen


def metrics_of_each(server: RunningServer) -> dict[str, Samples]:
    """``/metrics`` as scraped from each process (asked until both have answered)."""
    seen: dict[str, Samples] = {}

    def both() -> bool:
        reply = scrape(server.url, server.admin_auth())
        seen[reply.headers[PROCESS_HEADER]] = parse(reply.text)
        return len(seen) == 2

    wait_until(both, timeout=30, message="/metrics from each process")
    return seen


def total_waiting(server: RunningServer) -> int:
    return sum(int(str(info["waiting_vms"])) for info in per_process(server).values())


async def _request_all(url: str, count: int) -> list[tuple[int, str, dict[str, str]]]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(i: int) -> tuple[int, str, dict[str, str]]:
            body = {"email": f"user{i}@example.org", "crd_command": crd(f"4/code-{i}")}
            reply = await client.post("/request_vm", json=body)
            return reply.status_code, reply.headers[PROCESS_HEADER], reply.json()

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_vms_waiting_on_both_processes_get_their_researchers_command(
    two_processes: RunningServer,
) -> None:
    names = [f"vm-{i:03d}" for i in range(200)]
    fleet = SimulatedFleet(two_processes.url, {n: two_processes.credential(n) for n in names})
    before = metrics_of_each(two_processes)["0"]
    fleet.start()
    try:
        wait_until(lambda: total_waiting(two_processes) == 200, timeout=60, message="200 waiting")
        for samples in metrics_of_each(two_processes).values():
            assert value(samples, "lablink_waiting_vms") == 200  # summed over both
        assert all(int(str(i["waiting_vms"])) > 0 for i in per_process(two_processes).values())
        replies = asyncio.run(_request_all(two_processes.url, 300))
        statuses = Counter(status for status, _, _ in replies)
        assert statuses == {200: 200, 503: 100}
        assert {process for _, process, _ in replies} == {"0", "1"}
        seats = {
            body["hostname"]: (i, body["pin"]) for i, (s, _, body) in enumerate(replies) if s == 200
        }
        assert len(seats) == 200, "a VM was assigned twice"
        wait_until(lambda: len(fleet.tasks) == 200, timeout=30, message="200 deliveries")
        for hostname, (i, pin) in seats.items():
            assert (fleet.tasks[hostname]["code"], fleet.tasks[hostname]["pin"]) == (
                f"4/code-{i}",
                pin,
            )
        assert fleet.statuses[500] == 0
        assert_metrics_sum_both_processes(two_processes, before)
    finally:
        fleet.stop()


def assert_metrics_sum_both_processes(server: RunningServer, before: Samples) -> None:
    """Either process's /metrics counts the 300 requests that both of them answered."""
    for samples in metrics_of_each(server).values():

        def grew(name: str, samples: Samples = samples, **labels: str) -> float:
            return value(samples, name, **labels) - value(before, name, **labels)

        assert grew("lablink_assignments_total", kind="new") == 200
        where = {"where": "RequestVMHandler", "reason": "no_vm_available"}
        assert grew("lablink_refusals_total", **where) == 100
        timed = {"handler": "RequestVMHandler"}
        assert grew("lablink_http_request_seconds_count", **timed, code="2xx") == 200
        assert grew("lablink_http_request_seconds_count", **timed, code="5xx") == 100
        assert grew("lablink_vms_woken_total") >= 200
        assert value(samples, "lablink_vms", status="assigned") == 200


def test_a_process_that_dies_is_started_again(two_processes: RunningServer) -> None:
    """VMs wait on both processes when one is killed: the supervisor starts it again, the
    VMs that waited on it poll again, and /metrics counts each VM once (the dead process's
    share of the waiting gauge is dropped, its counters are kept)."""
    # The previous test's VMs hung up as it ended: a process may still be letting them go.
    wait_until(lambda: total_waiting(two_processes) == 0, timeout=30, message="none waiting")
    assigned = value(metrics_of_each(two_processes)["0"], "lablink_assignments_total", kind="new")
    names = [f"vm-kill-{i:02d}" for i in range(20)]
    fleet = SimulatedFleet(two_processes.url, {n: two_processes.credential(n) for n in names})
    fleet.start()
    try:
        wait_until(lambda: total_waiting(two_processes) == 20, timeout=60, message="20 waiting")
        before = per_process(two_processes)
        assert int(str(before["1"]["waiting_vms"])) > 0, "no VM waits on the process to kill"
        os.kill(int(str(before["1"]["pid"])), signal.SIGKILL)

        def replaced() -> bool:
            now = per_process(two_processes)
            return now["1"]["pid"] != before["1"]["pid"] and now["0"]["pid"] == before["0"]["pid"]

        wait_until(replaced, timeout=60, message="process 1 started again")
        assert two_processes.process is not None and two_processes.process.poll() is None
        wait_until(
            lambda: (
                total_waiting(two_processes) == 20
                and all(
                    value(samples, "lablink_waiting_vms") == 20
                    for samples in metrics_of_each(two_processes).values()
                )
            ),
            timeout=30,
            message="each of the 20 VMs counted once as waiting",
        )
    finally:
        fleet.stop()
    for samples in metrics_of_each(two_processes).values():
        assert value(samples, "lablink_assignments_total", kind="new") == assigned
    wait_until(
        lambda: all(
            value(samples, "lablink_waiting_vms") == 0
            for samples in metrics_of_each(two_processes).values()
        ),
        timeout=30,
        message="no VM counted as waiting once they hung up",
    )


def test_the_request_rate_limit_holds_for_the_whole_server(
    postgres_server_url: str, template_database: str
) -> None:
    """The attack: one address spreads its requests over both processes (a new connection
    each, which the kernel hands to either). With a bucket per process it would get in twice
    the burst; the processes share one table, so it gets in the burst once."""
    burst = 10
    server = RunningServer(
        make_server_database(postgres_server_url, template_database),
        processes=2,
        extra_env={
            "LABLINK_ACCESS_REQUEST_BURST": str(burst),
            "LABLINK_ACCESS_REQUEST_RATE_PER_MINUTE": "1",  # no refill to speak of meanwhile
        },
    ).start()
    try:
        answers: Counter[tuple[str, int]] = Counter()
        for index in range(60):
            reply = httpx.post(
                f"{server.url}/request_vm",
                json={"email": f"flood{index}@example.org", "crd_command": crd()},
                headers={"Connection": "close"},
                timeout=10,
            )
            answers[(reply.headers[PROCESS_HEADER], reply.status_code)] += 1
    finally:
        assert server.stop() == 0
    admitted = sum(n for (_, status), n in answers.items() if status != 429)
    assert {process for process, _ in answers} == {"0", "1"}, answers
    assert burst <= admitted <= burst + 1, answers
