"""Admin sessions end: an old cookie is refused after /logout, after `lablink admin
set-password`, and after a restart with another app.admin_password; `lablink admin token`
prints a token the running server accepts, in production mode too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.server import RunningServer, make_server_database
from tests.support.admin_login import admin_get, log_in, session_cookie
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def production_server(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """A `lablink serve` in production mode, on a database of its own (tests restart it)."""
    database = make_server_database(postgres_server_url, template_database)
    server = RunningServer(database, extra_env={"LABLINK_APP_MODE": "production"}).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def lablink(server: RunningServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lablink_core.cli", *args],
        env=server.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(server: RunningServer, cookie: str) -> bool:
    return admin_get(server.url, "/api/vms", cookie).status_code == 401


def test_an_old_cookie_is_refused_after_logout(production_server: RunningServer) -> None:
    cookie = session_cookie(production_server.url)
    assert admin_get(production_server.url, "/api/vms", cookie).status_code == 200
    assert admin_get(production_server.url, "/admin/instances", cookie).status_code == 200
    logout = admin_get(production_server.url, "/logout", cookie)
    assert logout.status_code == 200
    # The attacker kept a copy of the cookie; the session it names is gone.
    assert refused(production_server, cookie)
    page = admin_get(production_server.url, "/admin/instances", cookie)
    assert page.status_code == 302 and "login?next=" in page.headers["Location"]


def test_the_printed_admin_token_is_accepted_in_production_mode(
    production_server: RunningServer,
) -> None:
    printed = lablink(production_server, "admin", "token")
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    reply = httpx.get(
        f"{production_server.url}/api/vms", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200
    assert lablink(production_server, "admin", "token").stdout.strip() == token


def test_set_password_ends_every_session_and_the_new_password_works(
    production_server: RunningServer,
) -> None:
    cookies = [session_cookie(production_server.url) for _ in range(2)]
    changed = lablink(
        production_server, "admin", "set-password", "--stdin", stdin="a new password 123\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert "app.admin_password is configured" in changed.stderr
    wait_until(lambda: all(refused(production_server, c) for c in cookies), timeout=10)
    assert log_in(production_server.url, "a new password 123").status_code == 302
    assert refused(production_server, cookies[0])
    short = lablink(production_server, "admin", "set-password", "--stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr


def test_a_restart_with_another_password_ends_every_session(
    production_server: RunningServer,
) -> None:
    def restart_with(password: str) -> None:
        production_server.stop()
        production_server.extra_env["LABLINK_APP_ADMIN_PASSWORD"] = password
        production_server.start()

    restart_with("the first admin password")
    cookie = session_cookie(production_server.url, "the first admin password")
    restart_with("the first admin password")  # the same password: sessions live on
    assert not refused(production_server, cookie)
    restart_with("the next admin password")
    assert refused(production_server, cookie)
    assert session_cookie(production_server.url, "the next admin password")
