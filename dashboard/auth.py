"""The admin login, built on Panel's basic auth: a login page, then a signed ``user`` cookie.

Panel's :class:`~panel.auth.BasicAuthProvider` compares passwords in plain text; here the login
handler checks the bcrypt hash held by ``runtime.admin`` instead, and pages are split in two:

* public (``/`` and everything not under an admin path): anyone is let in as ``guest``;
* admin (any path whose first segment starts with ``admin``): the signed cookie is required,
  for the page, its websocket and its autoload script alike.

``pn.config.authorize_callback`` adds a second, fail-closed check on every page request: a page
that is not listed as public needs the admin cookie, and without a cookie secret it answers 403.
Admin Tornado handlers verify the same cookie with :func:`admin_from_cookie`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import panel as pn
from panel.auth import BasicAuthProvider, BasicLoginHandler
from panel.util import base64url_encode
from tornado.escape import url_escape
from tornado.web import RedirectHandler, RequestHandler, decode_signed_value

from dashboard.runtime import Runtime

log = logging.getLogger(__name__)

LOGIN_ENDPOINT = "/login"
LOGOUT_ENDPOINT = "/logout"
USER_COOKIE = "user"
PUBLIC_PAGES = frozenset({"/", "/home"})
DEFAULT_NEXT = "/admin"
COOKIE_SECRET_NAME = "cookie-secret"  # noqa: S105 (the name of a stored secret)
WRONG_LOGIN = "Wrong user name or password."


def needs_login(path: str) -> bool:
    """True for admin paths: the first segment starts with "admin" (``/admin``, ``/admin/ws``,
    ``/admin/create``, and ``/admin_create`` as ``panel serve`` names page files)."""
    first = path.lstrip("/").split("/", 1)[0].lower()
    return first.startswith("admin")


def cookie_secret_for(runtime: Runtime) -> str:
    """``app.secret_key`` (through a purpose-bound HMAC) if set, else a secret kept in the
    database, so every process and restart signs cookies alike."""
    configured = runtime.config.app.secret_key
    if configured:
        return hmac.new(configured.encode(), b"lablink-cookie-secret", hashlib.sha256).hexdigest()
    return runtime.services.secrets.get_or_create(COOKIE_SECRET_NAME)


def admin_from_cookie(
    runtime: Runtime, signed_value: str | bytes | None, secret: str | bytes | None
) -> str | None:
    """The admin user named by a signed ``user`` cookie, or None (no secret, bad signature,
    expired, or a user who is not the configured admin)."""
    if not signed_value or not secret:
        return None
    decoded = decode_signed_value(
        secret, USER_COOKIE, signed_value, max_age_days=pn.config.oauth_expiry
    )
    if decoded is None:
        return None
    user = decoded.decode("utf-8", "replace")
    return user if hmac.compare_digest(user.encode(), runtime.admin.user.encode()) else None


def safe_next_url(url: str | None) -> str:
    """Where to go after logging in: a local admin path (all a login unlocks), else /admin."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return DEFAULT_NEXT
    return url if needs_login(urlsplit(url).path) else DEFAULT_NEXT


def login_url_for(path: str) -> str:
    return f"{LOGIN_ENDPOINT}?next={quote(path, safe='/')}"


