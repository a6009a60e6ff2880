"""The admin pages in a real browser against `lablink serve` with the AWS fleet: real terraform,
the local hashicorp/aws mirror, and moto. An admin launches two VMs, destroys one, launches one
more and destroys the whole fleet, each through the pages (behind their confirmations), and
moto holds exactly what the pages said after every step.

VMs never boot in moto, so every row stays "booting"; the public URL is a documentation
address (RFC 5737) no VM could reach anyway."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_admin import row
from tests.fixtures.aws import MotoServer, aws_environment
from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_fleet_aws import instances, security_groups

pytestmark = [pytest.mark.browser, pytest.mark.terraform]

APPLY_TIMEOUT_MS = 120_000  # one terraform apply against moto: ~15 s, more on a busy machine


@pytest.fixture(scope="module")
def allocator_server(
    postgres_server_url: str,
    template_database: str,
    terraform_plugin_dir: Path,
    moto_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """This module's server: the AWS fleet on the session's moto, Terraform's state in a
    data folder of its own. (The environment is what the ``aws_env`` fixture gives a test.)"""
    data_dir = tmp_path_factory.mktemp("lablink-admin-aws-data")
    server = RunningServer(
        make_server_database(postgres_server_url, template_database),
        extra_env={
            **aws_environment(moto_endpoint),
            "LABLINK_FLEET_PROVIDER": "aws",
            "LABLINK_TF_PLUGIN_DIR": str(terraform_plugin_dir),
            "LABLINK_APP_DATA_DIR": str(data_dir),
            "LABLINK_APP_PUBLIC_URL": "http://203.0.113.7:5000",
            "LABLINK_MACHINE_MACHINE_TYPE": "t3.micro",
        },
    ).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def instance_ids(ec2: Any) -> dict[str, str]:
    """The deployment's pending or running instances in moto: Name tag -> instance id."""
    return {name: found["InstanceId"] for name, found in instances(ec2).items()}


def launch(page: Page, url: str, count: int) -> float:
    """Launch ``count`` VMs on /admin/create and wait for the page to say they are up;
    returns the seconds it took."""
    page.goto(f"{url}/admin/create")
    field = page.get_by_label(re.compile(r"Number of instances"))
    field.fill(str(count))
    field.press("Enter")
    started = time.monotonic()
    page.get_by_role("button", name="Launch").click()
    finished = re.compile(rf"Launch #\d+ finished: {count} VMs launched")
    expect(page.get_by_text(finished)).to_be_visible(timeout=APPLY_TIMEOUT_MS)
    return time.monotonic() - started


def test_launch_scale_down_up_and_destroy_all_on_moto(
    admin_page: Page,
    api: RunningServer,
    empty_moto: MotoServer,
    ec2_client: Any,
    screenshots_dir: Path,
) -> None:
    page = admin_page
    took: dict[str, float] = {}
    took["launch 2"] = launch(page, api.url, 2)
    expect(page.get_by_text("Creation complete").first).to_be_attached()
    page.screenshot(path=screenshots_dir / "admin-create-aws.png", full_page=True)

    first = instances(ec2_client)
    assert sorted(first) == ["lablink-vm-001", "lablink-vm-002"]
    for name, instance in first.items():
        tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
        assert tags == {"Name": name, "lablink-deployment": "lablink-vm"}
        assert instance["State"]["Name"] == "running"
        assert instance["InstanceType"] == "t3.micro"
    ids = {name: instance["InstanceId"] for name, instance in first.items()}
    assert len(security_groups(ec2_client)) == 1

    page.goto(f"{api.url}/admin/instances")
    for name in first:
        expect(row(page, name)).to_contain_text("booting")
    expect(row(page, "lablink-vm-")).to_have_count(2)

    # Scale down: one VM, chosen on the page, behind a confirmation naming it.
    row(page, "lablink-vm-001").get_by_role("checkbox").click()
    page.get_by_role("button", name="Destroy selected").click()
    expect(page.get_by_text("Destroy 1 VM: lablink-vm-001")).to_be_visible()
    started = time.monotonic()
    page.get_by_role("button", name="Destroy 1 VM").click()
    expect(row(page, "lablink-vm-001")).to_have_count(0, timeout=APPLY_TIMEOUT_MS)
    took["destroy 1"] = time.monotonic() - started
    expect(row(page, "lablink-vm-002")).to_contain_text("booting")
    assert instance_ids(ec2_client) == {"lablink-vm-002": ids["lablink-vm-002"]}

    # Scale up: one more VM, under a new name; the kept one is left alone.
    took["launch 1"] = launch(page, api.url, 1)
    now = instance_ids(ec2_client)
    assert len(now) == 2 and now["lablink-vm-002"] == ids["lablink-vm-002"]
    [added] = set(now) - {"lablink-vm-002"}
    assert added not in ids and now[added] not in ids.values()
    assert len(security_groups(ec2_client)) == 1

    # Destroy all: every VM and the shared security group, behind a confirmation naming them.
    page.goto(f"{api.url}/admin/instances")
    for name in now:
        expect(row(page, name)).to_contain_text("booting")
    page.get_by_role("button", name="Destroy all").click()
    question = re.compile(rf"Destroy all 2 VMs of the fleet.*{', '.join(sorted(now))}")
    expect(page.get_by_text(question)).to_be_visible()
    started = time.monotonic()
    page.get_by_role("button", name="Destroy all 2").click()
    expect(row(page, "lablink-vm-")).to_have_count(0, timeout=APPLY_TIMEOUT_MS)
    took["destroy all"] = time.monotonic() - started
    assert instances(ec2_client) == {}
    assert security_groups(ec2_client) == []
    print("seconds, click to page update:", {k: round(v, 1) for k, v in took.items()})
