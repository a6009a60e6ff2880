"""The original LabLink client (CRD era) works against us: it registers, waits, is assigned
through /api/request_vm and /request_vm, builds start-host with the right code, name and
PIN, and each of its four reports is answered 2xx and shows in /api/vms."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.support.original_client import REDIRECT_URL, START_HOST, OriginalClient
from tests.support.waiting import wait_until


def _vm(api: RunningServer, hostname: str) -> dict[str, Any]:
    rows = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10).json()["vms"]
    return next(row for row in rows if row["hostname"] == hostname)


def _subscribed(client: OriginalClient) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["command"], box["pin"], box["at"] = client.subscribe()
        except Exception as error:  # handed to the test below
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_the_original_client_is_assigned_through_both_forms_and_starts_crd(
    api: RunningServer,
) -> None:
    clients = {
        path: OriginalClient(api.url, name, api.credential(name))
        for path, name in (("/api/request_vm", "crd-era-1"), ("/request_vm", "crd-era-2"))
    }
    for path, client in clients.items():
        thread, box = _subscribed(client)
        wait_until(lambda c=client: _vm(api, c.vm_name)["waiting"], message="the client waits")
        # It is held: a 204 after vm_wait_seconds would cost it a 10-15 s retry.
        code = f"4/0Original{client.vm_name[-1]}"
        asked = time.monotonic()
        reply = httpx.post(
            f"{api.url}{path}",
            data={"email": f"u{client.vm_name[-1]}@example.org", "crd_command": crd(code)},
            headers={"Accept": "application/json"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["hostname"] == client.vm_name
        thread.join(timeout=30)
        assert "error" not in box, box.get("error")
        print(f"{client.vm_name}: command reached the client {box['at'] - asked:.3f} s after")
        assert client.retries == []  # never a non-200 that would cost it 10-15 s
        argv, stdin = client.start_host(box["command"], box["pin"])
        assert argv == [
            START_HOST,
            f"--code={code}",
            f"--redirect-url={REDIRECT_URL}",
            f"--name={client.vm_name}",
        ]
        assert stdin == f"{reply.json()['pin']}\n{reply.json()['pin']}\n"


def test_the_original_clients_four_reports_are_recorded(api: RunningServer) -> None:
    client = OriginalClient(api.url, "crd-era-3", api.credential("crd-era-3"))
    thread, box = _subscribed(client)
    wait_until(lambda: _vm(api, client.vm_name)["waiting"], message="the client waits")
    before = _vm(api, client.vm_name)["last_heard_at"]
    replies = [
        client.vm_status("running"),
        client.heartbeat(crd_active=True, disk_free_pct=73),
        client.in_use(True),
        client.gpu_health("Healthy"),
    ]
    assert [r.status_code for r in replies] == [200, 200, 200, 200]
    vm = _vm(api, client.vm_name)
    assert vm["last_heard_at"] > before
    assert (vm["crd_active"], vm["disk_free_pct"], vm["in_use"]) == (True, 73, True)
    assert (vm["health"], vm["health_state"]) == ("GPU Healthy", "healthy")
    assert vm["client_kind"] == "original"
    assert client.gpu_health("Unhealthy").status_code == 200
    assert _vm(api, client.vm_name)["health_state"] == "unhealthy"  # out of the free pool
    assert client.vm_status("error").status_code == 200
    assert _vm(api, client.vm_name)["status"] == "error"
    wrong = OriginalClient(api.url, client.vm_name, "lvm2.not-its-token")
    assert wrong.heartbeat(crd_active=False, disk_free_pct=1).status_code == 401
    assert thread.is_alive() and "command" not in box  # never told 200 without a command


def test_a_vm_of_the_original_client_is_recycled_not_reused(api: RunningServer) -> None:
    client = OriginalClient(api.url, "crd-era-4", api.credential("crd-era-4"))
    thread, box = _subscribed(client)
    wait_until(lambda: _vm(api, client.vm_name)["waiting"], message="the client waits")
    seat = httpx.post(
        f"{api.url}/request_vm",
        json={"email": "once@example.org", "crd_command": crd("4/0OnlyOnce")},
        timeout=30,
    ).json()
    thread.join(timeout=30)
    assert box["command"]
    released = httpx.post(
        f"{api.url}/release_vm",
        json={"email": "once@example.org", "seat_token": seat["seat_token"]},
        timeout=30,
    )
    assert released.status_code == 200
    # It cannot follow a credential rotation, so it serves one researcher only.
    assert _vm(api, client.vm_name)["status"] == "recycling"
