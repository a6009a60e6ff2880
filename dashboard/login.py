"""The admin's login and logout handlers, and the executor that checks passwords.

A login attempt is throttled per address and per user (:mod:`lablink_core.throttle`): a blocked
one is answered 429 with ``Retry-After``, from memory when this process already knows of the
block. Password checks (bcrypt, tens of milliseconds, plus the throttle's queries) run on a
one-thread executor of their own with a short queue, so a guessing flood can neither block the
event loop nor take the threads that serve VMs and researchers; a full queue is a 429 too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import panel as pn
from panel.auth import BasicLoginHandler, LogoutHandler
from panel.util import base64url_encode
from tornado.escape import url_escape
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError

from dashboard.admin_cookie import (
    LOGIN_ENDPOINT,
    SESSION_COOKIE,
    USER_COOKIE,
    WRONG_LOGIN,
    safe_next_url,
    session_token,
)
from dashboard.client_address import client_address
from dashboard.runtime import Runtime
from lablink_core.admin import LoginOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")

BUSY_RETRY_SECONDS = 1.0
# Panel's login and logout templates take their icon from Panel's CDN; the server has the same
# files, and the Content-Security-Policy admits only this site.
LOCAL_PANEL_DIST = "/static/extensions/panel/"
# ... and a web font from Google's: left out, so the page asks no other site for anything.
_THIRD_PARTY_LINK = re.compile(r"<link[^>]*https://fonts\.(?:googleapis|gstatic)\.com[^>]*>")


def local_page(html: str) -> str:
    return _THIRD_PARTY_LINK.sub("", html)


class PasswordChecks:
    """A small executor with a bounded queue: ``run`` answers None instead of queueing more."""

    def __init__(self, workers: int = 1, max_pending: int = 8) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lablink-password")
        self._max_pending = max_pending
        self._pending = 0

    async def run(self, function: Callable[..., T], *args: Any) -> T | None:
        if self._pending >= self._max_pending:
            return None
        self._pending += 1  # only touched on the event loop
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        finally:
            self._pending -= 1


_checks: PasswordChecks | None = None


def password_checks() -> PasswordChecks:
    """This process's password executor, made on first use."""
    global _checks
    if _checks is None:
        _checks = PasswordChecks()
    return _checks


def login_address(request: HTTPServerRequest, trusted_proxies: list[str]) -> str:
    """The address a login is counted against; IPv6 clients by their /64 (one host has many)."""
    address = client_address(request, trusted_proxies)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


async def attempt_admin_login(
    runtime: Runtime, request: HTTPServerRequest, user: str, password: str
) -> LoginOutcome:
    """Check the admin's password unless throttled; never on the event loop."""
    admin = runtime.admin
    address = login_address(request, runtime.config.app.trusted_proxies)
    known = admin.throttle.known_wait(admin.throttle_keys(address, user))
    if known is not None:
        return LoginOutcome(False, known)
    outcome = await password_checks().run(admin.attempt_login, address, user, password)
    return outcome if outcome is not None else LoginOutcome(False, BUSY_RETRY_SECONDS)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def cookie_options(request: HTTPServerRequest) -> dict[str, Any]:
    return {
        "expires_days": pn.config.oauth_expiry,
        "httponly": True,
        "path": pn.config.cookie_path,
        "samesite": "Lax",
        "secure": request.protocol == "https",
    }


class LablinkLoginHandler(BasicLoginHandler):
    """Panel's login page; the POST checks the admin's bcrypt hash and opens a session."""

    runtime_ref: ClassVar[Callable[[], Runtime]]

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # Tornado's own message quotes the bytes it could not decode: a password, here.
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, reason="the form is not valid UTF-8") from None

    def get(self) -> None:
        # Only our own message: the page must not say whatever a link puts in ?error=.
        self._render(WRONG_LOGIN if self.get_argument("error", "") else "")

    def _render(self, message: str) -> None:
        next_url = safe_next_url(self.get_argument("next", None))
        self.set_cookie("next_url", next_url, httponly=True, samesite="Lax")
        page = self._login_template.render(
            login_endpoint=self._login_endpoint,
            errormessage=message,
            PANEL_CDN=LOCAL_PANEL_DIST,
        )
        self.finish(local_page(page))

    async def post(self) -> None:
        username = self.get_argument("username", "")
        password = self.get_argument("password", "")
        runtime = self._runtime()
        if runtime is None:
            self.redirect(f"{LOGIN_ENDPOINT}?error={url_escape(WRONG_LOGIN)}")
            return
        outcome = await attempt_admin_login(runtime, self.request, username, password)
        if outcome.ok:
            address = login_address(self.request, runtime.config.app.trusted_proxies)
            token = await asyncio.get_running_loop().run_in_executor(
                runtime.admin_executor, runtime.admin.sessions.create, username, address
            )
            self.set_current_user(username, token)
            next_url = safe_next_url(self.get_cookie("next_url"))
            self.clear_cookie("next_url")
            self.redirect(next_url)
            return
        if outcome.checked:  # refusals without a check are not logged: a flood of them is
            log.warning("failed admin login from %s", self.request.remote_ip)
        if outcome.retry_after is not None:
            self._too_many(outcome.retry_after)
            return
        self.redirect(f"{LOGIN_ENDPOINT}?error={url_escape(WRONG_LOGIN)}")

    def _runtime(self) -> Runtime | None:
        try:
            runtime = type(self).runtime_ref()
        except RuntimeError:
            log.error("login refused: the LabLink runtime is not set up in this process")
            return None
        if not self.settings.get("cookie_secret"):
            log.error("login refused: no cookie secret is configured")
            return None
        return runtime

    def _too_many(self, seconds: float) -> None:
        wait = retry_after_header(seconds)
        self.set_status(429)
        self.set_header("Retry-After", wait)
        page = self._login_template.render(
            login_endpoint=self._login_endpoint,
            errormessage=f"Too many failed logins: try again in {wait} s.",
            PANEL_CDN=LOCAL_PANEL_DIST,
        )
        self.finish(local_page(page))

    def set_current_user(self, user: str, token: str | None = None) -> None:  # type: ignore[override]
        options = cookie_options(self.request)
        self.clear_cookie("is_guest", path=pn.config.cookie_path)
        self.set_secure_cookie(SESSION_COOKIE, token or "", **options)
        self.set_secure_cookie(USER_COOKIE, user, **options)
        # Panel reads the user's name for state.user_info from this one.
        self.set_secure_cookie("id_token", base64url_encode(json.dumps({"user": user})), **options)


class LablinkLogoutHandler(LogoutHandler):
    """Panel's logout page, after revoking the session the cookie names."""

    runtime_ref: ClassVar[Callable[[], Runtime]]

    async def get(self) -> None:  # type: ignore[override]
        token = session_token(self.get_cookie(SESSION_COOKIE), self.settings.get("cookie_secret"))
        if token is not None:
            try:
                runtime = type(self).runtime_ref()
            except RuntimeError:
                runtime = None
            if runtime is not None:
                await asyncio.get_running_loop().run_in_executor(
                    runtime.admin_executor, runtime.admin.sessions.revoke, token
                )
        for name in (SESSION_COOKIE, USER_COOKIE, "id_token", "is_guest"):
            self.clear_cookie(name, path=pn.config.cookie_path)
        page = self._logout_template.render(
            PANEL_CDN=LOCAL_PANEL_DIST, LOGIN_ENDPOINT=self._login_endpoint
        )
        self.finish(local_page(page))
