"""Out of the box: `lablink serve` with nothing configured starts its own PostgreSQL, prints
a generated admin login, launches local VMs from the browser, assigns one, and stops clean."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from lablink_core.localdb import free_port
from tests.fixtures.browser import log_in
from tests.integration.test_allocation import crd
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
PASSWORD_LINE = re.compile(r"generated admin password .*: (\S+)")


@dataclass
class FreshServer:
    """`lablink serve` as a new user runs it: no database, no config, one data folder."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    announced_at: int = 0  # where this start's output begins in the log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FreshServer:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LABLINK_", "DATABASE_URL", "AWS_"))
        }
        env["LABLINK_APP_DATA_DIR"] = str(self.data_dir)
        command = [
            sys.executable,
            "-m",
            "lablink_core.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output = ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output += line
            if line.startswith("Press Ctrl-C to stop."):  # the announcement's last line
                break
        wait_until(self._healthy, timeout=60, message="the fresh server")
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def generated_password(self) -> str | None:
        match = PASSWORD_LINE.search(self.output)
        return match.group(1) if match else None

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        return self.process.wait(timeout=60)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (this data folder or port)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def fresh_server() -> Iterator[FreshServer]:
    """A fresh `lablink serve` with a data folder of its own under /tmp (not under a home)."""
    server = FreshServer(Path(tempfile.mkdtemp(prefix="lablink-oob-")), free_port())
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def test_zero_setup_serve_launch_assign_and_clean_stop(
    fresh_server: FreshServer, browser: Browser, screenshots_dir: Path
) -> None:
    server = fresh_server.start()
    password = server.generated_password()
    assert password, server.output
    page = browser.new_context().new_page()
    log_in(page, server.url, password=password)
    expect(page).to_have_url(f"{server.url}/admin")

    page.goto(f"{server.url}/admin/create")
    count = page.get_by_label(re.compile(r"Number of instances"))
    count.fill("3")
    count.press("Enter")
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text(re.compile(r"finished: 3 VMs launched"))).to_be_visible(timeout=60_000)
    page.goto(f"{server.url}/admin/instances")
    rows = page.get_by_role("row").filter(has_text="lablink-vm-")
    expect(rows.filter(has_text="available")).to_have_count(3, timeout=30_000)

    seat = httpx.post(
        f"{server.url}/request_vm", json={"email": "ada@example.org", "crd_command": crd("4/oob")}
    ).json()
    record = server.data_dir / "local-vms" / f"{seat['hostname']}.jsonl"
    wait_until(
        lambda: record.exists() and "4/oob" in record.read_text(), timeout=30, message="the record"
    )
    start = json.loads(record.read_text().splitlines()[0])
    assert (start["code"], start["pin"]) == ("4/oob", seat["pin"])
    expect(rows.filter(has_text="ada@example.org")).to_have_count(1, timeout=10_000)
    page.screenshot(path=screenshots_dir / "out-of-the-box-instances.png", full_page=True)
    page.context.close()

    assert server.stop() == 0
    assert processes_mentioning(str(server.data_dir)) == []
    assert processes_mentioning(f"127.0.0.1:{server.port}") == []

    again = server.start()  # the same data folder: reused, no new password
    assert again.generated_password() is None
    reply = httpx.get(f"{again.url}/api/vms", auth=("admin", password), timeout=10)
    assert reply.status_code == 200
    assert again.stop() == 0
    assert processes_mentioning(str(server.data_dir)) == []
