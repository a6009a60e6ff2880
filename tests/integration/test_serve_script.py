"""`scripts/serve` as a person runs it: the first start installs the project into .venv, a
start on an up-to-date .venv skips the install (a stamp of pyproject.toml's hash), and Ctrl-C
ends with a one-line summary of what was stopped. The two start times are measured and
printed (timings are never asserted)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from lablink_core.localdb import free_port
from tests.fixtures.server import ADMIN_PASSWORD
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def serve_once(database_url: str, data_dir: Path) -> tuple[float, str]:
    """Run scripts/serve until healthy, then Ctrl-C it; (seconds to healthy, its output)."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LABLINK_APP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LABLINK_APP_DATA_DIR": str(data_dir),
        "LABLINK_FLEET_PROVIDER": "local",
    }
    log = data_dir / f"serve-{port}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "serve"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: healthy(port, process, log), timeout=240, message="scripts/serve")
        took = time.monotonic() - started
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    return took, log.read_text(errors="replace")


def healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"scripts/serve exited: {log.read_text()[-2000:]}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_current_venv_starts_without_reinstalling_and_says_what_stopped(
    database_url: str, tmp_path: Path
) -> None:
    for stamp in (REPO / ".venv").glob(".lablink-install-*"):
        stamp.unlink()  # as before the stamp existed: every start reinstalled
    first, first_output = serve_once(database_url, tmp_path)
    again, output = serve_once(database_url, tmp_path)
    print(
        f"scripts/serve to a healthy server: {first:.1f} s with the install, {again:.1f} s "
        f"on an up-to-date .venv ({again / first:.0%} of the first)"
    )
    assert "LabLink stopped: 0 local VMs stopped, database left running." in output
    assert "LabLink stopped:" in first_output
    assert "Successfully installed" not in output and "pip" not in output.lower()
