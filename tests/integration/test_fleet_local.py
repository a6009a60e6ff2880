"""The Fleet with real local VMs (lablink-client processes) against a real `lablink serve`.

The fleet runs in the test process on the server's database, as a second server process
would; the VM agents long-poll the server over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.db import make_engine
from lablink_core.enrolment import VMEnrolment
from lablink_core.errors import InvalidInput, OperationInProgress
from lablink_core.fleet import (
    Fleet,
    FleetOperationFailed,
    FleetProgress,
    FleetProvider,
    LocalProvider,
)
from lablink_core.fleet.base import LogCallback
from lablink_core.fleet.local import pid_alive
from lablink_core.fleet.operations import (
    INTERRUPTED,
    LOG_CAP,
    TRIMMED_MARK,
    OperationStore,
    lock_is_held,
)
from lablink_core.metrics import Metrics, PoolReading, PrometheusMetrics
from lablink_core.vms import VMRegistry
from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import crd
from tests.support.metrics import parse, value
from tests.support.waiting import wait_until


@dataclass
class FleetSetup:
    """A fleet in the test process, on the running server's database."""

    engine: Engine
    registry: VMRegistry
    enrolment: VMEnrolment
    api: RunningServer
    record_dir: Path

    def local_provider(self) -> LocalProvider:
        def issue(name: str) -> str:
            return self.enrolment.enrol(name, provider="local", fresh=True)

        return LocalProvider(self.engine, self.api.url, issue, record_dir=self.record_dir)

    def fleet(self, provider: FleetProvider, metrics: Metrics | None = None) -> Fleet:
        return Fleet(
            self.engine, self.registry, provider, name_prefix="lablink-vm", metrics=metrics
        )

    def rows(self) -> dict[str, str]:
        return {vm["hostname"]: vm["status"] for vm in self.registry.list()}

    def pids(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(text("SELECT hostname, pid FROM lablink_local_processes"))
            return {str(row.hostname): int(row.pid) for row in rows}


@pytest.fixture(scope="module")
def allocator_server(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """The module's server, with its healer off: these tests run fleets of their own on its
    database, and the server's healer would otherwise replace their VMs (which its own local
    provider does not have) and take the fleet lock in the middle of a test."""
    server = RunningServer(
        make_server_database(postgres_server_url, template_database),
        extra_env={"LABLINK_HEALTH_ENABLED": "false"},
    ).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture
def setup(api: RunningServer, tmp_path: Path) -> Iterator[FleetSetup]:
    engine = make_engine(api.database_url, pool_size=5)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE lablink_fleet_operations, lablink_local_processes"))
    enrolment = VMEnrolment(engine, "vms", VMCredentials.from_store(SecretStore(engine)))
    yield FleetSetup(engine, VMRegistry(engine, "vms"), enrolment, api, tmp_path / "vms")
    engine.dispose()


@pytest.fixture
def local(setup: FleetSetup) -> Iterator[tuple[Fleet, LocalProvider]]:
    provider = setup.local_provider()
    yield setup.fleet(provider), provider
    provider.close()


def start_events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["event"] == "start"]


def all_gone(pids: Sequence[int]) -> bool:
    return not any(pid_alive(pid) for pid in pids)


def test_launch_assign_scale_and_destroy(
    setup: FleetSetup, local: tuple[Fleet, LocalProvider]
) -> None:
    fleet, provider = local
    seen: list[FleetProgress] = []
    began = time.monotonic()
    result = fleet.launch(3, on_progress=seen.append)
    assert result.state == "succeeded" and result.done == result.planned == 3
    steps = [p.done for p in seen if p.state == "running" and p.message.startswith("started")]
    assert seen[-1] == result and steps == [1, 2, 3]
    names = ["lablink-vm-001", "lablink-vm-002", "lablink-vm-003"]
    assert set(setup.rows()) == set(names) == provider.instances()
    wait_until(
        lambda: set(setup.rows().values()) == {"available"}, timeout=30, message="3 VMs register"
    )
    print(f"3 local VMs available after {time.monotonic() - began:.2f}s")

    reply = httpx.post(
        f"{setup.api.url}/request_vm",
        json={"email": "ada@example.org", "crd_command": crd("4/0FleetCode")},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assigned, pin = reply.json()["hostname"], reply.json()["pin"]
    record = provider.record_path(assigned)
    wait_until(lambda: start_events(record), timeout=30, message=f"{assigned} starts CRD")
    start = start_events(record)[0]
    assert start["code"] == "4/0FleetCode" and start["pin"] == pin
    assert all(not start_events(provider.record_path(n)) for n in names if n != assigned)

    pids = setup.pids()
    fleet.scale_to(1)
    assert set(setup.rows()) == {assigned}
    assert setup.rows()[assigned] in ("assigned", "connected")
    assert provider.instances() == {assigned}
    wait_until(lambda: all_gone([pids[n] for n in names if n != assigned]), message="stopped")

    with pytest.raises(InvalidInput, match="1 of 1 are assigned"):
        fleet.scale_to(0)
    assert set(setup.rows()) == {assigned} and pid_alive(pids[assigned])

    final = fleet.destroy_all(force=True)
    assert final.state == "succeeded"
    assert setup.rows() == {} and setup.pids() == {} and provider.instances() == set()
    wait_until(lambda: all_gone(list(pids.values())), message="every VM process gone")
    kinds = [(op["kind"], op["state"]) for op in fleet.operations()]
    assert kinds == [("destroy", "succeeded"), ("scale", "succeeded"), ("launch", "succeeded")]


def test_names_are_never_reused(setup: FleetSetup, local: tuple[Fleet, LocalProvider]) -> None:
    fleet, provider = local
    fleet.launch(2)
    fleet.remove(["lablink-vm-002"])
    fleet.launch(1)
    assert set(setup.rows()) == {"lablink-vm-001", "lablink-vm-003"} == provider.instances()
    fleet.destroy_all()
    fleet.launch(1)
    assert set(setup.rows()) == {"lablink-vm-004"}


class StubProvider:
    """In-memory VMs; ``create`` can block on an event or fail after some VMs."""

    name = "local"

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.have: set[str] = set()
        self.release = threading.Event()
        self.release.set()
        self.fail_after = fail_after

    def create(self, hostnames: Sequence[str], log: LogCallback) -> None:
        if not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the stub")
        for done, name in enumerate(hostnames, start=1):
            if self.fail_after is not None and done > self.fail_after:
                raise RuntimeError("InsufficientInstanceCapacity: no capacity left")
            self.have.add(name)
            log(f"created {name}", done)

    def delete(self, hostnames: Sequence[str], log: LogCallback) -> None:
        if self.fail_after is not None:
            raise RuntimeError("UnauthorizedOperation: cannot terminate")
        self.have -= set(hostnames)

    def delete_all(self, log: LogCallback) -> None:
        self.have.clear()

    def instances(self) -> set[str]:
        return set(self.have)

    def close(self) -> None:
        pass


def test_one_operation_at_a_time_across_fleets_and_engines(setup: FleetSetup) -> None:
    stub = StubProvider()
    stub.release.clear()
    fleet = setup.fleet(stub)
    handle = fleet.start(fleet.launch, 2)
    assert handle.id is not None and not handle.done
    with pytest.raises(OperationInProgress, match=rf"#{handle.id} \(launch of 2 VMs"):
        fleet.scale_to(5)
    other_engine = make_engine(setup.api.database_url, pool_size=1)
    try:
        other = Fleet(other_engine, VMRegistry(other_engine, "vms"), StubProvider())
        with pytest.raises(OperationInProgress, match="still running"):
            other.destroy_all()
        running = other.running_operation()
        assert running is not None and running["id"] == handle.id
    finally:
        other_engine.dispose()
    stub.release.set()
    assert handle.result(timeout=30).state == "succeeded"
    assert fleet.running_operation() is None and not lock_is_held(setup.engine)
    assert set(setup.rows()) == stub.instances() == {"lablink-vm-001", "lablink-vm-002"}


def test_a_refusal_from_start_is_raised_in_the_caller(setup: FleetSetup) -> None:
    fleet = setup.fleet(StubProvider())
    with pytest.raises(InvalidInput, match="between 1 and 500"):
        fleet.start(fleet.launch, 0)
    assert fleet.operations() == []


def test_a_provider_failure_is_recorded_and_the_table_repaired(setup: FleetSetup) -> None:
    stub = StubProvider(fail_after=2)
    metrics = PrometheusMetrics()
    fleet = setup.fleet(stub, metrics)
    with pytest.raises(FleetOperationFailed, match="no capacity left") as raised:
        fleet.launch(3)
    progress = raised.value.progress
    assert progress.state == "failed" and progress.done == 2 and progress.planned == 3
    assert progress.error is not None and "InsufficientInstanceCapacity" in progress.error
    [operation] = fleet.operations()
    assert operation["state"] == "failed" and operation["error"] == progress.error
    assert "created lablink-vm-002" in operation["log"] and operation["ended_at"] is not None
    assert not lock_is_held(setup.engine) and fleet.running_operation() is None
    assert set(setup.rows()) == stub.instances() == {"lablink-vm-001", "lablink-vm-002"}

    # A failed removal leaves the VMs it could not remove usable again.
    with pytest.raises(FleetOperationFailed, match="cannot terminate"):
        fleet.scale_to(0)
    assert setup.rows() == {"lablink-vm-001": "booting", "lablink-vm-002": "booting"}
    samples = parse(metrics.exposition(PoolReading())[0].decode())
    for kind in ("launch", "scale"):
        timed = {"kind": kind, "outcome": "failed"}
        assert value(samples, "lablink_fleet_operation_seconds_count", **timed) == 1
    assert not any(
        name == "lablink_fleet_operation_seconds_count" and ("outcome", "succeeded") in labels
        for name, labels in samples
    )


class ChattyProvider(StubProvider):
    """Logs far more than the stored log keeps, as fast as it can."""

    def create(self, hostnames: Sequence[str], log: LogCallback) -> None:
        for line in range(5000):
            log(f"line {line:05d} " + "x" * 90, 0)
        super().create(hostnames, log)


def test_progress_writes_are_coalesced_and_the_log_capped(
    setup: FleetSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    original = OperationStore.update

    def counted(store: OperationStore, operation_id: int, *, done: int, lines: str) -> None:
        writes.append(len(lines))
        original(store, operation_id, done=done, lines=lines)

    monkeypatch.setattr(OperationStore, "update", counted)
    seen: list[FleetProgress] = []
    setup.fleet(ChattyProvider()).launch(1, on_progress=seen.append)
    assert len(seen) > 5000, "every line reaches the in-process callback"
    assert len(writes) < 200, f"{len(writes)} database writes for 5002 lines"
    [operation] = OperationStore(setup.engine).list()
    assert operation["log"].startswith(TRIMMED_MARK)
    assert len(operation["log"]) <= LOG_CAP + len(TRIMMED_MARK)
    assert operation["log"].endswith("created lablink-vm-001\n")


def test_an_operation_whose_process_died_is_not_running(setup: FleetSetup) -> None:
    with setup.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO lablink_fleet_operations (kind, provider) VALUES ('launch', 'x')")
        )
    fleet = setup.fleet(StubProvider())
    assert fleet.running_operation() is None
    fleet.launch(1)
    second, first = fleet.operations()
    assert first["state"] == "failed" and first["error"] == INTERRUPTED
    assert second["state"] == "succeeded"


def test_orphans_of_a_dead_server_are_stopped(setup: FleetSetup) -> None:
    first = setup.local_provider()
    setup.fleet(first).launch(2)
    pids = setup.pids()
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner.wait(timeout=30)
    try:
        with setup.engine.begin() as connection:
            connection.execute(
                text("UPDATE lablink_local_processes SET owner_pid = :dead"),
                {"dead": dead_owner.pid},
            )
            # A recycled pid: recorded for a VM, but now some other program's.
            connection.execute(
                text(
                    "INSERT INTO lablink_local_processes (hostname, pid, owner_pid) "
                    "VALUES ('lablink-vm-900', :pid, :dead)"
                ),
                {"pid": bystander.pid, "dead": dead_owner.pid},
            )
        second = setup.local_provider()
        wait_until(lambda: all_gone(list(pids.values())), message="orphans stopped")
        assert setup.pids() == {} and second.instances() == set()
        assert bystander.poll() is None, "a pid that is not a VM agent must not be killed"
        assert Fleet(setup.engine, setup.registry, second).reconcile()
        assert setup.rows() == {}
    finally:
        bystander.kill()
        bystander.wait(timeout=30)
        first.close()


def test_server_stops_its_local_vms_at_shutdown(
    postgres_server_url: str, template_database: str, tmp_path: Path
) -> None:
    server = RunningServer(make_server_database(postgres_server_url, template_database))
    server.extra_env["LABLINK_APP_DATA_DIR"] = str(tmp_path / "data")
    server.start()
    engine = make_engine(server.database_url, pool_size=2)
    try:
        setup = FleetSetup(
            engine,
            VMRegistry(engine, "vms"),
            VMEnrolment(engine, "vms", VMCredentials.from_store(SecretStore(engine))),
            server,
            tmp_path / "vms",
        )
        provider = setup.local_provider()
        setup.fleet(provider).launch(2)
        wait_until(lambda: set(setup.rows().values()) == {"available"}, timeout=30)
        pids = setup.pids()
        assert server.process is not None
        # As if the server had launched them: they are its processes now.
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE lablink_local_processes SET owner_pid = :pid"),
                {"pid": server.process.pid},
            )
        began = time.monotonic()
        assert server.stop() == 0
        print(f"server stopped with its 2 local VMs in {time.monotonic() - began:.2f}s")
        assert all_gone(list(pids.values())), "the server left VM processes running"
        # Their rows stay, marked stopped, for the next start to resume them.
        assert setup.pids() == {} and setup.rows() == dict.fromkeys(pids, "booting")
    finally:
        engine.dispose()
        if server.process is not None and server.process.poll() is None:
            server.stop(kill=True)
