"""The admin login's pieces on a real database but without a LabLink server: which paths need
a login, the session cookie, the authorize callback, the provider's guests and websocket
origins, the hash-checking and throttled login, sessions, and the account's stored hash."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import panel as pn
import pytest
from sqlalchemy import Engine
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, create_signed_value

from dashboard import auth
from dashboard.runtime import Runtime
from dashboard.security_headers import ORIGINS_SETTING
from lablink_core.admin import AdminAccount, load_admin_account, set_admin_password
from lablink_core.config import LablinkConfig
from lablink_core.credentials import SecretStore
from lablink_core.errors import InvalidInput
from lablink_core.throttle import LoginThrottle, ThrottlePolicy

SECRET = "s3cret-for-tests-only-0123456789abcdef"
PASSWORD = "correct horse battery"


class FakeStore:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_or_create(self, name: str) -> str:
        self.asked.append(name)
        return "from-the-database"


@pytest.fixture
def account(engine: Engine) -> AdminAccount:
    """The admin account on the test's database, with PASSWORD configured."""
    return load_admin_account(engine, SecretStore(engine), "admin", PASSWORD)


@pytest.fixture
def runtime(account: AdminAccount) -> Iterator[Runtime]:
    """Just what the auth code reads of a runtime: the account, config, a pool, a store."""
    pool = ThreadPoolExecutor(2)
    fake = SimpleNamespace(
        admin=account,
        config=LablinkConfig(),
        services=SimpleNamespace(secrets=FakeStore()),
        admin_executor=pool,
    )
    yield cast(Runtime, fake)
    pool.shutdown()


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


def signed(token: str, secret: str = SECRET) -> bytes:
    return create_signed_value(secret, auth.SESSION_COOKIE, token)


def session_cookie(runtime: Runtime, user: str = "admin") -> bytes:
    return signed(runtime.admin.sessions.create(user, "127.0.0.1"))


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


def test_the_cookie_names_the_admin_only_for_a_live_signed_session(runtime: Runtime) -> None:
    token = runtime.admin.sessions.create("admin", "127.0.0.1")
    assert auth.admin_from_cookie(runtime, signed(token), SECRET) == "admin"
    assert auth.admin_from_cookie(runtime, signed(token).decode(), SECRET) == "admin"
    assert auth.admin_from_cookie(runtime, signed(token, "another-secret"), SECRET) is None
    assert auth.admin_from_cookie(runtime, signed("made-up-token"), SECRET) is None
    assert auth.admin_from_cookie(runtime, signed(token), None) is None
    assert auth.admin_from_cookie(runtime, None, SECRET) is None
    # The old cookie, a signed user name, no longer means anything.
    old = create_signed_value(SECRET, auth.USER_COOKIE, "admin")
    assert auth.admin_from_cookie(runtime, old, SECRET) is None
    mallory = runtime.admin.sessions.create("mallory", None)
    assert auth.admin_from_cookie(runtime, signed(mallory), SECRET) is None


def test_a_revoked_session_is_refused_at_once_in_its_process(runtime: Runtime) -> None:
    token = runtime.admin.sessions.create("admin", None)
    assert runtime.admin.sessions.user_of(token) == "admin"
    runtime.admin.sessions.revoke(token)
    assert auth.admin_from_cookie(runtime, signed(token), SECRET) is None


def test_a_password_change_revokes_every_session_and_the_token(
    engine: Engine, account: AdminAccount
) -> None:
    tokens = [account.sessions.create("admin", None) for _ in range(3)]
    api_token = account.api_token
    set_admin_password(engine, "a brand new password")
    # Another process (a fresh account object) sees it; this one within its cache time.
    other = load_admin_account(engine, SecretStore(engine), "admin", None)
    assert all(other.sessions.user_of(token) is None for token in tokens)
    account.forget_cached_hash()
    assert account.api_token != api_token
    assert account.check_password("admin", "a brand new password")
    assert not account.check_password("admin", PASSWORD)


