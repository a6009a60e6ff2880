"""What every response carries, and which pages may open the dashboard's websockets.

* Headers on every response, pages and API alike: a Content-Security-Policy that Panel's pages
  work under (Bokeh renders from inline scripts and evaluates model code, so scripts need
  'unsafe-inline' and 'unsafe-eval'; everything else is 'self'), no framing, no MIME sniffing,
  no referrer to other sites, and HSTS on https.
* Under https every cookie is ``Secure``, Panel's and Bokeh's as well as ours.
* Websocket origins: an allowlist of ``app.allowed_origins``, the public URL's origin and
  localhost at the server's port. Checked in the auth provider (so the same under ``lablink
  serve`` and ``panel serve``), and given to Bokeh's own check too.

:func:`harden_application` applies all of it to a Tornado application.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import Application, OutputTransform, RequestHandler

log = logging.getLogger(__name__)

ORIGINS_SETTING = "lablink_websocket_origins"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self' blob:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000"


def _secure_cookie(line: str) -> str:
    """A Set-Cookie line with the Secure attribute (added once)."""
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(line)
    except Exception:  # not parseable: append the attribute textually
        return line if "secure" in line.lower() else f"{line}; Secure"
    if not cookie or any(morsel["secure"] for morsel in cookie.values()):
        return line if cookie else f"{line}; Secure"
    return f"{line}; Secure"


class _SecureCookieHeaders(HTTPHeaders):
    """Headers that mark every Set-Cookie added to them Secure. Tornado adds a handler's
    cookies after the transforms have run, to the headers object they returned: this one."""

    def add(self, name: str, value: str, *args: Any, **kwargs: Any) -> None:
        if name.lower() == "set-cookie":
            value = _secure_cookie(value)
        super().add(name, value, *args, **kwargs)


class SecurityHeaders(OutputTransform):
    """Adds the security headers to every response; under https, HSTS and Secure cookies."""

    def __init__(self, request: HTTPServerRequest) -> None:
        self._https = request.protocol == "https"

    def transform_first_chunk(
        self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, HTTPHeaders, bytes]:
        for name, value in HEADERS.items():
            if name not in headers:
                headers[name] = value
        if self._https:
            headers["Strict-Transport-Security"] = HSTS
            secured = _SecureCookieHeaders()
            for name, value in headers.get_all():
                secured.add(name, value)
            headers = secured
        return status_code, headers, chunk


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased, default ports dropped; None if not one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        return None
    default = 443 if parts.scheme == "https" else 80
    return (
        f"{parts.scheme}://{host}" if port in (None, default) else f"{parts.scheme}://{host}:{port}"
    )


def allowed_origins(
    configured: Iterable[str], public_url: str | None, port: int, *, https: bool
) -> frozenset[str]:
    """The origins whose pages may open websockets: configured, public URL, localhost."""
    scheme = "https" if https else "http"
    local = [f"{scheme}://{host}:{port}" for host in ("localhost", "127.0.0.1", "[::1]")]
    candidates = [*configured, *([public_url] if public_url else []), *local]
    return frozenset(origin for origin in map(origin_of, candidates) if origin is not None)


def websocket_origin_allowed(handler: RequestHandler) -> bool:
    """False only for a websocket upgrade whose Origin is not allowed.

    Requests without an Origin are not from a browser page (browsers always send one on a
    websocket), so carry no ambient cookie to abuse. Without a configured allowlist (a server
    this module did not harden), only the request's own origin is allowed.
    """
    request = handler.request
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed: frozenset[str] | None = handler.application.settings.get(ORIGINS_SETTING)
    if allowed is None:
        allowed = frozenset(filter(None, [origin_of(f"{request.protocol}://{request.host}")]))
    return origin_of(origin) in allowed


def bokeh_websocket_origins(origins: Iterable[str]) -> list[str]:
    """The same allowlist as Bokeh's ``websocket_origin`` wants it: ``host:port`` (Bokeh cannot
    parse IPv6 literals, so those are left to our own check)."""
    netlocs = []
    for origin in origins:
        parts = urlsplit(origin)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname and ":" not in parts.hostname:
            netlocs.append(f"{parts.hostname}:{port}")
    return sorted(set(netlocs))


def log_request_unless_throttled(handler: RequestHandler) -> None:
    """Tornado's access log, without 429s: a flood of refusals must not flood the log (the
    throttle logs each password it actually checked)."""
    if handler.get_status() == 429:
        return
    access_log = logging.getLogger("tornado.access")
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        request_time = 1000.0 * handler.request.request_time()
        access_log.log(level, "%d %s %.2fms", status, handler._request_summary(), request_time)


def harden_application(app: Application, origins: frozenset[str]) -> None:
    """Add the headers transform, the websocket allowlist and the quieter access log to
    ``app`` (a BokehTornado)."""
    if SecurityHeaders not in app.transforms:
        app.transforms.insert(0, SecurityHeaders)
    app.settings[ORIGINS_SETTING] = origins
    app.settings.setdefault("log_function", log_request_unless_throttled)
    bokeh_origins: Any = getattr(app, "_websocket_origins", None)
    if isinstance(bokeh_origins, set):
        bokeh_origins.clear()
        bokeh_origins.update(bokeh_websocket_origins(origins))
