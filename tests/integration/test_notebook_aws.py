"""notebooks/aws-fleet.ipynb, executed by nbclient in the venv's Python against moto, real
terraform and a throw-away database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.fixtures.aws import MotoServer
from tests.integration.test_fleet_aws import instances, security_groups

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "aws-fleet.ipynb"


@pytest.fixture
def venv_kernel(tmp_path: Path) -> KernelSpecManager:
    """Kernel specs holding only 'python3', run by this interpreter (the venv's)."""
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    body = {"argv": argv, "display_name": "Python 3 (venv)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(body))
    return KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)


def outputs_text(notebook: Any) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.terraform
@pytest.mark.timeout(400)
def test_notebook_launches_lists_and_destroys_on_moto(
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
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=venv_kernel)
    client = NotebookClient(
        notebook,
        km=manager,
        kernel_name="python3",
        timeout=240,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        # Raises CellExecutionError on the first failing cell; shuts the kernel down.
        client.execute(cleanup_kc=True)
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    (tmp_path / "executed.ipynb").write_text(nbformat.writes(notebook))

    assert manager.kernel_spec is not None and manager.kernel_spec.argv[0] == sys.executable
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    text = outputs_text(notebook)
    assert "aws fleet, 0 VMs now" in text
    assert "[2/2] running: " in text and "Creation complete" in text
    assert "Terraform has: lablink-vm-001, lablink-vm-002" in text
    assert "Terraform has: nothing" in text and "Destruction complete" in text
    assert "testing" not in text  # the (moto) AWS secret is never shown
    assert instances(ec2_client) == {} and security_groups(ec2_client) == []