def test_the_configured_password_is_rehashed_only_when_it_differs(
    engine: Engine, account: AdminAccount
) -> None:
    token = account.sessions.create("admin", None)
    same = load_admin_account(engine, SecretStore(engine), "admin", PASSWORD)
    assert same.password_hash == account.password_hash
    assert same.api_token == account.api_token  # what `lablink admin token` prints
    assert same.sessions.user_of(token) == "admin"
    changed = load_admin_account(engine, SecretStore(engine), "admin", "another password!")
    assert changed.password_hash != account.password_hash
    assert changed.sessions.user_of(token) is None


def test_a_generated_password_is_made_once(database_url: str, engine: Engine) -> None:
    first = load_admin_account(engine, SecretStore(engine), "admin", None)
    assert first.generated_password and first.check_password("admin", first.generated_password)
    again = load_admin_account(engine, SecretStore(engine), "admin", None)
    assert again.generated_password is None and again.api_token == first.api_token


@pytest.mark.parametrize("password", ["short", "x" * 73, "é" * 40])
def test_unfit_passwords_are_refused(engine: Engine, password: str) -> None:
    with pytest.raises(InvalidInput):
        set_admin_password(engine, password)


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
def test_authorize_admits_a_live_session(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    token = runtime.admin.sessions.create("admin", None)
    cookies = {auth.SESSION_COOKIE: signed(token).decode()}
    monkeypatch.setattr(type(pn.state), "cookies", property(lambda _: cookies))
    assert auth.make_authorize(lambda: runtime)(None, "/admin/instances") is True
    runtime.admin.sessions.revoke(token)
    assert auth.make_authorize(lambda: runtime)(None, "/admin/instances") != True  # noqa: E712


class FakeHandler:
    """What the provider's get_user reads and writes on a request handler."""

    def __init__(
        self,
        uri: str,
        cookie: bytes | None = None,
        secret: str | None = SECRET,
        headers: dict[str, str] | None = None,
    ):
        self.request = SimpleNamespace(
            uri=uri, cookies={}, headers=headers or {}, protocol="http", host="127.0.0.1:5000"
        )
        settings = {"cookie_secret": secret, ORIGINS_SETTING: frozenset({"http://good:5000"})}
        self.application = SimpleNamespace(settings=settings)
        self._cookie = cookie.decode() if cookie else None
        self.set_cookies: dict[str, str] = {}

    def get_cookie(self, name: str) -> str | None:
        return self._cookie if name == auth.SESSION_COOKIE else None

    def set_cookie(self, name: str, value: str, **_: Any) -> None:
        self.set_cookies[name] = value


@pytest.mark.parametrize(
    ("uri", "live_cookie", "secret", "expected"),
    [
        ("/", False, SECRET, "guest"),
        ("/?x=1", False, SECRET, "guest"),
        ("/admin", False, SECRET, None),
        ("/admin/ws?bokeh-session-id=x", False, SECRET, None),
        ("/admin", True, SECRET, "admin"),
        ("/admin", True, None, None),
        ("/", True, SECRET, "admin"),
    ],
)
def test_provider_lets_guests_in_only_on_public_paths(
    runtime: Runtime, uri: str, live_cookie: bool, secret: str | None, expected: str | None
) -> None:
    provider = auth.LablinkAuthProvider(lambda: runtime)
    handler = FakeHandler(uri, session_cookie(runtime) if live_cookie else None, secret)
    assert provider.get_user(cast(Any, handler)) == expected
    assert ("is_guest" in handler.set_cookies) is (expected == "guest")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("http://good:5000", True), ("http://good:5001", False), ("http://evil.example", False)],
)
def test_provider_refuses_websockets_from_other_origins(
    runtime: Runtime, origin: str, allowed: bool
) -> None:
    provider = auth.LablinkAuthProvider(lambda: runtime)
    for uri in ("/admin/ws", "/ws"):
        headers = {"Upgrade": "websocket", "Origin": origin}
        handler = FakeHandler(uri, session_cookie(runtime), headers=headers)
        assert (provider.get_user(cast(Any, handler)) == "admin") is allowed


