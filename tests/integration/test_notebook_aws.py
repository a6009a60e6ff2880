"""notebooks/aws-fleet.ipynb, executed by nbclient in the venv's Python against moto, real
terraform and a throw-away database."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from tests.fixtures.aws import MotoServer
from tests.fixtures.notebooks import (
    assert_committed_without_outputs,
    execute_notebook,
    outputs_text,
)
from tests.integration.test_fleet_aws import instances, security_groups


def test_notebook_is_committed_without_outputs() -> None:
    assert_committed_without_outputs("aws-fleet.ipynb")


@pytest.mark.terraform
@pytest.mark.timeout(400)
def test_notebook_launches_lists_scales_and_destroys_on_moto(
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
    database_url: str,
    venv_kernel: KernelSpecManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {
        **aws_env,
        "LABLINK_NOTEBOOK_DATABASE_URL": database_url,
        "LABLINK_APP_DATA_DIR": str(tmp_path / "data"),
        "LABLINK_APP_PUBLIC_URL": "http://203.0.113.7:5000",
        "LABLINK_MACHINE_MACHINE_TYPE": "t3.micro",
        "LABLINK_TF_PLUGIN_DIR": str(terraform_plugin_dir),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("LABLINK_CONFIG", raising=False)
    notebook, manager = execute_notebook("aws-fleet.ipynb", venv_kernel, tmp_path)

    assert manager.kernel_spec is not None and manager.kernel_spec.argv[0] == sys.executable
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    text = outputs_text(notebook)
    assert "aws fleet, 0 VMs now" in text
    assert "[2/2] running: " in text and "Creation complete" in text
    # What Terraform has after the launch, the scale down to one VM, and the destroy (not
    # anchored at a line start: a displayed value before a print has no newline).
    launched, scaled, destroyed = re.findall(r"Terraform has: (.*)", text)
    assert launched == "lablink-vm-001, lablink-vm-002"
    assert scaled in {"lablink-vm-001", "lablink-vm-002"}
    assert destroyed == "nothing" and "Destruction complete" in text
    assert "scaling from 2 to 1" in text and "removed 1 VM" in text
    assert "testing" not in text  # the (moto) AWS secret is never shown
    assert instances(ec2_client) == {} and security_groups(ec2_client) == []
