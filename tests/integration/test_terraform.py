"""The Terraform configs and TerraformRunner against the real terraform binary, the local
hashicorp/aws mirror and a moto server."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lablink_core.fleet.terraform import (
    TerraformError,
    TerraformEvent,
    TerraformProgress,
    TerraformRunner,
)
from tests.fixtures.aws import MotoServer, RecordingRunner, aws_environment, ec2_for

pytestmark = pytest.mark.terraform

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
CLIENT = TERRAFORM / "client"
SECRET_PREFIX = "lve1.enrolment-token-"


def terraform(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run terraform without the host's CLI config or TF_* settings."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": tempfile.gettempdir(),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",  # no version check, no files written next to the config
    }
    return subprocess.run(
        ["terraform", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def client_variables(names: Sequence[str]) -> dict[str, object]:
    return {
        "allocator_url": "http://203.0.113.7:5000",
        "vm_names": list(names),
        "vm_enrolment_tokens": {name: SECRET_PREFIX + name for name in names},
        "deployment_name": "lablink-test",
        "machine_type": "t3.micro",
    }


class Recorder:
    """An on_event callback that keeps each event, the progress then, and its arrival time."""

    def __init__(self, on_event: Callable[[TerraformEvent], None] | None = None) -> None:
        self.events: list[tuple[float, TerraformEvent, TerraformProgress]] = []
        self._then = on_event

    def __call__(self, event: TerraformEvent, progress: TerraformProgress) -> None:
        snapshot = TerraformProgress(**vars(progress))
        self.events.append((time.monotonic(), event, snapshot))
        if self._then is not None:
            self._then(event)

    def kinds(self) -> list[str]:
        return [event.kind for _, event, _ in self.events]


def instances(ec2: Any, deployment: str = "lablink-test") -> dict[str, dict[str, Any]]:
    """Running or pending instances of a deployment, by Name tag."""
    found: dict[str, dict[str, Any]] = {}
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:lablink-deployment", "Values": [deployment]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
                found[tags["Name"]] = instance
    return found


def security_groups(ec2: Any, deployment: str = "lablink-test") -> list[str]:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "tag:lablink-deployment", "Values": [deployment]}]
    )["SecurityGroups"]
    return [group["GroupId"] for group in groups]


def test_configs_are_formatted(terraform_plugin_dir: Path) -> None:
    result = terraform("fmt", "-check", "-diff", "-recursive", str(TERRAFORM), cwd=TERRAFORM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_client_fleet_apply_update_destroy(
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
    terraform_work_dir: Path,
) -> None:
    timed = RecordingRunner()
    runner = TerraformRunner(
        source_dir=CLIENT,
        work_dir=terraform_work_dir,
        env=aws_env,
        plugin_dir=terraform_plugin_dir,
        runner=timed,
    )

    # 1. Three named VMs; events stream while terraform runs.
    first = Recorder()
    outputs = runner.apply(client_variables(["vm-a", "vm-b", "vm-c"]), first)
    apply_end = timed.ended("apply")
    assert set(instances(ec2_client)) == {"vm-a", "vm-b", "vm-c"}
    vms = outputs["vms"]
    assert isinstance(vms, dict) and set(vms) == {"vm-a", "vm-b", "vm-c"}
    ids = {name: vm["id"] for name, vm in vms.items()}
    assert ids == {name: i["InstanceId"] for name, i in instances(ec2_client).items()}
    assert all(vm["name"] == name and vm["public_dns"] is not None for name, vm in vms.items())
    assert first.kinds().count("planned_change") == 4
    early = [t for t, event, _ in first.events if event.kind in ("planned_change", "apply_start")]
    assert early and early[0] < apply_end - 1.0, "events should arrive while terraform runs"
    assert all(t <= apply_end for t, _, _ in first.events)
    assert first.events[-1][2].created == 4

    # Variables only went through the environment: no file holds a token (the state keeps
    # only a hash of user_data).
    for path in terraform_work_dir.rglob("*"):
        if path.is_file() and "providers" not in path.parts:
            assert SECRET_PREFIX not in path.read_text(errors="replace"), path

    # 2. Keep two, drop one, add two: the kept VMs keep their instances (keyed by name).
    second = Recorder()
    outputs = runner.apply(client_variables(["vm-a", "vm-c", "vm-d", "vm-e"]), second)
    now = instances(ec2_client)
    assert set(now) == {"vm-a", "vm-c", "vm-d", "vm-e"}
    assert now["vm-a"]["InstanceId"] == ids["vm-a"] and now["vm-c"]["InstanceId"] == ids["vm-c"]
    assert set(outputs["vms"]) == set(now)  # type: ignore[arg-type]
    final = second.events[-1][2]
    assert (final.planned, final.created, final.destroyed, final.failed) == (3, 2, 1, 0)

    # 3. Destroy: nothing of the deployment is left.
    third = Recorder()
    runner.destroy(client_variables(["vm-a", "vm-c", "vm-d", "vm-e"]), third)
    assert instances(ec2_client) == {}
    assert security_groups(ec2_client) == []
    assert third.events[-1][2].destroyed == 5
    assert runner.outputs() == {}


def test_missing_token_is_refused_before_anything_is_created(
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
    terraform_work_dir: Path,
) -> None:
    runner = TerraformRunner(
        source_dir=CLIENT,
        work_dir=terraform_work_dir,
        env=aws_env,
        plugin_dir=terraform_plugin_dir,
    )
    variables = client_variables(["vm-a"])
    variables["vm_names"] = ["vm-a", "vm-b"]
    with pytest.raises(TerraformError, match="no token for VM vm-b"):
        runner.apply(variables, lambda event, progress: None)
    assert instances(ec2_client) == {}


def test_failed_apply_raises_readably_and_a_later_apply_recovers(
    terraform_plugin_dir: Path, terraform_work_dir: Path
) -> None:
    moto = MotoServer()
    moto.start()
    try:
        runner = TerraformRunner(
            source_dir=CLIENT,
            work_dir=terraform_work_dir,
            env=aws_environment(moto.url),
            plugin_dir=terraform_plugin_dir,
        )

        def pull_the_plug(event: TerraformEvent) -> None:
            if event.kind == "apply_start" and event.resource and "aws_instance" in event.resource:
                moto.stop()

        names = ["vm-a", "vm-b"]
        started = time.monotonic()
        with pytest.raises(TerraformError) as info:
            runner.apply(client_variables(names), Recorder(pull_the_plug))
        failed_after = time.monotonic() - started
        message = str(info.value)
        assert message and "connection refused" in message.lower(), message
        assert "{" not in message.splitlines()[0], "message should be text, not JSON"
        assert info.value.log and info.value.returncode

        moto.start()  # a fresh, empty moto on the same port
        outputs = runner.apply(client_variables(names), Recorder())
        assert set(outputs["vms"]) == set(names)  # type: ignore[arg-type]
        ec2 = ec2_for(moto.url)
        assert set(instances(ec2)) == set(names)
        print(f"failed apply took {failed_after:.1f} s: {message}")
    finally:
        moto.stop()


def moto_ami(ec2: Any) -> str:
    """The id of an AMI that moto ships (an x86_64 one, sorted for a stable choice)."""
    images = ec2.describe_images(Filters=[{"Name": "architecture", "Values": ["x86_64"]}])
    ids = sorted(image["ImageId"] for image in images["Images"])
    assert ids, "moto has no AMI"
    return str(ids[0])
