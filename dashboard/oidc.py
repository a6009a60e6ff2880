"""An OpenID Connect relying party: discovery, the code exchange, ID token verification.

Network calls use Tornado's asynchronous HTTP client (never blocking the event loop). The
provider's metadata and keys are cached; an ID token signed with a key id not seen yet makes
one refetch of the JWKS (the provider rotated its keys). Only asymmetric signatures are
accepted, and the issuer must be https (plain http only on loopback, for tests and demos).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
CLOCK_SKEW_SECONDS = 60
METADATA_TTL_SECONDS = 3600.0


class OidcError(Exception):
    """The provider could not be reached, or what it sent does not verify."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return url
    raise OidcError(f"the provider's {what} must be an https URL: {url!r}")


class OidcClient:
    """One provider, one client id: what the sign-in handlers need of it."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: str = "openid email",
        *,
        timeout: float = 10.0,
    ) -> None:
        self.issuer = _check_url(issuer.rstrip("/"), "issuer")
        self.client_id = client_id
        self.scopes = scopes if "openid" in scopes.split() else f"openid {scopes}"
        self._secret = client_secret
        self._timeout = timeout
        self._metadata: tuple[ProviderMetadata, float] | None = None
        self._keys: dict[str, Any] = {}

    async def _get_json(self, url: str, request: HTTPRequest | None = None) -> dict[str, Any]:
        try:
            reply = await AsyncHTTPClient().fetch(
                request or HTTPRequest(url, request_timeout=self._timeout)
            )
            value = json.loads(reply.body)
        except HTTPClientError as error:
            body = error.response.body[:200].decode("utf-8", "replace") if error.response else ""
            raise OidcError(f"{url} answered {error.code} {body}".strip()) from None
        except (OSError, ValueError) as error:
            raise OidcError(f"{url}: {error}") from None
        if not isinstance(value, dict):
            raise OidcError(f"{url} did not answer a JSON object")
        return value

    async def metadata(self) -> ProviderMetadata:
        """The provider's endpoints, from its discovery document (cached for an hour)."""
        if (
            self._metadata is not None
            and time.monotonic() - self._metadata[1] < METADATA_TTL_SECONDS
        ):
            return self._metadata[0]
        document = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise OidcError("the discovery document names another issuer")
        try:
            metadata = ProviderMetadata(
                issuer=str(document["issuer"]),
                authorization_endpoint=_check_url(
                    str(document["authorization_endpoint"]), "authorization endpoint"
                ),
                token_endpoint=_check_url(str(document["token_endpoint"]), "token endpoint"),
                jwks_uri=_check_url(str(document["jwks_uri"]), "JWKS URL"),
            )
        except KeyError as missing:
            raise OidcError(f"the discovery document lacks {missing}") from None
        self._metadata = (metadata, time.monotonic())
        return metadata

    async def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """Trade the authorization code (with the PKCE verifier) for the tokens."""
        if not code or len(code) > 2048:
            raise OidcError("the provider sent no authorization code")
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.client_id,
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if self._secret:
            pair = f"{self.client_id}:{self._secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        request = HTTPRequest(
            metadata.token_endpoint,
            method="POST",
            body=urlencode(form),
            headers=headers,
            request_timeout=self._timeout,
        )
        return await self._get_json(metadata.token_endpoint, request)

    async def _key(self, kid: str | None) -> Any:
        metadata = await self.metadata()
        for refetch in (False, True):
            if refetch or not self._keys:
                document = await self._get_json(metadata.jwks_uri)
                self._keys = {
                    str(jwk.get("kid", "")): jwt.PyJWK(jwk)
                    for jwk in document.get("keys", [])
                    if isinstance(jwk, dict) and jwk.get("use", "sig") == "sig"
                }
            if kid in self._keys or (kid is None and len(self._keys) == 1):
                return next(iter(self._keys.values())) if kid is None else self._keys[kid]
        raise OidcError("the ID token is signed with a key the provider does not list")

    async def verified_email(self, tokens: dict[str, Any], nonce: str) -> str:
        """The email in the ID token, once everything about the token checks out."""
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the provider sent no ID token")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("the ID token is malformed") from None
        algorithm = header.get("alg")
        if algorithm not in SIGNING_ALGORITHMS:
            raise OidcError(f"the ID token's signature algorithm {algorithm!r} is not accepted")
        key = await self._key(header.get("kid"))
        claims = self._decode(id_token, key, str(algorithm))
        if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
            raise OidcError("the ID token's nonce does not match this sign-in")
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token was issued to another client")
        email = claims.get("email")
        if claims.get("email_verified") not in (True, "true"):
            raise OidcError("the provider has not verified this email address")
        if not isinstance(email, str) or "@" not in email or len(email) > 254:
            raise OidcError("the ID token carries no email address")
        return email.strip().lower()

    def _decode(self, id_token: str, key: Any, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[algorithm],
                audience=self.client_id,
                issuer=(self._metadata[0].issuer if self._metadata else self.issuer),
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError("the ID token was issued to another client") from None
        except jwt.InvalidIssuerError:
            raise OidcError("the ID token comes from another issuer") from None
        except jwt.PyJWTError as error:
            raise OidcError(f"the ID token does not verify ({type(error).__name__})") from None
        return claims
