"""Driving a running server's local fleet from tests: launches and destroys through the admin
API (JSON lines of progress), and a look at its VM processes and their dry-run records."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from lablink_core.fleet.local import is_vm_process
from tests.fixtures.server import RunningServer


def fleet_operation(api: RunningServer, action: str, **body: Any) -> list[dict[str, Any]]:
    """POST /api/fleet/<action>; the progress events it streamed, the final one last."""
    with httpx.stream(
        "POST",
        f"{api.url}/api/fleet/{action}",
        json=body,
        auth=api.admin_auth(),
        headers={"Origin": api.url},
        timeout=120,
    ) as reply:
        assert reply.status_code == 200, reply.read().decode()
        events = [json.loads(line) for line in reply.iter_lines() if line.strip()]
    assert events and events[-1]["event"] == "finished", events
    return events


def vms(api: RunningServer) -> dict[str, dict[str, Any]]:
    reply = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10)
    reply.raise_for_status()
    return {vm["hostname"]: vm for vm in reply.json()["vms"]}


def pids(api: RunningServer) -> dict[str, int]:
    engine = create_engine(api.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT hostname, pid FROM lablink_local_processes"))
            return {str(row.hostname): int(row.pid) for row in rows}
    finally:
        engine.dispose()


def live_pid(api: RunningServer, hostname: str) -> int | None:
    """The VM's process, if it runs (really: its pid is the agent of that VM)."""
    pid = pids(api).get(hostname)
    return pid if pid is not None and is_vm_process(pid, hostname) else None


def signal_vm(api: RunningServer, hostname: str, signum: signal.Signals) -> int:
    pid = live_pid(api, hostname)
    assert pid is not None, f"{hostname} has no process"
    os.kill(pid, signum)
    return pid


def record_dir(api: RunningServer) -> Path:
    return api.log_path.parent / "local-vms"


def starts(api: RunningServer, hostname: str) -> list[dict[str, Any]]:
    """The CRD starts a local VM recorded (its dry run), oldest first."""
    path = record_dir(api) / f"{hostname}.jsonl"
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [entry for entry in entries if entry["event"] == "start"]


def set_desktop(api: RunningServer, hostname: str, connected: bool) -> None:
    """What a dry-run VM reports as its remote desktop connection (read at each heartbeat)."""
    path = record_dir(api) / f"{hostname}.jsonl.desktop"
    path.write_text("connected\n" if connected else "none\n")
