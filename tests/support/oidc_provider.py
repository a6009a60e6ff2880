"""A small OpenID Connect provider for the tests, on 127.0.0.1 in a thread of its own.

It does what a real provider does for the authorization code flow with PKCE: discovery,
``/authorize`` (signing in, without asking, whoever ``user_email`` names), ``/token`` (checks
the client secret, the code's redirect URI and the PKCE verifier; one use per code) and
``/jwks``. ``tamper`` changes what the next ID tokens say, to play a hostile or broken
provider (another audience, a stale nonce, an expired token, an unverified email, another
signing key).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler

CLIENT_ID = "lablink-test"
CLIENT_SECRET = "client-secret-for-tests"


@dataclass
class Grant:
    redirect_uri: str
    challenge: str
    nonce: str | None
    email: str


@dataclass
class OidcProvider:
    """The provider's state; ``issuer`` is its URL once started."""

    user_email: str = "ada@uni.example"
    redirect_uris: set[str] = field(default_factory=set)
    tamper: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    issuer: str = ""
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    _loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> OidcProvider:
        sockets = bind_sockets(0, "127.0.0.1")
        self.issuer = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            HTTPServer(self.application()).add_sockets(sockets)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True, name="oidc-provider").start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def application(self) -> Application:
        handlers: list[Any] = [
            (r"/\.well-known/openid-configuration", Discovery),
            (r"/authorize", Authorize),
            (r"/token", Token),
            (r"/jwks", Jwks),
        ]
        return Application([(path, cls, {"provider": self}) for path, cls in handlers])

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": hashlib.sha256(grant.email.encode()).hexdigest()[:20],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "email": grant.email,
            "email_verified": True,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update({k: v for k, v in self.tamper.items() if k != "signing_key"})
        claims = {k: v for k, v in claims.items() if v is not None}
        key = self.tamper.get("signing_key", self.key)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-key"})


class ProviderHandler(RequestHandler):
    def initialize(self, provider: OidcProvider) -> None:
        self.provider = provider

    def check_xsrf_cookie(self) -> None:
        """A provider's token endpoint is called by servers, not browsers."""


class Discovery(ProviderHandler):
    def get(self) -> None:
        issuer = self.provider.issuer
        self.write(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )


class Authorize(ProviderHandler):
    def get(self) -> None:
        redirect_uri = self.get_argument("redirect_uri")
        if self.get_argument("client_id") != CLIENT_ID:
            raise HTTPError(400, "unknown client")
        if self.provider.redirect_uris and redirect_uri not in self.provider.redirect_uris:
            raise HTTPError(400, "unregistered redirect_uri")
        if self.get_argument("response_type") != "code":
            raise HTTPError(400, "only the code flow")
        if self.get_argument("code_challenge_method", "") != "S256":
            raise HTTPError(400, "PKCE with S256 required")
        if "openid" not in self.get_argument("scope", "").split():
            raise HTTPError(400, "not an OpenID request")
        code = secrets.token_urlsafe(16)
        self.provider.grants[code] = Grant(
            redirect_uri=redirect_uri,
            challenge=self.get_argument("code_challenge"),
            nonce=self.get_argument("nonce", None),
            email=self.provider.user_email,
        )
        query = urlencode({"code": code, "state": self.get_argument("state", "")})
        self.redirect(f"{redirect_uri}?{query}")


class Token(ProviderHandler):
    def post(self) -> None:
        scheme, _, encoded = self.request.headers.get("Authorization", "").partition(" ")
        pair = base64.b64decode(encoded).decode() if scheme == "Basic" else ":"
        if pair != f"{CLIENT_ID}:{CLIENT_SECRET}":
            self.refuse(401, "invalid_client")
            return
        grant = self.provider.grants.pop(self.get_argument("code", ""), None)  # one use
        verifier = self.get_argument("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if grant is None or grant.redirect_uri != self.get_argument("redirect_uri", ""):
            self.refuse(400, "invalid_grant")
            return
        if challenge != grant.challenge:
            self.refuse(400, "invalid_grant")
            return
        self.write(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.provider.id_token(grant),
            }
        )

    def refuse(self, status: int, error: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": error}))


class Jwks(ProviderHandler):
    def get(self) -> None:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.provider.key.public_key(), as_dict=True)
        self.write({"keys": [{**public, "kid": "test-key", "use": "sig", "alg": "RS256"}]})