def test_provider_without_a_runtime_refuses_admin_paths(runtime: Runtime) -> None:
    provider = auth.LablinkAuthProvider(no_runtime)
    assert provider.get_user(cast(Any, FakeHandler("/admin", session_cookie(runtime)))) is None
    assert provider.get_user(cast(Any, FakeHandler("/"))) == "guest"


async def post_login(runtime: Runtime, secret: str | None, body: bytes) -> HTTPResponse:
    """POST the login form to the provider's handler on a real local Tornado server."""
    provider = auth.LablinkAuthProvider(lambda: runtime)
    settings: dict[str, Any] = {"cookie_secret": secret} if secret else {}
    app = Application([(auth.LOGIN_ENDPOINT, provider.login_handler)], **settings)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
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
    return asyncio.run(post_login(runtime, secret, f"username={user}&password={password}".encode()))


def test_login_with_the_right_password_opens_a_session_in_a_signed_lax_cookie(
    runtime: Runtime,
) -> None:
    reply = login(runtime, SECRET, "admin", PASSWORD.replace(" ", "+"))
    assert reply.code == 302 and reply.headers["Location"] == "/admin/create"
    cookies = reply.headers.get_list("Set-Cookie")
    session = next(c for c in cookies if c.startswith(f"{auth.SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=Lax" in session
    value = session.split(";", 1)[0].split("=", 1)[1].strip('"')
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
    assert not any(c.startswith("lablink_admin=") for c in reply.headers.get_list("Set-Cookie"))


def test_guessing_is_throttled_with_retry_after(runtime: Runtime) -> None:
    codes = [login(runtime, SECRET, "admin", f"guess-{i}").code for i in range(7)]
    # Four free failures; the fifth starts the wait, and says so.
    assert codes == [302] * 4 + [429] * 3
    refused = login(runtime, SECRET, "admin", PASSWORD.replace(" ", "+"))
    assert refused.code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert b"Too many failed logins" in refused.body


def test_invalid_utf8_in_the_password_is_a_400_that_logs_no_bytes(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        reply = asyncio.run(post_login(runtime, SECRET, b"username=admin&password=%ff%fesecret"))
    assert reply.code == 400
    assert not re.search(r"secret|\\xff|Invalid unicode", caplog.text)


def test_nested_login_links_are_forwarded() -> None:
    [(pattern, _, target)] = auth.login_routes()
    assert re.fullmatch(pattern, "/admin/login")
    assert re.fullmatch(pattern, "/admin/a/login")
    assert not re.fullmatch(pattern, "/login")
    assert target == {"url": "/login", "permanent": False}


def test_backoff_doubles_up_to_a_ceiling() -> None:
    policy = ThrottlePolicy(free_failures=3, base_seconds=2, max_seconds=30)
    assert [policy.wait_after(n) for n in range(1, 9)] == [0, 0, 2, 4, 8, 16, 30, 30]


def test_the_throttle_holds_across_processes_and_a_success_clears_it(engine: Engine) -> None:
    policies = {"addr:": ThrottlePolicy(free_failures=2, base_seconds=60)}
    first, second = LoginThrottle(engine, policies), LoginThrottle(engine, policies)
    keys = ["addr:192.0.2.1"]
    assert first.failed(keys) is None
    assert first.failed(keys) == pytest.approx(60)
    assert second.known_wait(keys) is None  # this "process" has not heard of it yet ...
    wait = second.wait(keys)
    assert wait is not None and 55 < wait <= 60  # ... but the database has
    assert second.known_wait(keys) is not None  # and now it remembers
    assert second.wait(["addr:192.0.2.2"]) is None
    first.succeeded(keys)
    assert first.wait(keys) is None
