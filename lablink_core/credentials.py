"""Server secrets, and how VM credentials are made and checked.

A VM credential is ``lvm2.`` + HMAC(server key, ``hostname:salt``). The VM's row keeps only
the salt and the credential's SHA-256: every server process can rebuild the current
credential from the salt (to hand it to the VM after a rotation), and checking one is part of
the statement that uses it (``WHERE hostname = … AND credential_hash = …``). A new salt
rotates the credential; no salt means none is valid (never issued, or revoked). Rows are
never created from a credential: an unknown hostname is refused, so a destroyed VM's
credential can bring nothing back.

``lvm1.`` credentials (an HMAC of the hostname alone, before revision 0002) are no longer
accepted: they could not be revoked or rotated. VMs launched before the upgrade are relaunched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, text

from lablink_core.validation import validate_hostname

CREDENTIAL_PREFIX = "lvm2."
ENROLMENT_PREFIX = "lve1."
MAX_CREDENTIAL_LENGTH = 200


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


def token_hash(token: str) -> str:
    """SHA-256 of a credential or token, as stored (the tokens are random: no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    """A freshly made credential and what its row must store."""

    credential: str
    salt: str
    hash: str


class VMCredentials:
    """Makes and recognises VM credentials under the server key (see the module docstring)."""

    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("the credential key must be at least 16 characters")
        self._key = key.encode()

    @classmethod
    def from_store(cls, store: SecretStore, configured: str | None = None) -> VMCredentials:
        return cls(configured or store.get_or_create("vm-credential-key"))

    def _mac(self, message: bytes) -> str:
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def derive(self, hostname: str, salt: str) -> str:
        """The credential of ``hostname`` for ``salt`` (what its row's salt stands for)."""
        name = validate_hostname(hostname)
        return CREDENTIAL_PREFIX + self._mac(f"vm-credential:{name}:{salt}".encode())

    def issue(self, hostname: str) -> Issued:
        """A new credential for ``hostname`` (with a new salt: the old one stops working)."""
        salt = secrets.token_urlsafe(18)
        credential = self.derive(hostname, salt)
        return Issued(credential, salt, token_hash(credential))

    @staticmethod
    def proof(credential: str | None) -> str | None:
        """The hash a statement matches against the VM's row; None when ``credential``
        cannot be a credential at all (no need to ask the database)."""
        if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
            return None
        if not credential.startswith(CREDENTIAL_PREFIX):
            return None
        return token_hash(credential)


def new_enrolment_token() -> str:
    """A one-time token a new VM exchanges for its credential (user_data carries only it)."""
    return ENROLMENT_PREFIX + secrets.token_urlsafe(24)
