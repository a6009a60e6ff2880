"""A VM's log reaches its admin without SSH, and no secret rides along: a real
`lablink-client` ships its boot output (here holding its own credential, its PIN and a CRD
code) and the admin reads it redacted from /api/vms/{host}/logs; the server redacts again
whatever a client sends, and keeps only the last lines of each VM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from lablink_core.vm_logs import KEPT_PER_VM
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.support.waiting import wait_until

CODE = "4/0AeaYSHBsecretCodeForTheTest"


def logs(api: RunningServer, hostname: str) -> list[str]:
    reply = httpx.get(f"{api.url}/api/vms/{hostname}/logs", auth=api.admin_auth(), timeout=10)
    assert reply.status_code == 200, reply.text
    return [entry["line"] for entry in reply.json()["lines"]]


def test_boot_output_reaches_the_admin_redacted(api: RunningServer, tmp_path: Path) -> None:
    credential = api.credential("vm-logs")
    boot_log = tmp_path / "cloud-init-output.log"
    boot_log.write_text(f"starting with LABLINK_VM_CREDENTIAL={credential}\n")
    env = {
        **os.environ,
        "LABLINK_ALLOCATOR_URL": api.url,
        "LABLINK_HOSTNAME": "vm-logs",
        "LABLINK_VM_CREDENTIAL": credential,
        "LABLINK_BOOT_LOG": str(boot_log),
    }
    record = tmp_path / "record.jsonl"
    argv = [sys.executable, "-m", "lablink_core.client", "--dry-run", "--record", str(record)]
    agent = subprocess.Popen(
        [*argv, "--heartbeat-seconds", "0.5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: any("starting with" in line for line in logs(api, "vm-logs")), timeout=30
        )
        seat = httpx.post(
            f"{api.url}/request_vm", json={"email": "ada@example.org", "crd_command": crd(CODE)}
        ).json()
        with boot_log.open("a") as output:
            output.write(f"start-host --code={CODE} --pin={seat['pin']} (pin {seat['pin']})\n")
        wait_until(lambda: any("start-host" in line for line in logs(api, "vm-logs")), timeout=30)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    shipped = "\n".join(logs(api, "vm-logs"))
    for secret in (credential, CODE, seat["pin"]):
        assert secret not in shipped
    assert "[redacted]" in shipped


def test_the_server_redacts_and_keeps_the_last_lines(api: RunningServer) -> None:
    credential = api.credential("vm-ring")
    headers = {"Authorization": f"Bearer {credential}"}
    poll = {"hostname": "vm-ring", "generation": 0}
    httpx.post(f"{api.url}/vm_startup", json=poll, headers=headers, timeout=30)
    seat = httpx.post(
        f"{api.url}/request_vm", json={"email": "bob@example.org", "crd_command": crd(CODE)}
    ).json()
    careless = [f"token {credential}", f"pin is {seat['pin']}", f"code {CODE}", "Bearer abc.def"]
    body = {"hostname": "vm-ring", "source": "agent", "lines": careless}
    assert httpx.post(f"{api.url}/api/vm/logs", json=body, headers=headers).status_code == 200
    stored = logs(api, "vm-ring")
    assert stored == [
        "token [redacted]",
        "pin is [redacted]",
        "code [redacted]",
        "Bearer [redacted]",
    ]
    batches = range(0, KEPT_PER_VM + 100, 200)  # more lines than are kept
    for start in batches:
        lines = [f"line {n}" for n in range(start, start + 200)]
        body = {"hostname": "vm-ring", "source": "boot", "lines": lines}
        assert httpx.post(f"{api.url}/api/vm/logs", json=body, headers=headers).status_code == 200
    kept = logs(api, "vm-ring")
    assert len(kept) == KEPT_PER_VM and kept[-1] == f"line {batches[-1] + 199}"
    wrong = {"Authorization": "Bearer lvm2.not-its-credential"}
    assert httpx.post(f"{api.url}/api/vm/logs", json=body, headers=wrong).status_code == 401
    assert httpx.get(f"{api.url}/api/vms/vm-ring/logs", timeout=10).status_code == 401
