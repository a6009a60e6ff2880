"""A real `lablink-client --dry-run` process against a real server, start to connected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.support.waiting import wait_until


@pytest.fixture
def client_process(
    api: RunningServer, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A `lablink-client --dry-run` for VM `vm-e2e`, and the file it records commands in."""
    record = tmp_path / "crd.jsonl"
    env = {**os.environ, "LABLINK_VM_CREDENTIAL": api.credential("vm-e2e")}
    command = [
        sys.executable,
        "-m",
        "lablink_core.client",
        "--allocator-url",
        api.url,
        "--hostname",
        "vm-e2e",
        "--dry-run",
        "--record",
        str(record),
        "--heartbeat-seconds",
        "1",
    ]
    log = (tmp_path / "client.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    yield process, record
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def vm_row(api: RunningServer) -> dict[str, object] | None:
    rows = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10).json()["vms"]
    return next((r for r in rows if r["hostname"] == "vm-e2e"), None)


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_client_registers_gets_assigned_records_and_connects(
    api: RunningServer, client_process: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, record = client_process
    wait_until(
        lambda: (vm_row(api) or {}).get("status") == "available", timeout=30, message="registration"
    )
    seat = httpx.post(
        f"{api.url}/request_vm", json={"email": "ada@example.org", "crd_command": crd("4/e2e-code")}
    ).json()
    assert seat["hostname"] == "vm-e2e"
    starts = wait_until(
        lambda: [r for r in records(record) if r["event"] == "start"],
        timeout=30,
        message="CRD start",
    )
    (start,) = starts  # type: ignore[misc]
    assert start["code"] == "4/e2e-code" and start["pin"] == seat["pin"]
    assert start["argv"] == [
        "/opt/google/chrome-remote-desktop/start-host",
        "--code=4/e2e-code",
        "--redirect-url=https://remotedesktop.google.com/_/oauthredirect",
        "--name=vm-e2e",
    ]  # the PIN goes to start-host on stdin, never in its arguments
    wait_until(
        lambda: (vm_row(api) or {}).get("status") == "connected", timeout=30, message="connected"
    )
    renewed = httpx.post(
        f"{api.url}/request_vm",
        json={
            "email": "ada@example.org",
            "crd_command": crd("4/fresh-code"),
            "seat_token": seat["seat_token"],
        },
    )
    assert renewed.status_code == 200
    wait_until(
        lambda: [r for r in records(record) if r.get("code") == "4/fresh-code"],
        timeout=30,
        message="renewal",
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
