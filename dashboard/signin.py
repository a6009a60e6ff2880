"""Researcher sign-in with OpenID Connect, for ``access.mode = "signin"``.

``/signin`` starts the authorization code flow with state, nonce and PKCE (S256), keeping
them in a short-lived signed cookie; ``/signin/callback`` checks the state, exchanges the code,
and verifies the ID token (signature against the provider's JWKS, issuer, audience, nonce,
expiry, ``email_verified``), then sets the signed, HttpOnly ``lablink_researcher`` cookie
carrying the verified email; ``/signout`` clears it. The provider's endpoints come from the
issuer's ``/.well-known/openid-configuration``. Other code reads the email with
:func:`signed_in_email`. The routes answer 404 until ``access.oidc_issuer`` and
``access.oidc_client_id`` are configured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlencode

from tornado.web import RequestHandler, decode_signed_value

from dashboard.oidc import OidcClient, OidcError
from dashboard.runtime import Runtime
from dashboard.security_headers import origin_of

log = logging.getLogger(__name__)

RESEARCHER_COOKIE = "lablink_researcher"
FLOW_COOKIE = "lablink_signin"
SIGNIN_PATH = "/signin"
CALLBACK_PATH = "/signin/callback"
SIGNOUT_PATH = "/signout"
FLOW_MINUTES = 10
SIGNED_IN_DAYS = 1.0


def signed_in_email(
    get_cookie: Callable[[str], str | bytes | None], cookie_secret: str | bytes | None
) -> str | None:
    """The verified email of a signed-in researcher, or None.

    ``get_cookie`` reads a request's cookie by name (a Tornado handler's ``get_cookie``, or
    ``pn.state.cookies.get`` in a Panel session); ``cookie_secret`` is the server's
    (``handler.application.settings["cookie_secret"]``, or ``pn.config.cookie_secret``).
    """
    value = get_cookie(RESEARCHER_COOKIE)
    if not value or not cookie_secret:
        return None
    decoded = decode_signed_value(
        cookie_secret, RESEARCHER_COOKIE, value, max_age_days=SIGNED_IN_DAYS
    )
    if decoded is None:
        return None
    email = decoded.decode("utf-8", "replace")
    return email if "@" in email else None


def _local_path(url: str | None) -> str:
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


_clients: dict[tuple[str, str], OidcClient] = {}


def oidc_client(runtime: Runtime) -> OidcClient | None:
    """This process's client for the configured provider (None if sign-in is not set up)."""
    access = runtime.config.access
    if not access.oidc_issuer or not access.oidc_client_id:
        return None
    key = (str(access.oidc_issuer), str(access.oidc_client_id))
    if key not in _clients:
        _clients[key] = OidcClient(
            issuer=key[0],
            client_id=key[1],
            client_secret=access.oidc_client_secret,
            scopes=str(access.oidc_scopes or "openid email"),
        )
    return _clients[key]


class SigninBase(RequestHandler):
    """What the sign-in handlers share: the runtime, the provider, cookies, refusals."""

    runtime_ref: Callable[[], Runtime]
    SUPPORTED_METHODS: ClassVar[tuple[str, ...]] = ("GET", "POST")  # type: ignore[misc]

    def initialize(self, runtime: Callable[[], Runtime]) -> None:
        self.runtime_ref = runtime

    def check_xsrf_cookie(self) -> None:
        """State and nonce protect the flow; sign-out only clears a cookie."""

    def client(self) -> OidcClient | None:
        try:
            return oidc_client(self.runtime_ref())
        except RuntimeError:
            return None

    def cookie_options(self) -> dict[str, Any]:
        # Lax: the provider's redirect back is a top-level GET, which carries Lax cookies.
        return {"httponly": True, "samesite": "Lax", "secure": self.request.protocol == "https"}

    def redirect_uri(self) -> str:
        public = self.runtime_ref().config.app.public_url
        base = origin_of(public) if public else None
        return f"{base or f'{self.request.protocol}://{self.request.host}'}{CALLBACK_PATH}"

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            "<!doctype html><title>Sign-in failed</title>"
            f"<p>Sign-in failed: {html.escape(message)}</p><p><a href='/'>Back</a></p>"
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.fail(status_code, "the request could not be handled")


