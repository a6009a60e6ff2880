"""The admin session cookie: its names, what it unlocks, and how it is read.

The signed ``lablink_admin`` cookie carries a random session token; the session itself lives
in ``lablink_admin_sessions`` (:mod:`lablink_core.admin_sessions`), so a cookie is worth
nothing once its session is revoked.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

import panel as pn
from tornado.web import decode_signed_value

from dashboard.runtime import Runtime

LOGIN_ENDPOINT = "/login"
LOGOUT_ENDPOINT = "/logout"
USER_COOKIE = "user"  # the user's name, for Panel's state.user; grants nothing by itself
SESSION_COOKIE = "lablink_admin"  # the signed session token: what every admin check reads
PUBLIC_PAGES = frozenset({"/", "/home"})
DEFAULT_NEXT = "/admin"
WRONG_LOGIN = "Wrong user name or password."


def needs_login(path: str) -> bool:
    """True for admin paths: the first segment starts with "admin" (``/admin``, ``/admin/ws``,
    ``/admin/create``, and ``/admin_create`` as ``panel serve`` names page files)."""
    first = path.lstrip("/").split("/", 1)[0].lower()
    return first.startswith("admin")


def session_token(signed_value: str | bytes | None, secret: str | bytes | None) -> str | None:
    """The session token in a signed ``lablink_admin`` cookie, or None (no secret, bad
    signature, expired)."""
    if not signed_value or not secret:
        return None
    decoded = decode_signed_value(
        secret, SESSION_COOKIE, signed_value, max_age_days=pn.config.oauth_expiry
    )
    return None if decoded is None else decoded.decode("utf-8", "replace")


def admin_from_cookie(
    runtime: Runtime, signed_value: str | bytes | None, secret: str | bytes | None
) -> str | None:
    """The admin named by a signed ``lablink_admin`` cookie whose session is live, or None.

    Blocking on a cache miss (one indexed query): call it off the event loop."""
    token = session_token(signed_value, secret)
    if token is None:
        return None
    user = runtime.admin.sessions.user_of(token)
    if user is None or not hmac.compare_digest(user.encode(), runtime.admin.user.encode()):
        return None
    return user


def safe_next_url(url: str | None) -> str:
    """Where to go after logging in: a local admin path (all a login unlocks), else /admin."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return DEFAULT_NEXT
    return url if needs_login(urlsplit(url).path) else DEFAULT_NEXT
