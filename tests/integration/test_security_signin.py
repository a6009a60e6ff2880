"""Researcher sign-in with OpenID Connect, end to end over HTTP against a real `lablink serve`
and a local provider (tests/support/oidc_provider.py): the flow sets a signed cookie with the
verified email, and every forgery or mistake along the way is refused without one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine

from dashboard.signin import RESEARCHER_COOKIE, signed_in_email
from lablink_core.credentials import SecretStore
from tests.fixtures.server import RunningServer, make_server_database
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    """The local OpenID Connect provider."""
    started = OidcProvider().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def signin_server(
    postgres_server_url: str, template_database: str, provider: OidcProvider
) -> Iterator[RunningServer]:
    """A `lablink serve` in signin mode, pointed at the local provider."""
    env = {
        "LABLINK_ACCESS_MODE": "signin",
        "LABLINK_ACCESS_OIDC_ISSUER": provider.issuer,
        "LABLINK_ACCESS_OIDC_CLIENT_ID": CLIENT_ID,
        "LABLINK_ACCESS_OIDC_CLIENT_SECRET": CLIENT_SECRET,
    }
    database = make_server_database(postgres_server_url, template_database)
    server = RunningServer(database, extra_env=env)
    provider.redirect_uris = {f"{server.url}/signin/callback"}
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture
def honest(provider: OidcProvider) -> Iterator[OidcProvider]:
    """The provider, telling the truth again after the test."""
    yield provider
    provider.tamper = {}


def cookie_secret(server: RunningServer) -> str:
    engine = create_engine(server.database_url)
    try:
        return SecretStore(engine).get_or_create("cookie-secret")
    finally:
        engine.dispose()


def sign_in(server: RunningServer, **change_callback: str) -> tuple[httpx.Response, httpx.Client]:
    """Walk the redirects by hand, as a browser would; the callback's answer and the client."""
    browser = httpx.Client(timeout=30, follow_redirects=False)
    start = browser.get(f"{server.url}/signin", params={"next": "/?from=signin"})
    assert start.status_code == 302, start.text
    at_provider = browser.get(start.headers["Location"])
    assert at_provider.status_code == 302, at_provider.text
    callback = urlsplit(at_provider.headers["Location"])
    query = {key: values[0] for key, values in parse_qs(callback.query).items()}
    query.update(change_callback)
    reply = browser.get(f"{server.url}{callback.path}", params=query)
    return reply, browser


def test_signing_in_sets_a_signed_cookie_with_the_verified_email(
    signin_server: RunningServer, honest: OidcProvider
) -> None:
    honest.user_email = "Ada@Uni.Example"
    reply, browser = sign_in(signin_server)
    assert reply.status_code == 302 and reply.headers["Location"] == "/?from=signin"
    line = next(c for c in reply.headers.get_list("Set-Cookie") if c.startswith(RESEARCHER_COOKIE))
    assert "HttpOnly" in line and "SameSite=Lax" in line
    value = browser.cookies[RESEARCHER_COOKIE]
    assert signed_in_email({RESEARCHER_COOKIE: value}.get, cookie_secret(signin_server)) == (
        "ada@uni.example"
    )
    assert signed_in_email({RESEARCHER_COOKIE: value}.get, "another secret") is None
    assert signed_in_email({RESEARCHER_COOKIE: "ada@uni.example"}.get, "x") is None
    page = browser.get(f"{signin_server.url}/")
    assert page.status_code == 200
    out = browser.get(f"{signin_server.url}/signout")
    assert out.status_code == 302 and RESEARCHER_COOKIE not in browser.cookies
    browser.close()


def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        ({"aud": "another-client"}, "another client"),
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"nonce": "an-old-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": 1_000_000_000}, "expired"),
        ({"email_verified": False}, "not verified"),
        ({"email_verified": None}, "not verified"),
        ({"email": None}, "no email"),
        ({"signing_key": "other"}, "does not verify"),
    ],
)
def test_a_bad_id_token_is_refused(
    signin_server: RunningServer, honest: OidcProvider, tamper: dict[str, Any], said: str
) -> None:
    honest.tamper = {**tamper, **({"signing_key": other_key()} if "signing_key" in tamper else {})}
    reply, browser = sign_in(signin_server)
    assert reply.status_code == 400 and said in reply.text
    assert RESEARCHER_COOKIE not in browser.cookies
    assert "Traceback" not in signin_server.log()
    browser.close()


def test_a_forged_state_or_a_replayed_code_is_refused(
    signin_server: RunningServer, honest: OidcProvider
) -> None:
    reply, browser = sign_in(signin_server, state="forged")
    assert reply.status_code == 400 and "state" in reply.text
    browser.close()
    good, browser = sign_in(signin_server)
    assert good.status_code == 302
    replay = browser.get(str(good.request.url))  # the same code and state again
    assert replay.status_code == 400
    browser.close()
    # A callback with no sign-in started here (a login CSRF with the attacker's code).
    stranger = httpx.get(
        f"{signin_server.url}/signin/callback", params={"code": "x", "state": "y"}, timeout=30
    )
    assert stranger.status_code == 400 and RESEARCHER_COOKIE not in stranger.cookies


def test_without_a_configured_provider_the_routes_answer_404(api: RunningServer) -> None:
    for path in ("/signin", "/signin/callback"):
        reply = httpx.get(f"{api.url}{path}", timeout=30)
        assert reply.status_code == 404 and "not configured" in reply.text
