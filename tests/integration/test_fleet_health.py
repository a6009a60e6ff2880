"""Fleet health on a real server with a local fleet of real `lablink-client` processes:
only live, healthy VMs are handed out; a frozen VM leaves the pool and comes back; a killed
one is healed and the action log says why; a restart leaves no ghost a researcher could get."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from lablink_core.vms import VMRegistry
from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import crd
from tests.support.local_fleet import fleet_operation, live_pid, signal_vm, starts, vms
from tests.support.waiting import wait_until

HEALTH_ENV = {
    "LABLINK_FLEET_PROVIDER": "local",
    "LABLINK_FLEET_LOCAL_HEARTBEAT_SECONDS": "1",
    "LABLINK_APP_VM_WAIT_SECONDS": "2",
    "LABLINK_APP_UNRESPONSIVE_AFTER_SECONDS": "4",
    "LABLINK_HEALTH_INTERVAL_SECONDS": "0.5",
    "LABLINK_HEALTH_SILENCE_LIMIT_SECONDS": "60",
    "LABLINK_HEALTH_BOOT_TIMEOUT_SECONDS": "30",
}


@pytest.fixture(scope="module")
def health_server(
    postgres_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server with a local fleet and short health limits (4 s of silence makes a VM
    unresponsive; the healer looks every half second)."""
    server = RunningServer(make_server_database(postgres_server_url, template_database))
    server.extra_env.update(HEALTH_ENV)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def fleet(health_server: RunningServer) -> Iterator[RunningServer]:
    """Two local VMs, available; destroyed (with any researcher) after the test."""
    fleet_operation(health_server, "launch", count=2)
    wait_until(
        lambda: [vm["status"] for vm in vms(health_server).values()] == ["available"] * 2,
        timeout=60,
        message="two available VMs",
    )
    yield health_server
    fleet_operation(health_server, "destroy", force=True)


def request(api: RunningServer, email: str, code: str = "4/0Health") -> httpx.Response:
    return httpx.post(
        f"{api.url}/request_vm", json={"email": email, "crd_command": crd(code)}, timeout=30
    )


def test_a_frozen_vm_leaves_the_pool_and_comes_back(fleet: RunningServer) -> None:
    frozen, other = sorted(vms(fleet))
    signal_vm(fleet, frozen, signal.SIGSTOP)
    try:
        wait_until(lambda: vms(fleet)[frozen]["unresponsive"], timeout=30, message="silence")
        health = httpx.get(f"{fleet.url}/api/health", timeout=10).json()
        assert (health["free_vms"], health["silent_vms"]) == (1, 1)
        first = request(fleet, "a@example.org")
        assert first.status_code == 200 and first.json()["hostname"] == other
        assert request(fleet, "b@example.org").status_code == 503  # never the frozen one
    finally:
        signal_vm(fleet, frozen, signal.SIGCONT)
    wait_until(lambda: not vms(fleet)[frozen]["unresponsive"], timeout=30, message="back")
    again = request(fleet, "b@example.org")
    assert again.status_code == 200 and again.json()["hostname"] == frozen


def test_a_killed_vm_is_healed_and_the_log_says_why(fleet: RunningServer) -> None:
    victim = sorted(vms(fleet))[0]
    # A row of another provider (an "aws" VM left from an earlier configuration): this
    # local fleet cannot see its machine, so it must not call it gone and heal it.
    engine = create_engine(fleet.database_url)
    VMRegistry(engine, "vms").add_booting(["vm-elsewhere"], provider="aws")
    killed = signal_vm(fleet, victim, signal.SIGKILL)
    wait_until(
        lambda: (pid := live_pid(fleet, victim)) is not None and pid != killed,
        timeout=30,
        message="a new process for the killed VM",
    )
    actions = httpx.get(
        f"{fleet.url}/api/vms/{victim}/actions", auth=fleet.admin_auth(), timeout=10
    ).json()["actions"]
    assert actions[0]["action"] == "reboot" and actions[0]["actor"] == "healer"
    assert actions[0]["reason"] == "its machine is gone"
    listed = vms(fleet)[victim]
    assert listed["last_action"]["reason"] == "its machine is gone"
    wait_until(lambda: vms(fleet)[victim]["status"] == "available", timeout=30)
    assert request(fleet, "c@example.org").status_code == 200
    elsewhere = httpx.get(
        f"{fleet.url}/api/vms/vm-elsewhere/actions", auth=fleet.admin_auth(), timeout=10
    ).json()["actions"]
    assert elsewhere == [] and vms(fleet)["vm-elsewhere"]["status"] == "booting"
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM vms WHERE hostname = 'vm-elsewhere'"))
    engine.dispose()


def test_a_restart_resumes_local_vms_and_hands_out_no_ghost(
    postgres_server_url: str, template_database: str, tmp_path: Path
) -> None:
    server = RunningServer(make_server_database(postgres_server_url, template_database))
    server.extra_env.update({**HEALTH_ENV, "LABLINK_APP_DATA_DIR": str(tmp_path)})
    server.log_path = tmp_path / "server.log"
    server.start()
    try:
        fleet_operation(server, "launch", count=2)
        wait_until(
            lambda: len([v for v in vms(server).values() if v["status"] == "available"]) == 2
        )
        held = request(server, "ada@example.org", "4/0BeforeRestart").json()["hostname"]
        wait_until(lambda: vms(server)[held]["status"] == "connected", timeout=30)
        assert server.stop() == 0
        server.start()
        # Until a VM's new process reports, it is neither free nor "connected".
        after = vms(server)
        assert after[held]["status"] != "connected" or live_pid(server, held) is not None
        reply = request(server, "grace@example.org")
        if reply.status_code == 200:
            assert live_pid(server, reply.json()["hostname"]) is not None
        else:
            assert reply.status_code == 503
        # The researcher's machine comes back with its assignment.
        wait_until(lambda: len(starts(server, held)) >= 2, timeout=60, message="CRD again")
        assert starts(server, held)[-1]["code"] == "4/0BeforeRestart"
        wait_until(lambda: vms(server)[held]["status"] == "connected", timeout=30)
    finally:
        fleet_operation(server, "destroy", force=True)
        server.stop()
