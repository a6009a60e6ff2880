"""The zipapp a bring-your-own machine downloads, run by the machine's own Python.

The server runs on the venv's Python 3.12; the agent here runs on /usr/bin/python3 (another
interpreter, with none of the project's dependencies), straight from the downloaded file.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.support.waiting import wait_until

SYSTEM_PYTHON = "/usr/bin/python3"
HOSTNAME = "byo-zipapp-1"
BUNDLE_PATH = "/client/lablink-client.pyz"


@pytest.fixture
def downloaded(api: RunningServer, tmp_path: Path) -> Path:
    """lablink-client.pyz as fetched from the running server, without credentials."""
    reply = httpx.get(f"{api.url}{BUNDLE_PATH}", timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/zip"
    etag = reply.headers["etag"]
    again = httpx.get(f"{api.url}{BUNDLE_PATH}", headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        names = archive.namelist()
    assert "__main__.py" in names and not any(n.startswith("dashboard") for n in names)
    path = tmp_path / "lablink-client.pyz"
    path.write_bytes(reply.content)
    return path


@pytest.fixture
def byo_agent(
    api: RunningServer, downloaded: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`python3 lablink-client.pyz --dry-run` with the documented environment, and its record."""
    assert os.access(SYSTEM_PYTHON, os.X_OK), f"{SYSTEM_PYTHON} is needed (apt-get install python3)"
    record = tmp_path / "record.jsonl"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LABLINK_ALLOCATOR_URL": api.url,
        "LABLINK_HOSTNAME": HOSTNAME,
        "LABLINK_VM_CREDENTIAL": api.credential(HOSTNAME),
    }
    command = [SYSTEM_PYTHON, str(downloaded), "--dry-run", "--record", str(record)]
    log = (tmp_path / "agent.log").open("wb")
    process = subprocess.Popen(
        [*command, "--heartbeat-seconds", "1"], env=env, stdout=log, stderr=log, cwd=tmp_path
    )
    yield process, record
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def starts(record: Path) -> list[dict[str, object]]:
    if not record.exists():
        return []
    entries = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return [entry for entry in entries if entry["event"] == "start"]


def vm_status(api: RunningServer) -> object:
    rows = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10).json()["vms"]
    return next((row["status"] for row in rows if row["hostname"] == HOSTNAME), None)


def test_downloaded_zipapp_runs_on_the_system_python_and_starts_crd(
    api: RunningServer, byo_agent: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    process, record = byo_agent
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.executable, sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".venv" not in version  # really another interpreter than the server's
    wait_until(lambda: vm_status(api) == "available", timeout=30, message="the VM registers")
    seat = httpx.post(
        f"{api.url}/request_vm",
        json={"email": "byo@example.org", "crd_command": crd("4/0ByoZipappCode")},
        timeout=30,
    )
    assert seat.status_code == 200, seat.text
    assert seat.json()["hostname"] == HOSTNAME
    found = wait_until(lambda: starts(record), timeout=30, message="the CRD start is recorded")
    (start,) = found  # type: ignore[misc]
    assert start["code"] == "4/0ByoZipappCode" and start["pin"] == seat.json()["pin"]
    assert not any(str(seat.json()["pin"]) in arg for arg in start["argv"])  # type: ignore[union-attr]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0, (tmp_path / "agent.log").read_text()
