"""`python -m bench --quick` runs every benchmark end to end: correctness only, never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"allocation", "request_vm", "waiting_vms", "burst", "cross_process"}


@pytest.mark.timeout(900)
def test_quick_benchmarks_see_no_errors_and_no_double_assignments(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    document = json.loads((tmp_path / "latest.json").read_text())
    assert set(document["benchmarks"]) >= EXPECTED
    for name, outcome in document["benchmarks"].items():
        assert outcome["errors"] == 0, (name, [r.get("error_samples") for r in outcome["rows"]])
        assert outcome["doubles"] == 0, (name, [r.get("audit") for r in outcome["rows"]])
        assert outcome["rows"], name
    assert (tmp_path / "latest.md").read_text().startswith("# LabLink allocator benchmarks")
