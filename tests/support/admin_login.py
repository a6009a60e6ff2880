"""Logging in as the admin over plain HTTP, and reading the session cookie it sets."""

from __future__ import annotations

import httpx

from tests.fixtures.server import ADMIN_PASSWORD

SESSION_COOKIE = "lablink_admin"


def log_in(base_url: str, password: str = ADMIN_PASSWORD, **client: object) -> httpx.Response:
    """POST the login form; the 302 reply, its cookies not followed."""
    with httpx.Client(base_url=base_url, timeout=30, **client) as browser:  # type: ignore[arg-type]
        return browser.post("/login", data={"username": "admin", "password": password})


def session_cookie(base_url: str, password: str = ADMIN_PASSWORD, **client: object) -> str:
    """The signed session cookie a successful login sets."""
    reply = log_in(base_url, password, **client)
    assert reply.status_code == 302 and reply.headers["Location"] == "/admin", reply.text
    value = reply.cookies.get(SESSION_COOKIE)
    assert value, reply.headers.get_list("Set-Cookie")
    return value


def admin_get(base_url: str, path: str, cookie: str, **client: object) -> httpx.Response:
    """GET ``path`` with only the session cookie, as a browser tab that kept it would."""
    return httpx.get(
        f"{base_url}{path}",
        headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
        follow_redirects=False,
        timeout=30,
        **client,  # type: ignore[arg-type]
    )