class SigninHandler(SigninBase):
    """``/signin?next=/``: off to the provider, with state, nonce and a PKCE challenge."""

    async def get(self) -> None:
        client = self.client()
        if client is None:
            self.fail(404, "sign-in is not configured on this server")
            return
        try:
            metadata = await client.metadata()
        except OidcError as error:
            log.warning("sign-in provider unavailable: %s", error)
            self.fail(502, "the sign-in provider is unavailable; try again shortly")
            return
        flow = {
            "state": secrets.token_urlsafe(24),
            "nonce": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48),
            "next": _local_path(self.get_argument("next", "/")),
        }
        self.set_secure_cookie(
            FLOW_COOKIE, json.dumps(flow), expires_days=None, **self.cookie_options()
        )
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.redirect_uri(),
            "scope": client.scopes,
            "state": flow["state"],
            "nonce": flow["nonce"],
            "code_challenge": _pkce_challenge(flow["verifier"]),
            "code_challenge_method": "S256",
        }
        self.redirect(f"{metadata.authorization_endpoint}?{urlencode(query)}")


class SigninCallbackHandler(SigninBase):
    """``/signin/callback?code=…&state=…``: verify, then remember the email in a cookie."""

    async def get(self) -> None:
        client = self.client()
        if client is None:
            self.fail(404, "sign-in is not configured on this server")
            return
        flow = self._flow()
        self.clear_cookie(FLOW_COOKIE)  # one use only, whatever happens next
        if flow is None:
            self.fail(400, "the sign-in took too long or was not started here; start again")
            return
        if self.get_argument("error", None):
            self.fail(400, "the provider refused: " + self.get_argument("error")[:100])
            return
        state = self.get_argument("state", "")
        if not hmac.compare_digest(state.encode(), str(flow["state"]).encode()):
            self.fail(400, "the sign-in state does not match; start again")
            return
        try:
            tokens = await client.exchange(
                self.get_argument("code", ""), self.redirect_uri(), str(flow["verifier"])
            )
            email = await client.verified_email(tokens, str(flow["nonce"]))
        except OidcError as error:
            log.warning("sign-in refused: %s", error)
            self.fail(400, str(error))
            return
        self.set_secure_cookie(
            RESEARCHER_COOKIE, email, expires_days=SIGNED_IN_DAYS, **self.cookie_options()
        )
        self.redirect(_local_path(str(flow.get("next"))))

    def _flow(self) -> dict[str, Any] | None:
        raw = self.get_secure_cookie(FLOW_COOKIE, max_age_days=FLOW_MINUTES / 1440)
        if raw is None:
            return None
        try:
            flow = json.loads(raw)
        except ValueError:
            return None
        return (
            flow
            if isinstance(flow, dict) and {"state", "nonce", "verifier"} <= flow.keys()
            else None
        )


class SignoutHandler(SigninBase):
    """``/signout``: forget the researcher's sign-in."""

    def get(self) -> None:
        self.clear_cookie(RESEARCHER_COOKIE)
        self.redirect("/")

    def post(self) -> None:
        self.get()


def signin_routes(runtime: Callable[[], Runtime]) -> list[tuple[str, type, dict[str, Any]]]:
    """Route tuples for ``pn.serve(extra_patterns=...)`` and the ``--plugins`` module."""
    handlers: list[tuple[str, type]] = [
        (SIGNIN_PATH, SigninHandler),
        (CALLBACK_PATH, SigninCallbackHandler),
        (SIGNOUT_PATH, SignoutHandler),
    ]
    return [(pattern, handler, {"runtime": runtime}) for pattern, handler in handlers]
