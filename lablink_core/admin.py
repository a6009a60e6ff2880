"""The admin account: a bcrypt hash in the database, sessions, login throttling, API token.

The stored hash is the source of truth, shared by every server process and the CLI. A
configured ``app.admin_password`` is checked against it at start and written only when it
differs (which revokes every session, as ``lablink admin set-password`` does). With no password
configured, one is generated at first start and shown once. The API token for scripts is an
HMAC of the hash, so every process and ``lablink admin token`` derive the same token, and a
new password makes the old token useless. Nothing here stores a password in plain text.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt
from sqlalchemy import Connection, Engine, text

from lablink_core.admin_sessions import AdminSessions, revoke_all_sessions
from lablink_core.credentials import SecretStore
from lablink_core.errors import InvalidInput
from lablink_core.throttle import LoginThrottle, ThrottlePolicy

_HASH_NAME = "admin-password-hash"
_TOKEN_KEY_NAME = "admin-token-key"  # noqa: S105 (the name of a stored secret)
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
# Per address: a few free guesses, then a doubling wait. Per user (the one admin): more
# free guesses and a lower ceiling, so guessers from many addresses cannot lock the admin
# out for long.
THROTTLE_POLICIES = {
    "addr:": ThrottlePolicy(free_failures=5, base_seconds=2.0, max_seconds=300.0),
    "user:": ThrottlePolicy(free_failures=20, base_seconds=1.0, max_seconds=60.0),
}


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def password_matches(password: str, hashed: str) -> bool:
    if not password or len(password) > 256:
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def check_new_password(password: str) -> str:
    """A password fit to be the admin's, or a clear InvalidInput."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the admin password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"the admin password may have at most {MAX_PASSWORD_BYTES} bytes")
    return password


@dataclass(frozen=True)
class LoginOutcome:
    """What a login attempt came to: admitted, or refused (with a wait when throttled)."""

    ok: bool
    retry_after: float | None = None
    checked: bool = False  # a password was actually compared (not refused before that)


class AdminAccount:
    """Who may use the admin pages and API, checked against the stored hash."""

    def __init__(
        self,
        engine: Engine,
        user: str,
        token_key: str,
        generated_password: str | None = None,
        *,
        hash_cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user = user
        self.generated_password = generated_password  # set only on the start that made it
        self.sessions = AdminSessions(engine)
        self.throttle = LoginThrottle(engine, THROTTLE_POLICIES)
        self._engine = engine
        self._token_key = token_key
        self._cache_seconds = hash_cache_seconds
        self._clock = clock
        self._cached: tuple[str, float] | None = None
        self._lock = threading.Lock()

    @property
    def password_hash(self) -> str:
        """The stored hash (re-read after a couple of seconds: another process may set it)."""
        now = self._clock()
        with self._lock:
            cached = self._cached
        if cached is not None and now - cached[1] < self._cache_seconds:
            return cached[0]
        with self._engine.connect() as connection:
            hashed = _stored_hash(connection) or ""
        with self._lock:
            self._cached = (hashed, now)
        return hashed

    @property
    def api_token(self) -> str:
        return derive_api_token(self._token_key, self.password_hash)

    def check_password(self, user: str, password: str) -> bool:
        right_user = hmac.compare_digest(user.encode(), self.user.encode())
        hashed = self.password_hash
        return bool(hashed) and password_matches(password, hashed) and right_user

    def check_token(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.api_token)

    def throttle_keys(self, address: str, user: str) -> list[str]:
        # Only the real admin name gets a per-user key: made-up names would fill the table.
        keys = [f"addr:{address}"]
        return [*keys, f"user:{self.user}"] if user == self.user else keys

    def attempt_login(self, address: str, user: str, password: str) -> LoginOutcome:
        """Check a password unless the address or user must wait; blocking (bcrypt and the
        database): run it on an executor of its own."""
        keys = self.throttle_keys(address, user)
        wait = self.throttle.wait(keys)
        if wait is not None:
            return LoginOutcome(False, wait)
        if self.check_password(user, password):
            # Only the address's count: a script logging in often must not keep wiping what
            # guessers from many addresses have run up against the user name.
            self.throttle.succeeded([key for key in keys if key.startswith("addr:")])
            return LoginOutcome(True, checked=True)
        return LoginOutcome(False, self.throttle.failed(keys), checked=True)

    def forget_cached_hash(self) -> None:
        with self._lock:
            self._cached = None


def derive_api_token(key: str, password_hash: str) -> str:
    # Changing the password changes the token, so an old token stops working.
    digest = hmac.new(key.encode(), b"admin-api:" + password_hash.encode(), hashlib.sha256)
    return "ladm1." + digest.hexdigest()


def _stored_hash(connection: Connection) -> str | None:
    value = connection.execute(
        text("SELECT value FROM lablink_secrets WHERE name = :name"), {"name": _HASH_NAME}
    ).scalar()
    return None if value is None else str(value)


def _store_hash(connection: Connection, hashed: str) -> None:
    connection.execute(
        text(
            "INSERT INTO lablink_secrets (name, value) VALUES (:name, :value) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        ),
        {"name": _HASH_NAME, "value": hashed},
    )


def _lock_account(connection: Connection) -> None:
    # Two processes starting at once must not both generate (or re-hash) a password.
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('lablink-admin-password'))"))


def set_admin_password(engine: Engine, password: str) -> None:
    """Store a new admin password's hash and revoke every admin session."""
    hashed = hash_password(check_new_password(password))
    with engine.begin() as connection:
        _lock_account(connection)
        _store_hash(connection, hashed)
        revoke_all_sessions(connection)


def load_admin_account(
    engine: Engine, store: SecretStore, user: str, password: str | None
) -> AdminAccount:
    """The admin account; stores the configured password's hash if the stored one differs,
    or generates (and keeps) a password when none is configured and none is stored."""
    key = store.get_or_create(_TOKEN_KEY_NAME)
    generated = None
    with engine.begin() as connection:
        _lock_account(connection)
        stored = _stored_hash(connection)
        if password:
            if stored is None or not password_matches(password, stored):
                _store_hash(connection, hash_password(check_new_password(password)))
                revoke_all_sessions(connection)
        elif stored is None:
            generated = secrets.token_urlsafe(12)
            _store_hash(connection, hash_password(generated))
    return AdminAccount(engine, user, key, generated)


def reset_generated_password(engine: Engine) -> None:
    """Forget the stored admin password, so the next start makes and shows a new one."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM lablink_secrets WHERE name = :n"), {"n": _HASH_NAME})
        revoke_all_sessions(connection)
