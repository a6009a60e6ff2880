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


def start_agent(
    api: RunningServer, pyz: Path, folder: Path, credential: str
) -> subprocess.Popen[bytes]:
    """`python3 lablink-client.pyz --dry-run` with the documented environment."""
    assert os.access(SYSTEM_PYTHON, os.X_OK), f"{SYSTEM_PYTHON} is needed (apt-get install python3)"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "LABLINK_ALLOCATOR_URL": api.url,
        "LABLINK_HOSTNAME": HOSTNAME,
        "LABLINK_VM_CREDENTIAL": credential,
    }
    command = [SYSTEM_PYTHON, str(pyz), "--dry-run", "--record", str(folder / "record.jsonl")]
    log = (folder / "agent.log").open("ab")
    return subprocess.Popen(
        [*command, "--heartbeat-seconds", "1"], env=env, stdout=log, stderr=log, cwd=folder
    )


@pytest.fixture
def byo_agent(
    api: RunningServer, downloaded: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The downloaded agent, running, and the file it records CRD commands in."""
    process = start_agent(api, downloaded, tmp_path, api.credential(HOSTNAME))
    yield process, tmp_path / "record.jsonl"
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


def request(api: RunningServer, code: str) -> dict[str, str]:
    seat = httpx.post(
        f"{api.url}/request_vm",
        json={"email": "byo@example.org", "crd_command": crd(code)},
        timeout=30,
    )
    assert seat.status_code == 200, seat.text
    reply: dict[str, str] = seat.json()
    return reply


def test_a_rotated_credential_is_saved_and_wins_over_the_environment_after_a_restart(
    api: RunningServer, downloaded: Path, tmp_path: Path
) -> None:
    first = api.credential(HOSTNAME)
    saved = tmp_path / "record.jsonl.credential"  # the dry run's default credential file
    process = start_agent(api, downloaded, tmp_path, first)
    try:
        wait_until(lambda: vm_status(api) == "available", timeout=30, message="registration")
        seat = request(api, "4/0RotateFirstCode")
        wait_until(lambda: starts(tmp_path / "record.jsonl"), timeout=30, message="CRD start")
        released = httpx.post(
            f"{api.url}/release_vm",
            json={"email": "byo@example.org", "seat_token": seat["seat_token"]},
            timeout=30,
        )
        assert released.status_code == 200, released.text
        # The release's reply rotates the credential: the agent saves the new one...
        wait_until(
            lambda: saved.exists() and saved.read_text().strip() not in ("", first),
            timeout=30,
            message="the rotated credential is saved",
        )
        assert oct(saved.stat().st_mode & 0o777) == "0o600"
        # ...and the server takes it: the VM is offered again.
        wait_until(lambda: vm_status(api) == "available", timeout=30, message="offered again")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    # Restarted with the first (now dead) credential in its environment, it uses the file's.
    process = start_agent(api, downloaded, tmp_path, first)
    try:
        wait_until(lambda: vm_status(api) == "available", timeout=30, message="back after restart")
        seat = request(api, "4/0RotateSecondCode")
        wait_until(
            lambda: any(
                s["code"] == "4/0RotateSecondCode" for s in starts(tmp_path / "record.jsonl")
            ),
            timeout=30,
            message="the second researcher's CRD start",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    log = (tmp_path / "agent.log").read_text()
    assert "refused" not in log, log  # no 401 on the way: the file was right
    assert first not in log and saved.read_text().strip() not in log
