"""Server secrets and per-VM credentials.

A VM's credential is an HMAC of its hostname under the server secret: bound to that hostname,
valid across restarts, and never stored. The secret is generated once and kept in the
database (or given in the config), so every server process derives the same credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import Engine, text

from lablink_core.validation import validate_hostname

CREDENTIAL_PREFIX = "lvm1."


class SecretStore:
    """Named secrets in ``lablink_secrets``, created on first use, the same for every process."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_or_create(self, name: str, *, nbytes: int = 32) -> str:
        candidate = secrets.token_urlsafe(nbytes)
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO lablink_secrets (name, value) VALUES (:name, :value) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                {"name": name, "value": candidate},
            )
            value = connection.execute(
                text("SELECT value FROM lablink_secrets WHERE name = :name"), {"name": name}
            ).scalar_one()
        return str(value)


class VMCredentials:
    """Issues and checks the bearer credential of each VM."""

    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("the credential key must be at least 16 characters")
        self._key = key.encode()

    @classmethod
    def from_store(cls, store: SecretStore, configured: str | None = None) -> VMCredentials:
        return cls(configured or store.get_or_create("vm-credential-key"))

    def issue(self, hostname: str) -> str:
        name = validate_hostname(hostname)
        digest = hmac.new(self._key, b"vm-credential:" + name.encode(), hashlib.sha256).digest()
        return CREDENTIAL_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def verify(self, hostname: str, credential: str | None) -> bool:
        """True only for this hostname's own credential (constant-time comparison)."""
        if not credential or len(credential) > 200:
            return False
        return hmac.compare_digest(self.issue(hostname), credential)
