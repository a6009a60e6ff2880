"""The Fleet with the AWS provider: real terraform, the local hashicorp/aws mirror, moto, and a
throw-away PostgreSQL database."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from lablink_core.allocation import Allocator
from lablink_core.aws_credentials import AwsCredentials, AwsCredentialStore
from lablink_core.config import HealthConfig, LablinkConfig, load_config
from lablink_core.enrolment import VMEnrolment
from lablink_core.fleet import Fleet, FleetOperationFailed, FleetProgress
from lablink_core.fleet.aws import (
    CLIENT_CONFIG_DIR,
    PLACEHOLDER_TOKEN,
    AwsProvider,
    aws_environment,
    deployment_name,
    loopback_url,
    state_dir,
)
from lablink_core.fleet.operations import lock_is_held
from lablink_core.fleet.state import fleet_state
from lablink_core.fleet.terraform import TerraformRunner
from lablink_core.healing import Healer
from lablink_core.metrics import PoolReading, PrometheusMetrics
from lablink_core.vm_actions import ActionLog
from lablink_core.vms import VMRegistry, utc_now
from tests.fixtures.aws import MotoServer, RecordingRunner, ec2_for
from tests.fixtures.aws import aws_environment as moto_environment
from tests.integration.test_allocation import crd
from tests.integration.test_terraform import instances as deployment_instances
from tests.integration.test_terraform import security_groups as deployment_security_groups
from tests.support.metrics import parse, value
from tests.support.vms import poll

DEPLOYMENT = "lablink-vm"
NAMES = ["lablink-vm-001", "lablink-vm-002", "lablink-vm-003"]
TOKEN_IN_USER_DATA = re.compile(r"^ENROLMENT_TOKEN='([^']*)'$", re.MULTILINE)


class TokenLedger:
    """``issue_enrolment`` of the test's database, noting every token it issued."""

    def __init__(self, enrolment: VMEnrolment) -> None:
        self._enrolment = enrolment
        self.issued: list[dict[str, str]] = []

    def __call__(self, hostnames: Sequence[str]) -> dict[str, str]:
        tokens = self._enrolment.issue_enrolment(hostnames)
        self.issued.append(dict(tokens))
        return tokens

    def all(self) -> list[str]:
        return [token for batch in self.issued for token in batch.values()]


@dataclass
class AwsFleet:
    fleet: Fleet
    provider: AwsProvider
    runner: RecordingRunner
    registry: VMRegistry
    tokens: TokenLedger
    seen: list[tuple[float, FleetProgress]] = field(default_factory=list)

    def rows(self) -> dict[str, str]:
        return {vm["hostname"]: vm["status"] for vm in self.registry.list()}

    def record(self, progress: FleetProgress) -> None:
        self.seen.append((time.monotonic(), progress))


def client_config() -> LablinkConfig:
    return load_config(environ={"LABLINK_MACHINE_MACHINE_TYPE": "t3.micro"})


