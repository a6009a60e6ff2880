"""The admin login, built on Panel's basic auth: a login page, then a server-side session.

Panel's :class:`~panel.auth.BasicAuthProvider` compares passwords in plain text; here the login
handler checks the bcrypt hash held by ``runtime.admin`` instead (throttled per address and per
user, on an executor of its own: :mod:`dashboard.login`), makes a row in
``lablink_admin_sessions`` and puts its random token in the signed ``lablink_admin`` cookie.
Every admin check asks whether that session is still live, so ``/logout`` and a password
change end it. Pages are split in two:

* public (``/`` and everything not under an admin path): anyone is let in as ``guest``;
* admin (any path whose first segment starts with ``admin``): a live session is required,
  for the page, its websocket and its autoload script alike.

Websocket upgrades whose Origin is not allowed (:mod:`dashboard.security_headers`) are refused
on every path. ``pn.config.authorize_callback`` adds a second, fail-closed check on every page
request: a page not listed as public needs the admin session, and without a cookie secret it
answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import panel as pn
from panel.auth import BasicAuthProvider
from panel.io.server import AutoloadJsHandler
from tornado.web import Application, RedirectHandler, RequestHandler

from dashboard.admin_cookie import (
    DEFAULT_NEXT,
    LOGIN_ENDPOINT,
    LOGOUT_ENDPOINT,
    PUBLIC_PAGES,
    SESSION_COOKIE,
    USER_COOKIE,
    WRONG_LOGIN,
    admin_from_cookie,
    needs_login,
    safe_next_url,
    session_token,
)
from dashboard.login import LablinkLoginHandler, LablinkLogoutHandler
from dashboard.login_page import LOGIN_TEMPLATE, LOGOUT_TEMPLATE
from dashboard.runtime import Runtime
from dashboard.security_headers import websocket_origin_allowed

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_NEXT",
    "LOGIN_ENDPOINT",
    "LOGOUT_ENDPOINT",
    "PUBLIC_PAGES",
    "SESSION_COOKIE",
    "USER_COOKIE",
    "WRONG_LOGIN",
    "LablinkAuthProvider",
    "admin_from_cookie",
    "configure_auth",
    "cookie_secret_for",
    "guard_autoload_scripts",
    "login_routes",
    "make_authorize",
    "needs_login",
    "safe_next_url",
    "session_token",
]

COOKIE_SECRET_NAME = "cookie-secret"  # noqa: S105 (the name of a stored secret)


def cookie_secret_for(runtime: Runtime) -> str:
    """``app.secret_key`` (through a purpose-bound HMAC) if set, else a secret kept in the
    database, so every process and restart signs cookies alike."""
    configured = runtime.config.app.secret_key
    if configured:
        return hmac.new(configured.encode(), b"lablink-cookie-secret", hashlib.sha256).hexdigest()
    return runtime.services.secrets.get_or_create(COOKIE_SECRET_NAME)


def login_url_for(path: str) -> str:
    return f"{LOGIN_ENDPOINT}?next={quote(path, safe='/')}"


def login_routes() -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Panel sends a visitor of a nested page to ``./login`` relative to it (``/admin/create``
    -> ``/admin/login``): forward those to the real login page, keeping ``?next=``."""
    return [(r"/admin/(?:.+/)?login", RedirectHandler, {"url": LOGIN_ENDPOINT, "permanent": False})]


class LablinkAuthProvider(BasicAuthProvider):
    """Panel's basic auth provider with the hash-checking login, server-side sessions,
    path-based guest access and the websocket Origin check."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        handler_settings = {"runtime_ref": staticmethod(runtime), "_login_endpoint": LOGIN_ENDPOINT}
        # The login and logout pages in LabLink's look (Panel's login template option).
        self._login_class = type(
            "LablinkLoginHandler",
            (LablinkLoginHandler,),
            {**handler_settings, "_login_template": LOGIN_TEMPLATE},
        )
        self._logout_class = type(
            "LablinkLogoutHandler",
            (LablinkLogoutHandler,),
            {**handler_settings, "_logout_template": LOGOUT_TEMPLATE},
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
        """The admin if the request carries a live session; else ``guest`` on public paths.
        Bokeh calls this on its executor, so the session lookup may query the database."""
        if not websocket_origin_allowed(handler):
            log.warning("refused a websocket from origin %r", handler.request.headers.get("Origin"))
            return None
        user = None
        try:
            user = admin_from_cookie(
                self._runtime(),
                handler.get_cookie(SESSION_COOKIE),
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
                "is_guest",
                "1",
                expires_days=pn.config.oauth_expiry,
                path=pn.config.cookie_path,
                httponly=True,
                samesite="Lax",
                secure=handler.request.protocol == "https",
            )
        return "guest"

    @property
    def login_handler(self) -> type[RequestHandler]:
        return self._login_class

    @property
    def logout_handler(self) -> type[RequestHandler]:
        return self._logout_class


def make_authorize(runtime: Callable[[], Runtime]) -> Callable[[Any, str], bool | str]:
    """The global ``pn.config.authorize_callback``: public pages for all, the rest for the
    admin; a login redirect when a login is possible, 403 when it is not."""

    def authorize(user_info: Any, path: str) -> bool | str:
        if path in PUBLIC_PAGES:
            return True
        secret = pn.config.cookie_secret
        try:
            user = admin_from_cookie(runtime(), pn.state.cookies.get(SESSION_COOKIE), secret)
        except RuntimeError:
            return False
        if user is not None:
            return True
        return login_url_for(path) if secret else False

    return authorize


class GuardedAutoloadJsHandler(AutoloadJsHandler):
    """Panel's autoload script handler, answering a stranger 403 instead of crashing (Panel's
    own awaits the login redirect that ``@authenticated`` returns: a traceback per request)."""

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not self.current_user:
            self.send_error(403)
            return
        await super().get(*args, **kwargs)


def guard_autoload_scripts(app: Application) -> None:
    """Serve every page's ``autoload.js`` through :class:`GuardedAutoloadJsHandler`."""
    for rule in app.wildcard_router.rules:
        target = rule.target
        if (
            isinstance(target, type)
            and issubclass(target, AutoloadJsHandler)
            and not issubclass(target, GuardedAutoloadJsHandler)
        ):
            rule.target = GuardedAutoloadJsHandler


def configure_auth(runtime: Runtime, runtime_ref: Callable[[], Runtime]) -> dict[str, Any]:
    """Set the global authorize callback and return ``pn.serve`` keyword arguments."""
    pn.config.authorize_callback = make_authorize(runtime_ref)
    try:
        secret = cookie_secret_for(runtime)
    except Exception:  # fail closed: no secret means no login, and admin pages answer 403
        log.exception("cannot set up the admin login; admin pages will refuse every request")
        return {"auth_provider": LablinkAuthProvider(runtime_ref)}
    return {"auth_provider": LablinkAuthProvider(runtime_ref), "cookie_secret": secret}
