"""The Fleet with the AWS provider: real terraform, the local hashicorp/aws mirror, moto, and a
throw-away PostgreSQL database."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from lablink_core.allocation import Allocator
from lablink_core.aws_credentials import AwsCredentials, AwsCredentialStore
from lablink_core.config import LablinkConfig, load_config
from lablink_core.credentials import VMCredentials
from lablink_core.fleet import Fleet, FleetOperationFailed, FleetProgress
from lablink_core.fleet.aws import (
    CLIENT_CONFIG_DIR,
    AwsProvider,
    aws_environment,
    deployment_name,
    loopback_url,
    state_dir,
    state_instance_names,
)
from lablink_core.fleet.operations import lock_is_held
from lablink_core.fleet.terraform import TerraformRunner
from lablink_core.vms import VMRegistry
from tests.fixtures.aws import MotoServer, RecordingRunner, ec2_for
from tests.fixtures.aws import aws_environment as moto_environment
from tests.integration.test_allocation import crd
from tests.integration.test_terraform import instances as deployment_instances
from tests.integration.test_terraform import security_groups as deployment_security_groups

DEPLOYMENT = "lablink-vm"
NAMES = ["lablink-vm-001", "lablink-vm-002", "lablink-vm-003"]
CREDENTIAL_KEY = "aws-fleet-test-credential-key-0123456789"


@dataclass
class AwsFleet:
    fleet: Fleet
    provider: AwsProvider
    runner: RecordingRunner
    registry: VMRegistry
    seen: list[tuple[float, FleetProgress]] = field(default_factory=list)

    def rows(self) -> dict[str, str]:
        return {vm["hostname"]: vm["status"] for vm in self.registry.list()}

    def record(self, progress: FleetProgress) -> None:
        self.seen.append((time.monotonic(), progress))


def client_config() -> LablinkConfig:
    return load_config(environ={"LABLINK_MACHINE_MACHINE_TYPE": "t3.micro"})


def build_fleet(
    engine: Engine, registry: VMRegistry, env: Mapping[str, str], plugin_dir: Path, data: Path
) -> AwsFleet:
    config = client_config()
    recording = RecordingRunner()
    runner = TerraformRunner(
        source_dir=CLIENT_CONFIG_DIR,
        work_dir=state_dir(data, deployment_name(config)),
        env=env,
        plugin_dir=plugin_dir,
        parallelism=50,
        runner=recording,
    )
    provider = AwsProvider(
        runner=runner,
        credentials=VMCredentials(CREDENTIAL_KEY),
        config=config,
        allocator_url="http://203.0.113.7:5000",
    )
    fleet = Fleet(engine, registry, provider, name_prefix="lablink-vm")
    return AwsFleet(fleet, provider, recording, registry)


@pytest.fixture
def aws_fleet(
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    engine: Engine,
    registry: VMRegistry,
    tmp_path: Path,
) -> AwsFleet:
    return build_fleet(engine, registry, aws_env, terraform_plugin_dir, tmp_path / "data")


def instances(ec2: Any) -> dict[str, dict[str, Any]]:
    """Pending or running instances of the deployment, by Name tag."""
    return deployment_instances(ec2, DEPLOYMENT)


def security_groups(ec2: Any) -> list[str]:
    return deployment_security_groups(ec2, DEPLOYMENT)


def assert_no_secret_leaked(setup: AwsFleet) -> None:
    """Credentials went only through TF_VAR_ variables: not argv, files or the stored logs."""
    secrets = [VMCredentials(CREDENTIAL_KEY).issue(name) for name in NAMES]
    for argv, _env, _ in setup.runner.commands:
        assert not any(secret in " ".join(argv) for secret in secrets), argv
    applies = [env for argv, env, _ in setup.runner.commands if argv[1] == "apply"]
    assert json.loads(applies[0]["TF_VAR_vm_credentials"]).keys() == set(NAMES)
    for path in setup.provider.work_dir.rglob("*"):
        if path.is_file() and ".terraform" not in path.parts and "tfstate" not in path.name:
            assert not any(secret in path.read_text(errors="replace") for secret in secrets)
    for operation in setup.fleet.operations():
        assert not any(secret in operation["log"] for secret in secrets)


@pytest.mark.terraform
def test_launch_assign_scale_and_destroy(
    aws_fleet: AwsFleet, ec2_client: Any, allocator: Allocator
) -> None:
    setup, fleet = aws_fleet, aws_fleet.fleet
    began = time.monotonic()
    result = fleet.launch(3, on_progress=setup.record)
    print(f"launch of 3 took {time.monotonic() - began:.1f} s")
    assert result.state == "succeeded" and result.done == result.planned == 3
    found = instances(ec2_client)
    assert set(found) == set(NAMES) == setup.provider.instances()
    for name, instance in found.items():
        tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
        assert tags == {"Name": name, "lablink-deployment": DEPLOYMENT}
        assert instance["State"]["Name"] == "running"
    assert setup.rows() == dict.fromkeys(NAMES, "booting")
    assert_progress_streamed(setup, result)
    assert_no_secret_leaked(setup)

    # A VM calls in and a researcher gets it.
    setup.registry.register("lablink-vm-002")
    assert allocator.request_vm("ada@example.org", crd("4/0AwsFleet")).hostname == "lablink-vm-002"
    ids = {name: instance["InstanceId"] for name, instance in found.items()}

    assert fleet.scale_to(5).state == "succeeded"
    grown = instances(ec2_client)
    assert set(grown) == {*NAMES, "lablink-vm-004", "lablink-vm-005"} == set(setup.rows())
    assert {name: grown[name]["InstanceId"] for name in NAMES} == ids

    assert fleet.scale_to(2).state == "succeeded"
    left = instances(ec2_client)
    assert set(left) == {"lablink-vm-001", "lablink-vm-002"} == set(setup.rows())
    assert setup.provider.instances() == set(left)
    assert setup.rows()["lablink-vm-002"] == "assigned"
    assert left["lablink-vm-002"]["InstanceId"] == ids["lablink-vm-002"]

    assert fleet.destroy_all(force=True).state == "succeeded"
    assert instances(ec2_client) == {} and security_groups(ec2_client) == []
    assert setup.rows() == {} and setup.provider.instances() == set()
    kinds = [(op["kind"], op["state"]) for op in fleet.operations()]
    assert kinds == [("destroy", "succeeded")] + [("scale", "succeeded")] * 2 + [
        ("launch", "succeeded")
    ]


def assert_progress_streamed(setup: AwsFleet, result: FleetProgress) -> None:
    """Instance events reached the callback while terraform apply still ran, in order."""
    apply_end = setup.runner.ended("apply")
    lines = [(at, p) for at, p in setup.seen if p.state == "running"]
    starts = [
        at for at, p in lines if "aws_instance.client" in p.message and "Creating" in p.message
    ]
    completes = [at for at, p in lines if "Creation complete" in p.message]
    assert len(starts) == 3 and len(completes) == 4  # 3 instances and the security group
    assert starts[0] < completes[-1] < apply_end, "progress should arrive while terraform runs"
    dones = [p.done for _, p in lines]
    assert dones == sorted(dones) and dones[-1] == 3
    assert any("(4 created, 0 destroyed of 4 planned)" in p.message for _, p in lines)
    assert setup.seen[-1][1] == result and setup.seen[-1][0] >= apply_end


@pytest.mark.terraform
def test_a_failed_apply_is_recorded_and_the_next_one_recovers(
    terraform_plugin_dir: Path, engine: Engine, registry: VMRegistry, tmp_path: Path
) -> None:
    moto = MotoServer()
    moto.start()
    try:
        setup = build_fleet(
            engine, registry, moto_environment(moto.url), terraform_plugin_dir, tmp_path
        )

        def pull_the_plug(progress: FleetProgress) -> None:
            if "aws_instance.client" in progress.message and "Creating..." in progress.message:
                moto.stop()

        began = time.monotonic()
        with pytest.raises(FleetOperationFailed) as raised:
            setup.fleet.launch(2, on_progress=pull_the_plug)
        failed_after = time.monotonic() - began
        progress = raised.value.progress
        assert progress.state == "failed" and progress.error is not None
        assert progress.error.startswith("Terraform could not create the AWS VMs: ")
        assert "connection refused" in progress.error.lower(), progress.error
        [operation] = setup.fleet.operations()
        assert operation["state"] == "failed" and operation["error"] == progress.error
        assert not lock_is_held(engine) and setup.fleet.running_operation() is None
        assert set(setup.rows()) == setup.provider.instances()
        print(f"failed after {failed_after:.1f} s; rows {setup.rows()}; {progress.error}")

        moto.start()  # empty again: what Terraform recorded is gone, and it notices
        began = time.monotonic()
        assert setup.fleet.launch(1).state == "succeeded"
        print(f"the next launch took {time.monotonic() - began:.1f} s")
        ec2 = ec2_for(moto.url)
        assert "lablink-vm-003" in setup.rows()
        assert set(instances(ec2)) == set(setup.rows()) == setup.provider.instances()
        assert len(security_groups(ec2)) == 1
    finally:
        moto.stop()


# Pure parts: no terraform needed. ------------------------------------------------------


def test_saved_keys_win_over_the_environment_and_settings_pass(tmp_path: Path) -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAFROMENVIRONMENT0",
        "AWS_SECRET_ACCESS_KEY": "environment-secret-0000",
        "AWS_PROFILE": "someone",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "HTTPS_PROXY": "http://proxy:3128",
        "DATABASE_URL": "postgresql://not-for-terraform",
        "LABLINK_APP_ADMIN_PASSWORD": "not-for-terraform",
    }
    passed = aws_environment(tmp_path, environ)
    assert passed == {k: v for k, v in environ.items() if k.startswith(("AWS_", "HTTPS_"))}
    AwsCredentialStore(tmp_path).save(
        AwsCredentials.parse("AKIASAVEDINDASHBOARD", "saved-secret-0000000000")
    )
    passed = aws_environment(tmp_path, environ)
    assert passed["AWS_ACCESS_KEY_ID"] == "AKIASAVEDINDASHBOARD"
    assert passed["AWS_SECRET_ACCESS_KEY"] == "saved-secret-0000000000"
    assert "AWS_PROFILE" not in passed and passed["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"


def test_state_names_include_tainted_instances_only_of_the_client_resource(
    tmp_path: Path,
) -> None:
    state = tmp_path / "terraform.tfstate"
    assert state_instance_names(state) == set()
    resources = [
        {"mode": "managed", "type": "aws_security_group", "name": "client", "instances": [{}]},
        {
            "mode": "managed",
            "type": "aws_instance",
            "name": "client",
            "instances": [{"index_key": "vm-a"}, {"index_key": "vm-b", "status": "tainted"}],
        },
        {
            "mode": "data",
            "type": "aws_instance",
            "name": "client",
            "instances": [{"index_key": "x"}],
        },
    ]
    state.write_text(json.dumps({"version": 4, "resources": resources}))
    assert state_instance_names(state) == {"vm-a", "vm-b"}


def test_names_and_urls() -> None:
    assert deployment_name(load_config(environ={"LABLINK_FLEET_NAME_PREFIX": "lab-"})) == "lab"
    assert deployment_name(client_config()) == DEPLOYMENT
    assert loopback_url("http://127.0.0.1:5000") and loopback_url("http://localhost:5000")
    assert not loopback_url("http://203.0.113.7:5000")
