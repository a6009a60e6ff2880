"""The admin login's pieces without a server: which paths need a login, the cookie, the
cookie secret, the authorize callback, the provider's guests and the hash-checking login."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import panel as pn
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, create_signed_value

from dashboard import auth
from dashboard.runtime import Runtime
from lablink_core.admin import AdminAccount, hash_password
from lablink_core.config import LablinkConfig

SECRET = "s3cret-for-tests-only-0123456789abcdef"
PASSWORD = "correct horse battery"


class FakeStore:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_or_create(self, name: str) -> str:
        self.asked.append(name)
        return "from-the-database"


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    account = AdminAccount("admin", hash_password(PASSWORD), "ladm1.token")
    fake = SimpleNamespace(
        admin=account, config=LablinkConfig(), services=SimpleNamespace(secrets=FakeStore())
    )
    return cast(Runtime, fake)


@pytest.fixture
def panel_secret() -> Iterator[None]:
    before = pn.config.cookie_secret
    pn.config.cookie_secret = SECRET
    yield
    pn.config.cookie_secret = before


@pytest.fixture
def no_panel_secret() -> Iterator[None]:
    before = pn.config.cookie_secret
    pn.config.cookie_secret = None
    yield
    pn.config.cookie_secret = before


def signed(user: str, secret: str = SECRET) -> bytes:
    return create_signed_value(secret, auth.USER_COOKIE, user)


def no_runtime() -> Runtime:
    raise RuntimeError("not set up")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", False),
        ("/ws", False),
        ("/static/js/bokeh.min.js", False),
        ("/request_vm", False),
        ("/admin", True),
        ("/admin/", True),
        ("/admin/ws", True),
        ("/admin/create", True),
        ("/admin/set-aws-credentials/autoload.js", True),
        ("/admin_create", True),
        ("/Admin", True),
    ],
)
def test_which_paths_need_a_login(path: str, expected: bool) -> None:
    assert auth.needs_login(path) is expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/admin"),
        ("", "/admin"),
        ("/", "/admin"),
        ("/admin/create?x=1", "/admin/create?x=1"),
        ("//evil.example/admin", "/admin"),
        ("https://evil.example/admin", "/admin"),
        ("/\\evil.example", "/admin"),
        ("admin", "/admin"),
    ],
)
def test_only_local_admin_paths_follow_a_login(given: str | None, expected: str) -> None:
    assert auth.safe_next_url(given) == expected


def test_the_cookie_names_the_admin_only_when_signed_with_the_secret(runtime: Runtime) -> None:
    assert auth.admin_from_cookie(runtime, signed("admin"), SECRET) == "admin"
    assert auth.admin_from_cookie(runtime, signed("admin").decode(), SECRET) == "admin"
    assert auth.admin_from_cookie(runtime, signed("admin", "another-secret"), SECRET) is None
    assert auth.admin_from_cookie(runtime, signed("mallory"), SECRET) is None
    assert auth.admin_from_cookie(runtime, b"admin", SECRET) is None
    assert auth.admin_from_cookie(runtime, signed("admin"), None) is None
    assert auth.admin_from_cookie(runtime, None, SECRET) is None


def test_cookie_secret_is_derived_from_the_secret_key_or_kept_in_the_database(
    runtime: Runtime,
) -> None:
    store = cast(FakeStore, runtime.services.secrets)
    assert auth.cookie_secret_for(runtime) == "from-the-database"
    assert store.asked == ["cookie-secret"]
    configured = SimpleNamespace(**vars(runtime))
    configured.config = LablinkConfig()
    configured.config.app.secret_key = "k" * 32
    derived = auth.cookie_secret_for(cast(Runtime, configured))
    assert len(derived) == 64 and "k" * 32 not in derived
    assert derived == auth.cookie_secret_for(cast(Runtime, configured))


def test_authorize_lets_anyone_see_public_pages(runtime: Runtime) -> None:
    authorize = auth.make_authorize(lambda: runtime)
    assert authorize(None, "/") is True
    assert authorize(None, "/home") is True


@pytest.mark.usefixtures("panel_secret")
def test_authorize_sends_strangers_to_login(runtime: Runtime) -> None:
    authorize = auth.make_authorize(lambda: runtime)
    assert authorize(None, "/admin/create") == "/login?next=/admin/create"
    assert authorize({"user": "guest"}, "/somewhere-new") == "/login?next=/somewhere-new"
    assert auth.make_authorize(no_runtime)(None, "/admin") is False


@pytest.mark.usefixtures("no_panel_secret")
def test_authorize_is_closed_without_a_cookie_secret(runtime: Runtime) -> None:
    assert auth.make_authorize(lambda: runtime)(None, "/admin") is False


@pytest.mark.usefixtures("panel_secret")
def test_authorize_admits_the_admin_cookie(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookies = {auth.USER_COOKIE: signed("admin").decode()}
    monkeypatch.setattr(type(pn.state), "cookies", property(lambda _: cookies))
    assert auth.make_authorize(lambda: runtime)(None, "/admin/instances") is True


class FakeHandler:
    """What the provider's get_user reads and writes on a request handler."""

    def __init__(self, uri: str, cookie: bytes | None = None, secret: str | None = SECRET):
        self.request = SimpleNamespace(uri=uri, cookies={}, headers={})
        self.application = SimpleNamespace(settings={"cookie_secret": secret})
        self._cookie = cookie.decode() if cookie else None
        self.set_cookies: dict[str, str] = {}

    def get_cookie(self, name: str) -> str | None:
        return self._cookie if name == auth.USER_COOKIE else None

    def set_cookie(self, name: str, value: str, **_: Any) -> None:
        self.set_cookies[name] = value


