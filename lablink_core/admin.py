"""The admin account: a bcrypt-hashed password and a derived API token for scripts.

In local mode with no password configured, one is generated at first start, its hash kept in
the database, and the password shown once. Nothing here ever stores a password in plain text.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import bcrypt
from sqlalchemy import Engine, text

from lablink_core.credentials import SecretStore

_HASH_NAME = "admin-password-hash"


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def password_matches(password: str, hashed: str) -> bool:
    if not password or len(password) > 256:
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


@dataclass(frozen=True)
class AdminAccount:
    """Who may use the admin pages and API."""

    user: str
    password_hash: str
    api_token: str
    generated_password: str | None = None  # set only on the start that generated it

    def check_password(self, user: str, password: str) -> bool:
        right_user = hmac.compare_digest(user.encode(), self.user.encode())
        return password_matches(password, self.password_hash) and right_user

    def check_token(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.api_token)


def _derive_api_token(key: str, password_hash: str) -> str:
    # Changing the password changes the token, so an old token stops working.
    digest = hmac.new(key.encode(), b"admin-api:" + password_hash.encode(), hashlib.sha256)
    return "ladm1." + digest.hexdigest()


def load_admin_account(
    engine: Engine, store: SecretStore, user: str, password: str | None
) -> AdminAccount:
    """The admin account for this process; generates and keeps a password if none is given."""
    key = store.get_or_create("admin-token-key")
    generated = None
    if password:
        hashed = hash_password(password)
    else:
        candidate = secrets.token_urlsafe(12)
        with engine.begin() as connection:
            inserted = connection.execute(
                text(
                    "INSERT INTO lablink_secrets (name, value) VALUES (:name, :value) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name"
                ),
                {"name": _HASH_NAME, "value": hash_password(candidate)},
            ).first()
            hashed = connection.execute(
                text("SELECT value FROM lablink_secrets WHERE name = :name"), {"name": _HASH_NAME}
            ).scalar_one()
        generated = candidate if inserted is not None else None
    return AdminAccount(user, str(hashed), _derive_api_token(key, str(hashed)), generated)


def reset_generated_password(engine: Engine) -> None:
    """Forget the generated admin password, so the next start makes and shows a new one."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM lablink_secrets WHERE name = :n"), {"n": _HASH_NAME})