def build_fleet(
    engine: Engine,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    env: Mapping[str, str],
    plugin_dir: Path,
    data: Path,
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
    tokens = TokenLedger(enrolment)
    provider = AwsProvider(
        runner=runner,
        issue_enrolment=tokens,
        config=config,
        allocator_url="http://203.0.113.7:5000",
    )
    fleet = Fleet(engine, registry, provider, name_prefix="lablink-vm")
    return AwsFleet(fleet, provider, recording, registry, tokens)


@pytest.fixture
def aws_fleet(
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    engine: Engine,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    tmp_path: Path,
) -> AwsFleet:
    """A Fleet on the test's database whose AWS provider runs real Terraform against moto."""
    data = tmp_path / "data"
    return build_fleet(engine, registry, enrolment, aws_env, terraform_plugin_dir, data)


def instances(ec2: Any) -> dict[str, dict[str, Any]]:
    """Pending or running instances of the deployment, by Name tag."""
    return deployment_instances(ec2, DEPLOYMENT)


def security_groups(ec2: Any) -> list[str]:
    return deployment_security_groups(ec2, DEPLOYMENT)


def user_data(ec2: Any, instance_id: str) -> str:
    """An instance's user_data as EC2 hands it back (DescribeInstanceAttribute)."""
    reply = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(reply["UserData"]["Value"]).decode()


def enrolment_token(script: str) -> str:
    match = TOKEN_IN_USER_DATA.search(script)
    assert match, "user_data should carry an enrolment token"
    return match.group(1)


def assert_no_secret_leaked(setup: AwsFleet) -> None:
    """Tokens went only through TF_VAR_ variables: not argv, files or the stored logs."""
    secrets = setup.tokens.all()
    assert len(secrets) == len(NAMES)
    for argv, _env, _ in setup.runner.commands:
        assert not any(secret in " ".join(argv) for secret in secrets), argv
    applies = [env for argv, env, _ in setup.runner.commands if argv[1] == "apply"]
    assert json.loads(applies[0]["TF_VAR_vm_enrolment_tokens"]).keys() == set(NAMES)
    for path in setup.provider.work_dir.rglob("*"):
        if path.is_file() and ".terraform" not in path.parts:
            assert not any(secret in path.read_text(errors="replace") for secret in secrets)
    for operation in setup.fleet.operations():
        assert not any(secret in operation["log"] for secret in secrets)


@pytest.mark.terraform
def mark_errored(engine: Engine, hostname: str, since_minutes: float = 0) -> None:
    """The VM reported an error (and, with ``since_minutes``, its last repair began then)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE vms SET status = 'error', status_message = 'start-host failed', "
                "healing_since = CASE WHEN :ago > 0 THEN now() - make_interval(mins => :ago) "
                "ELSE healing_since END WHERE hostname = :h"
            ),
            {"h": hostname, "ago": since_minutes},
        )


def test_launch_heal_assign_scale_and_destroy(
    aws_fleet: AwsFleet,
    ec2_client: Any,
    allocator: Allocator,
    enrolment: VMEnrolment,
    engine: Engine,
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
    ids = {name: instance["InstanceId"] for name, instance in found.items()}
    first_tokens = {name: enrolment_token(user_data(ec2_client, ids[name])) for name in NAMES}
    assert first_tokens == setup.tokens.issued[0]

    # The VM reports an error: the healer (its own pass, as the maintenance loop runs it)
    # reboots it first: the same instance, running.
    metrics = PrometheusMetrics()
    healer = Healer(engine, "vms", fleet, ActionLog(engine, "vms"), HealthConfig(), metrics)
    mark_errored(engine, "lablink-vm-001")
    assert [(d.hostname, d.action) for d in healer.pass_once(utc_now())] == [
        ("lablink-vm-001", "reboot")
    ]
    assert instances(ec2_client)["lablink-vm-001"]["InstanceId"] == ids["lablink-vm-001"]
    assert instances(ec2_client)["lablink-vm-001"]["State"]["Name"] == "running"
    assert f"rebooting lablink-vm-001 ({ids['lablink-vm-001']})" in fleet.operations()[0]["log"]
    assert healer.pass_once(utc_now()) == []  # given time to come back

    # Still errored once the reboot's grace is over: replaced. A new instance under the same
    # name with a new token; no other instance touched, and only one token issued.
    mark_errored(engine, "lablink-vm-001", since_minutes=20)
    [replace] = healer.pass_once(utc_now())
    assert (replace.hostname, replace.action) == ("lablink-vm-001", "replace")
    assert fleet.operations()[0]["state"] == "succeeded" and fleet.operations()[0]["done"] == 1
    now = instances(ec2_client)
    assert now["lablink-vm-001"]["InstanceId"] != ids["lablink-vm-001"]
    assert {name: now[name]["InstanceId"] for name in NAMES[1:]} == {
        name: ids[name] for name in NAMES[1:]
    }
    reasons = [a["reason"] for a in ActionLog(engine, "vms").for_vm("lablink-vm-001")]
    assert reasons == ["it reported an error: start-host failed"] * 2
    [fresh] = setup.tokens.issued[1:]
    assert list(fresh) == ["lablink-vm-001"]
    new_token = enrolment_token(user_data(ec2_client, now["lablink-vm-001"]["InstanceId"]))
    assert new_token == fresh["lablink-vm-001"] != first_tokens["lablink-vm-001"]
    replace_argv = setup.runner.commands[-2][0]
    assert '-replace=aws_instance.client["lablink-vm-001"]' in replace_argv
    assert json.loads(setup.runner.commands[-2][1]["TF_VAR_vm_enrolment_tokens"]) == {
        "lablink-vm-001": new_token,
        "lablink-vm-002": PLACEHOLDER_TOKEN,
        "lablink-vm-003": PLACEHOLDER_TOKEN,
    }
    ids["lablink-vm-001"] = now["lablink-vm-001"]["InstanceId"]
    healed = parse(metrics.exposition(PoolReading())[0].decode())
    for action in ("reboot", "replace"):
        done = {"action": action, "outcome": "done"}
        assert value(healed, "lablink_healer_actions_total", **done) == 1

    # A VM calls in, as its user_data would (the token for its credential), and a researcher
    # gets it. The replaced VM's old token is worthless now.
    with pytest.raises(Exception, match="wrong, used or expired"):
        enrolment.exchange("lablink-vm-001", first_tokens["lablink-vm-001"])
    credential = enrolment.exchange("lablink-vm-002", first_tokens["lablink-vm-002"])
    poll(setup.registry, "lablink-vm-002", credential)
    assert allocator.request_vm("ada@example.org", crd("4/0AwsFleet")).hostname == "lablink-vm-002"

    # lablink-vm-003 vanishes behind Terraform's back: the next apply creates it again, with
    # the placeholder it was given as an existing VM, so it is replaced with a token at once.
    ec2_client.terminate_instances(InstanceIds=[ids["lablink-vm-003"]])
    grow = fleet.scale_to(5)
    assert grow.state == "succeeded"
    grown = instances(ec2_client)
    assert set(grown) == {*NAMES, "lablink-vm-004", "lablink-vm-005"} == set(setup.rows())
    kept = ["lablink-vm-001", "lablink-vm-002"]
    assert {name: grown[name]["InstanceId"] for name in kept} == {name: ids[name] for name in kept}
    assert [set(batch) for batch in setup.tokens.issued[-2:]] == [
        {"lablink-vm-004", "lablink-vm-005"},
        {"lablink-vm-003"},
    ]
    back = enrolment_token(user_data(ec2_client, grown["lablink-vm-003"]["InstanceId"]))
    assert back == setup.tokens.issued[-1]["lablink-vm-003"]
    assert "lablink-vm-003 came back without an enrolment token" in fleet.operations()[0]["log"]

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
        ("heal", "succeeded")
    ] * 2 + [("launch", "succeeded")]


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
    terraform_plugin_dir: Path,
    engine: Engine,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    tmp_path: Path,
) -> None:
    moto = MotoServer()
    moto.start()
    try:
        env = moto_environment(moto.url)
        setup = build_fleet(engine, registry, enrolment, env, terraform_plugin_dir, tmp_path)

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
        found = instances(ec2)
        assert set(found) == set(setup.rows()) == setup.provider.instances()
        assert len(security_groups(ec2)) == 1
        # Every VM that exists now (some came back from the state) boots with a real token.
        for instance in found.values():
            assert enrolment_token(user_data(ec2, instance["InstanceId"])) != PLACEHOLDER_TOKEN
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


def test_state_names_include_tainted_instances_only_of_the_client_resource() -> None:
    assert fleet_state({}).names == frozenset()
    resources = [
        {"mode": "managed", "type": "aws_security_group", "name": "client", "instances": [{}]},
        {
            "mode": "managed",
            "type": "aws_instance",
            "name": "client",
            "instances": [
                {"index_key": "vm-a", "attributes": {"id": "i-a"}},
                {"index_key": "vm-b", "status": "tainted", "attributes": {"id": "i-b"}},
            ],
        },
        {
            "mode": "data",
            "type": "aws_instance",
            "name": "client",
            "instances": [{"index_key": "x"}],
        },
    ]
    state = fleet_state({"version": 4, "resources": resources})
    assert state.names == {"vm-a", "vm-b"} and state.tainted == {"vm-b"}
    assert state.ids == {"vm-a": "i-a", "vm-b": "i-b"} and state.resources == 3


def test_names_and_urls() -> None:
    assert deployment_name(load_config(environ={"LABLINK_FLEET_NAME_PREFIX": "lab-"})) == "lab"
    assert deployment_name(client_config()) == DEPLOYMENT
    assert loopback_url("http://127.0.0.1:5000") and loopback_url("http://localhost:5000")
    assert not loopback_url("http://203.0.113.7:5000")