@pytest.mark.parametrize(
    ("uri", "cookie", "secret", "expected"),
    [
        ("/", None, SECRET, "guest"),
        ("/?x=1", None, SECRET, "guest"),
        ("/admin", None, SECRET, None),
        ("/admin/ws?bokeh-session-id=x", None, SECRET, None),
        ("/admin", signed("admin"), SECRET, "admin"),
        ("/admin", signed("admin"), None, None),
        ("/admin", signed("admin", "old-secret"), SECRET, None),
        ("/", signed("admin"), SECRET, "admin"),
    ],
)
def test_provider_lets_guests_in_only_on_public_paths(
    runtime: Runtime, uri: str, cookie: bytes | None, secret: str | None, expected: str | None
) -> None:
    provider = auth.LablinkAuthProvider(lambda: runtime)
    handler = FakeHandler(uri, cookie, secret)
    assert provider.get_user(cast(Any, handler)) == expected
    assert ("is_guest" in handler.set_cookies) is (expected == "guest")


def test_provider_without_a_runtime_refuses_admin_paths() -> None:
    provider = auth.LablinkAuthProvider(no_runtime)
    assert provider.get_user(cast(Any, FakeHandler("/admin", signed("admin")))) is None
    assert provider.get_user(cast(Any, FakeHandler("/"))) == "guest"


async def post_login(runtime: Runtime, secret: str | None, **form: str) -> HTTPResponse:
    """POST the login form to the provider's handler on a real local Tornado server."""
    provider = auth.LablinkAuthProvider(lambda: runtime)
    settings: dict[str, Any] = {"cookie_secret": secret} if secret else {}
    app = Application([(auth.LOGIN_ENDPOINT, provider.login_handler)], **settings)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    body = "&".join(f"{key}={value}" for key, value in form.items())
    try:
        return await AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{port}/login",
            method="POST",
            body=body,
            headers={"Cookie": "next_url=/admin/create"},
            follow_redirects=False,
            raise_error=False,
        )
    finally:
        server.stop()


def login(runtime: Runtime, secret: str | None, user: str, password: str) -> HTTPResponse:
    return asyncio.run(post_login(runtime, secret, username=user, password=password))


def test_login_with_the_right_password_sets_a_signed_lax_cookie(runtime: Runtime) -> None:
    reply = login(runtime, SECRET, "admin", PASSWORD.replace(" ", "+"))
    assert reply.code == 302 and reply.headers["Location"] == "/admin/create"
    cookies = reply.headers.get_list("Set-Cookie")
    user = next(c for c in cookies if c.startswith("user="))
    assert "HttpOnly" in user and "SameSite=Lax" in user
    value = user.split(";", 1)[0].split("=", 1)[1].strip('"')
    assert auth.admin_from_cookie(runtime, value, SECRET) == "admin"


@pytest.mark.parametrize(
    ("user", "password", "secret"),
    [
        ("admin", "wrong", SECRET),
        ("root", PASSWORD.replace(" ", "+"), SECRET),
        ("admin", "", SECRET),
        ("admin", PASSWORD.replace(" ", "+"), None),
    ],
)
def test_login_is_refused(runtime: Runtime, user: str, password: str, secret: str | None) -> None:
    reply = login(runtime, secret, user, password)
    assert reply.code == 302
    location = urlsplit(reply.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["error"] == [auth.WRONG_LOGIN]
    assert not any(c.startswith("user=") for c in reply.headers.get_list("Set-Cookie"))


def test_nested_login_links_are_forwarded() -> None:
    [(pattern, _, target)] = auth.login_routes()
    assert re.fullmatch(pattern, "/admin/login")
    assert re.fullmatch(pattern, "/admin/a/login")
    assert not re.fullmatch(pattern, "/login")
    assert target == {"url": "/login", "permanent": False}