def login_routes() -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Panel sends a visitor of a nested page to ``./login`` relative to it (``/admin/create``
    -> ``/admin/login``): forward those to the real login page, keeping ``?next=``."""
    return [(r"/admin/(?:.+/)?login", RedirectHandler, {"url": LOGIN_ENDPOINT, "permanent": False})]


class LablinkLoginHandler(BasicLoginHandler):
    """Panel's login page; the POST checks the admin's bcrypt hash off the event loop."""

    runtime_ref: ClassVar[Callable[[], Runtime]]

    async def post(self) -> None:
        username = self.get_argument("username", "")
        password = self.get_argument("password", "")
        if await self._verify(username, password):
            self.set_current_user(username)
            next_url = safe_next_url(self.get_cookie("next_url"))
            self.clear_cookie("next_url")
            self.redirect(next_url)
            return
        log.warning("failed admin login from %s", self.request.remote_ip)
        self.redirect(f"{LOGIN_ENDPOINT}?error={url_escape(WRONG_LOGIN)}")

    async def _verify(self, username: str, password: str) -> bool:
        try:
            admin = type(self).runtime_ref().admin
        except RuntimeError:
            log.error("login refused: the LabLink runtime is not set up in this process")
            return False
        if not self.settings.get("cookie_secret"):
            log.error("login refused: no cookie secret is configured")
            return False
        # bcrypt takes tens of milliseconds: keep it off the loop and off the database pool.
        return await asyncio.to_thread(admin.check_password, username, password)

    def set_current_user(self, user: str) -> None:
        options: dict[str, Any] = {
            "expires_days": pn.config.oauth_expiry,
            "httponly": True,
            "path": pn.config.cookie_path,
            "samesite": "Lax",
            "secure": self.request.protocol == "https",
        }
        self.clear_cookie("is_guest", path=pn.config.cookie_path)
        self.set_secure_cookie(USER_COOKIE, user, **options)
        # Panel reads the user's name for state.user_info from this one.
        self.set_secure_cookie("id_token", base64url_encode(json.dumps({"user": user})), **options)


class LablinkAuthProvider(BasicAuthProvider):
    """Panel's basic auth provider with the hash-checking login and path-based guest access."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self._login_class = type(
            "LablinkLoginHandler",
            (LablinkLoginHandler,),
            {"runtime_ref": staticmethod(runtime), "_login_endpoint": LOGIN_ENDPOINT},
        )
        super().__init__(login_endpoint=LOGIN_ENDPOINT, logout_endpoint=LOGOUT_ENDPOINT)

    def _allow_guest(self, uri: str) -> bool:
        return not needs_login(urlsplit(uri).path)

    def _remove_user(self, session_context: Any) -> None:
        """Panel counts active users for its own admin page; this provider does not."""

    @property
    def get_user(self) -> Callable[[RequestHandler], str | None]:
        return self._user_of

    def _user_of(self, handler: RequestHandler) -> str | None:
        """The admin if the request carries a valid cookie; else ``guest`` on public paths."""
        user = None
        try:
            user = admin_from_cookie(
                self._runtime(),
                handler.get_cookie(USER_COOKIE),
                handler.application.settings.get("cookie_secret"),
            )
        except RuntimeError:
            log.error("no LabLink runtime: treating the request as anonymous")
        if user is None and not self._allow_guest(handler.request.uri or "/"):
            return None
        return user or self._as_guest(handler)

    def _as_guest(self, handler: RequestHandler) -> str:
        # What Panel's provider does for guests: state.user reads this cookie.
        handler.request.cookies["is_guest"] = "1"  # type: ignore[assignment]
        if handler.request.headers.get("Upgrade", "").lower() != "websocket":
            handler.set_cookie(
                "is_guest", "1", expires_days=pn.config.oauth_expiry, path=pn.config.cookie_path
            )
        return "guest"

    @property
    def login_handler(self) -> type[RequestHandler]:
        return self._login_class


def make_authorize(runtime: Callable[[], Runtime]) -> Callable[[Any, str], bool | str]:
    """The global ``pn.config.authorize_callback``: public pages for all, the rest for the
    admin; a login redirect when a login is possible, 403 when it is not."""

    def authorize(user_info: Any, path: str) -> bool | str:
        if path in PUBLIC_PAGES:
            return True
        secret = pn.config.cookie_secret
        try:
            user = admin_from_cookie(runtime(), pn.state.cookies.get(USER_COOKIE), secret)
        except RuntimeError:
            return False
        if user is not None:
            return True
        return login_url_for(path) if secret else False

    return authorize


def configure_auth(runtime: Runtime, runtime_ref: Callable[[], Runtime]) -> dict[str, Any]:
    """Set the global authorize callback and return ``pn.serve`` keyword arguments."""
    pn.config.authorize_callback = make_authorize(runtime_ref)
    try:
        secret = cookie_secret_for(runtime)
    except Exception:  # fail closed: no secret means no login, and admin pages answer 403
        log.exception("cannot set up the admin login; admin pages will refuse every request")
        return {"auth_provider": LablinkAuthProvider(runtime_ref)}
    return {"auth_provider": LablinkAuthProvider(runtime_ref), "cookie_secret": secret}
