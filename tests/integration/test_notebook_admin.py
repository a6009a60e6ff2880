"""notebooks/admin.ipynb, executed by nbclient against a running server and a throw-away
database: it launches a local fleet, assigns a VM, watches it connect, releases, destroys."""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from tests.fixtures.notebooks import (
    assert_committed_without_outputs,
    execute_notebook,
    outputs_text,
)
from tests.fixtures.server import RunningServer


def test_notebook_is_committed_without_outputs() -> None:
    assert_committed_without_outputs("admin.ipynb")


@pytest.mark.timeout(300)
def test_admin_notebook_tours_the_local_fleet(
    api: RunningServer,
    venv_kernel: KernelSpecManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABLINK_NOTEBOOK_DATABASE_URL", api.database_url)
    monkeypatch.setenv("LABLINK_NOTEBOOK_ALLOCATOR_URL", api.url)
    monkeypatch.setenv("LABLINK_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("LABLINK_CONFIG", raising=False)
    notebook, _ = execute_notebook("admin.ipynb", venv_kernel, tmp_path, timeout=120)
    text = outputs_text(notebook)
    assert "3 VMs available" in text
    assert "is connected" in text and "released lablink-vm-" in text
    assert "0 VMs left" in text
    assert "scheduled daily at 18:00 Europe/Berlin" in text and "schedule removed" in text
    records = list((tmp_path / "data" / "local-vms").glob("*.jsonl"))
    assert any("4/0AbNotebookDemo" in r.read_text() for r in records)
