"""A class scripted without the browser: `lablink fleet launch|status|destroy` against a
running server's database with the local provider, and the admin API's fleet routes with the
admin token, both under the same one-at-a-time lock and recorded history."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from tests.fixtures.server import RunningServer
from tests.support.local_fleet import fleet_operation, vms
from tests.support.waiting import wait_until


def lablink(api: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**api.env(), "LABLINK_FLEET_PROVIDER": "local", "LABLINK_APP_PORT": str(api.port)}
    return subprocess.run(
        [sys.executable, "-m", "lablink_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lablink_fleet_launch_status_and_destroy(api: RunningServer) -> None:
    launched = lablink(api, "fleet", "launch", "3")
    assert launched.returncode == 0, launched.stderr
    assert "launching 3 VMs" in launched.stdout and "succeeded" in launched.stderr
    # The VMs it started call the running server and become available.
    wait_until(
        lambda: [vm["status"] for vm in vms(api).values()] == ["available"] * 3,
        timeout=60,
        message="three VMs registered with the server",
    )
    status = lablink(api, "fleet", "status", "--json")
    assert status.returncode == 0, status.stderr
    listed = json.loads(status.stdout)
    assert listed["provider"] == "local" and len(listed["vms"]) == 3
    destroyed = lablink(api, "fleet", "destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    assert vms(api) == {}
    history = httpx.get(f"{api.url}/api/fleet", auth=api.admin_auth(), timeout=10).json()
    assert [op["kind"] for op in history["operations"][:2]] == ["destroy", "launch"]


def _token(api: RunningServer) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "lablink_core.cli", "admin", "token"],
        env=api.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_the_admin_api_scripts_the_fleet_with_the_admin_token(
    allocator_server: RunningServer,
) -> None:
    api = allocator_server
    headers = {"Authorization": f"Bearer {_token(api)}"}
    with httpx.stream(
        "POST", f"{api.url}/api/fleet/launch", json={"count": 2}, headers=headers, timeout=120
    ) as reply:
        assert reply.status_code == 200, reply.read()
        events: list[dict[str, Any]] = [json.loads(line) for line in reply.iter_lines() if line]
    assert events[-1]["event"] == "finished" and events[-1]["state"] == "succeeded"
    assert any(e["event"] == "progress" and "started" in e["message"] for e in events)
    status = httpx.get(f"{api.url}/api/fleet", headers=headers, timeout=10).json()
    assert status["vms"] == 2 and status["running_operation"] is None
    refused = httpx.post(f"{api.url}/api/fleet/scale", json={"count": "many"}, headers=headers)
    assert refused.status_code == 400
    anonymous = httpx.post(f"{api.url}/api/fleet/destroy", json={}, timeout=10)
    assert anonymous.status_code == 401
    assert fleet_operation(api, "destroy")[-1]["state"] == "succeeded"
    assert httpx.get(f"{api.url}/api/fleet", headers=headers).json()["vms"] == 0
