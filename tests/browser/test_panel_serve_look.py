"""The README's `panel serve` line as a new user runs it, on a fresh data folder: it prints a
generated admin password that logs in, serves the same pages in the same template as
`lablink serve` (screenshots, axe-core, no request to another host), and launches and
destroys a local fleet from the browser, with the operations in the history."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from lablink_core.localdb import free_port
from tests.browser.test_look import destroy_all, launch_local_vms, visit_every_page
from tests.integration.test_panel_serve import PANEL_SERVE
from tests.support.pages import RequestLog
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PASSWORD_LINE = re.compile(r"generated admin password .*: (\S+)")


@dataclass
class FreshPanelServe:
    """`panel serve` with nothing configured but a data folder and the local fleet."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "panel-serve.log"

    def start(self) -> FreshPanelServe:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LABLINK_", "DATABASE_URL", "AWS_"))
        }
        path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            PATH=path, LABLINK_APP_DATA_DIR=str(self.data_dir), LABLINK_FLEET_PROVIDER="local"
        )
        command = ["bash", "-c", "exec " + PANEL_SERVE.format(port=self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        wait_until(self._healthy, timeout=120, message=f"panel serve ({self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"panel serve exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def generated_password(self) -> str | None:
        match = PASSWORD_LINE.search(self.log_path.read_text(errors="replace"))
        return match.group(1) if match else None

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def fresh_panel_serve() -> Iterator[FreshPanelServe]:
    """The README's panel serve line on a data folder of its own under /tmp."""
    server = FreshPanelServe(Path(tempfile.mkdtemp(prefix="lablink-panel-serve-"))).start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def test_a_fresh_panel_serve_prints_a_password_that_logs_in(
    fresh_panel_serve: FreshPanelServe, browser: Browser, screenshots_dir: Path
) -> None:
    password = fresh_panel_serve.generated_password()
    assert password, fresh_panel_serve.log_path.read_text()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    requests = RequestLog(fresh_panel_serve.url)
    context.on("request", requests.record)
    found = visit_every_page(
        context.new_page(), fresh_panel_serve.url, password, screenshots_dir, "panel-serve"
    )
    context.close()
    assert {name: v for name, v in found.items() if v} == {}
    assert requests.foreign() == []


def test_panel_serve_launches_and_destroys_a_local_fleet(
    fresh_panel_serve: FreshPanelServe, browser: Browser, screenshots_dir: Path
) -> None:
    password = fresh_panel_serve.generated_password()
    assert password
    url = fresh_panel_serve.url
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    launch_local_vms(page, url, 2)
    page.goto(f"{url}/admin/create")
    expect(page.get_by_text("This server has no fleet")).to_have_count(0)
    expect(page.get_by_role("gridcell", name="launch").first).to_be_visible()  # the history
    destroy_all(page, url, screenshots_dir / "panel-serve-destroy.png")
    page.goto(f"{url}/admin/create")
    expect(page.get_by_role("gridcell", name="destroy").first).to_be_visible()
    page.context.close()
