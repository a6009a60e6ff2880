"""Restarts, kills and replicas: no assignment is lost and nothing a client sends gets a 500."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from lablink_core.config import DatabaseConfig
from lablink_core.db import ensure_database, make_engine, upgrade
from lablink_core.localdb import LocalPostgres
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.support.vm_simulator import SimulatedFleet
from tests.support.waiting import wait_until


def researcher(url: str, email: str, code: str, statuses: Counter[int]) -> dict[str, str]:
    """Requests a VM like a patient script: retries 503s (the database is away) until served."""

    def attempt() -> dict[str, str] | None:
        try:
            reply = httpx.post(
                f"{url}/request_vm", json={"email": email, "crd_command": crd(code)}, timeout=10
            )
        except httpx.TransportError:
            return None  # the allocator is restarting
        statuses[reply.status_code] += 1
        return reply.json() if reply.status_code == 200 else None

    result = wait_until(attempt, timeout=60, interval=0.1, message=f"a VM for {email}")
    assert isinstance(result, dict)
    return result


def assert_delivered(fleet: SimulatedFleet, seats: dict[str, dict[str, str]]) -> None:
    """Every researcher's VM received that researcher's code and PIN; no VM got two."""
    by_host = {seat["hostname"]: (code, seat["pin"]) for code, seat in seats.items()}
    assert len(by_host) == len(seats), "a VM was assigned twice"
    wait_until(lambda: all(h in fleet.tasks for h in by_host), timeout=30, message="deliveries")
    for hostname, (code, pin) in by_host.items():
        assert (fleet.tasks[hostname]["code"], fleet.tasks[hostname]["pin"]) == (code, pin)


@pytest.fixture
def server_on_private_postgres(private_postgres: LocalPostgres) -> Iterator[RunningServer]:
    """A `lablink serve` whose database lives on a private server the test may restart."""
    url = private_postgres.url("lablink")
    ensure_database(url)
    engine = make_engine(url, pool_size=1)
    upgrade(engine, DatabaseConfig())
    engine.dispose()
    server = RunningServer(url, extra_env={"LABLINK_APP_VM_WAIT_SECONDS": "20"}).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def test_postgres_restart_while_200_vms_wait(
    server_on_private_postgres: RunningServer, private_postgres: LocalPostgres
) -> None:
    server = server_on_private_postgres
    names = [f"vm-{i:03d}" for i in range(200)]
    fleet = SimulatedFleet(server.url, {n: server.credential(n) for n in names}).start()
    try:
        wait_until(lambda: server.info()["waiting_vms"] == 200, timeout=60, message="200 waiting")
        statuses: Counter[int] = Counter()
        private_postgres.stop()
        down = httpx.post(
            f"{server.url}/request_vm", json={"email": "early@example.org", "crd_command": crd()}
        )
        assert down.status_code == 503 and down.headers.get("Retry-After")
        private_postgres.start()
        wait_until(lambda: server.info()["listener_connected"], timeout=5, message="listener back")
        seats = _assign_all(server.url, len(names), statuses)
        assert_delivered(fleet, seats)
        assert statuses[500] == 0 and fleet.statuses[500] == 0
        assert server.info()["listener_reconnects"] >= 1
    finally:
        fleet.stop()


def _assign_all(url: str, count: int, statuses: Counter[int]) -> dict[str, dict[str, str]]:
    seats: dict[str, dict[str, str]] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        seat = researcher(url, f"user{i}@example.org", f"4/code-{i}", statuses)
        with lock:
            seats[f"4/code-{i}"] = seat

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(seats) == count
    return seats


def test_allocator_killed_while_vms_wait_and_researchers_submit(database_url: str) -> None:
    first = RunningServer(database_url, extra_env={"LABLINK_APP_VM_WAIT_SECONDS": "20"}).start()
    names = [f"vm-{i:02d}" for i in range(40)]
    credentials = {n: first.credential(n) for n in names}
    fleet = SimulatedFleet(first.url, credentials).start()
    replacement: RunningServer | None = None
    try:
        wait_until(lambda: first.info()["waiting_vms"] == 40, timeout=30, message="40 waiting")
        statuses: Counter[int] = Counter()
        before = _assign_all(first.url, 15, statuses)
        first.stop(kill=True)  # SIGKILL: no cleanup at all
        late: dict[str, dict[str, str]] = {}
        submitting = threading.Thread(
            target=lambda: late.update(
                {
                    f"4/late-{i}": researcher(
                        first.url, f"late{i}@example.org", f"4/late-{i}", statuses
                    )
                    for i in range(10)
                }
            )
        )
        submitting.start()
        replacement = RunningServer(
            database_url, port=first.port, extra_env=first.extra_env
        ).start()
        submitting.join(timeout=90)
        assert_delivered(fleet, {**before, **late})
        assert statuses[500] == 0 and fleet.statuses[500] == 0 and fleet.statuses[401] == 0
        assert replacement.credential("vm-00") == credentials["vm-00"]
    finally:
        fleet.stop()
        if replacement is not None:
            replacement.stop()


def test_two_replicas_on_one_database(database_url: str) -> None:
    waits_here = RunningServer(
        database_url, extra_env={"LABLINK_APP_VM_WAIT_SECONDS": "20"}
    ).start()
    takes_requests = RunningServer(database_url).start()
    names = [f"vm-{i:02d}" for i in range(30)]
    fleet = SimulatedFleet(waits_here.url, {n: waits_here.credential(n) for n in names}).start()
    try:
        wait_until(lambda: waits_here.info()["waiting_vms"] == 30, timeout=30, message="30 waiting")
        statuses: Counter[int] = Counter()
        seats = _assign_all(takes_requests.url, 30, statuses)
        assert_delivered(fleet, seats)
        assert takes_requests.info()["waiting_vms"] == 0
    finally:
        fleet.stop()
        waits_here.stop()
        takes_requests.stop()
