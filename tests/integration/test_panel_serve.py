"""The documented ``panel serve`` line, run as is against a test database: the researcher page,
the HTTP API from the plugin, the admin pages behind the same login as ``lablink serve``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import CRD
from tests.integration.test_api import register
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
PANEL_SERVE = (
    "panel serve dashboard/apps/*.py --index home --plugins dashboard.plugin "
    "--setup dashboard/setup_server.py --auth-module dashboard/auth_module.py --port {port}"
)


class PanelServe(RunningServer):
    """The same checks as for ``lablink serve``, on a ``panel serve`` process."""

    def env(self) -> dict[str, str]:
        env = super().env()
        return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}

    def command(self) -> list[str]:
        return ["bash", "-c", "exec " + PANEL_SERVE.format(port=self.port)]

    def start(self) -> PanelServe:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, env=self.env(), stdout=log, stderr=log
            )
        wait_until(self.healthy, timeout=60, message=f"panel serve on {self.url} ({self.log_path})")
        return self


@pytest.fixture(scope="module")
def served(postgres_server_url: str, template_database: str) -> Iterator[PanelServe]:
    server = PanelServe(make_server_database(postgres_server_url, template_database)).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def get(server: RunningServer, path: str, **options: object) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", follow_redirects=False, timeout=30, **options)  # type: ignore[arg-type]


def test_the_researcher_page_is_public(served: PanelServe) -> None:
    for path in ("/", "/?from=mail", "/home"):
        page = get(served, path)
        assert page.status_code == 200, path
        assert "<title>LabLink</title>" in page.text


def test_health_and_request_vm_come_from_the_plugin(served: PanelServe) -> None:
    health = get(served, "/api/health")
    assert health.status_code == 200 and health.json()["listener"] is True
    register(served, "vm-ps")
    reply = httpx.post(
        f"{served.url}/request_vm",
        json={"email": "ada@example.org", "crd_command": CRD},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["hostname"] == "vm-ps"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/admin", "/login?next=%2Fadmin"),
        ("/admin_create", "/login?next=%2Fadmin_create"),
        ("/admin_instances", "/login?next=%2Fadmin_instances"),
        ("/admin_set_aws_credentials", "/login?next=%2Fadmin_set_aws_credentials"),
        ("/admin/create", "/admin_create"),
        ("/admin/set-aws-credentials", "/admin_set_aws_credentials"),
    ],
)
def test_admin_pages_redirect_to_login(served: PanelServe, path: str, location: str) -> None:
    reply = get(served, path)
    assert reply.status_code == 302
    assert urljoin(f"{served.url}{path}", reply.headers["Location"]) == served.url + location
    assert get(served, "/api/vms").status_code == 401


def test_the_admin_logs_in_with_the_configured_password(served: PanelServe) -> None:
    with httpx.Client(base_url=served.url, timeout=30, follow_redirects=True) as browser:
        wrong = browser.post("/login", data={"username": "admin", "password": "nope"})
        assert "Wrong user name or password" in wrong.text
        assert browser.get("/admin", follow_redirects=False).status_code == 302
        assert browser.get("/login?next=/admin_instances").status_code == 200
        right = browser.post(
            "/login", data={"username": "admin", "password": served.admin_auth()[1]}
        )
        assert right.status_code == 200 and right.url.path == "/admin_instances"
        for path in ("/admin", "/admin_create", "/admin_set_aws_credentials"):
            page = browser.get(path, follow_redirects=False)
            assert page.status_code == 200, path
        assert browser.get("/api/vms").status_code == 200


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("--auth-module dashboard/auth_module.py", ""), "--auth-module"),
        (("--auth-module dashboard/auth_module.py", "--basic-auth hunter2hunter2"), "plain-text"),
    ],
)
def test_it_refuses_to_start_without_the_hash_checking_login(
    postgres_server_url: str, template_database: str, change: tuple[str, str], said: str
) -> None:
    server = PanelServe(make_server_database(postgres_server_url, template_database))
    shell, flag, line = server.command()
    done = subprocess.run(
        [shell, flag, line.replace(*change)],
        cwd=REPO,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert said in done.stderr + done.stdout
