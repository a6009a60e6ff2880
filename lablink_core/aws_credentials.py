"""The AWS keys Terraform uses: validated, kept in one private file, never shown again.

The file is ``<data_dir>/aws-credentials.json`` (outside the Terraform folder, so no tfvars or
state file ever holds them), created with mode 0600 and replaced atomically. The only way out
is :meth:`AwsCredentials.as_env`, for the Terraform process's environment; everything a
person can see (``repr``, :meth:`describe`) names at most the key id's last four characters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from lablink_core.errors import InvalidInput

FILE_NAME = "aws-credentials.json"
_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_SECRET = re.compile(r"^[\x21-\x7e]{16,128}$")  # printable ASCII, no spaces
_TOKEN = re.compile(r"^[\x21-\x7e]{16,4096}$")


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair and an optional session token. ``repr`` hides the secrets."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(
        cls, access_key_id: object, secret_access_key: object, session_token: object = None
    ) -> AwsCredentials:
        """Validated credentials; InvalidInput names the field but never echoes the value."""
        key_id = _text(access_key_id).strip()
        if not _KEY_ID.fullmatch(key_id):
            raise InvalidInput(
                "The access key id must be 16-128 capital letters and digits.",
                field="access_key_id",
            )
        secret = _text(secret_access_key).strip()
        if not _SECRET.fullmatch(secret):
            raise InvalidInput(
                "The secret access key must be 16-128 printable characters without spaces.",
                field="secret_access_key",
            )
        token = _text(session_token).strip() or None
        if token is not None and not _TOKEN.fullmatch(token):
            raise InvalidInput(
                "The session token must be printable characters without spaces.",
                field="session_token",
            )
        return cls(key_id, secret, token)

    def __repr__(self) -> str:
        return f"AwsCredentials(key id ending {self.key_id_suffix}, secret hidden)"

    __str__ = __repr__

    @property
    def key_id_suffix(self) -> str:
        return self.access_key_id[-4:]

    def describe(self) -> str:
        return f"set, key id ending {self.key_id_suffix}"

    def as_env(self) -> dict[str, str]:
        """The variables the AWS provider reads, for a Terraform subprocess's environment."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


def _text(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("expected text")
    return value


class AwsCredentialStore:
    """Saves and loads :class:`AwsCredentials` in ``<data_dir>/aws-credentials.json``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / FILE_NAME

    def __repr__(self) -> str:
        return f"AwsCredentialStore({str(self.path)!r})"

    def save(self, credentials: AwsCredentials) -> None:
        """Write the file with mode 0600 from its creation on, then move it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "access_key_id": credentials.access_key_id,
                "secret_access_key": credentials.secret_access_key,
                "session_token": credentials.session_token,
            }
        ).encode()
        temporary = self.path.with_name(f".{FILE_NAME}.{secrets.token_hex(6)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise

    def load(self) -> AwsCredentials | None:
        """The stored credentials, or None when none are saved (or the file is unreadable)."""
        try:
            data = json.loads(self.path.read_text())
            return AwsCredentials.parse(
                data["access_key_id"], data["secret_access_key"], data.get("session_token")
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, InvalidInput):
            return None

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def describe(self) -> str:
        """'set, key id ending ABCD' or 'not set': all a page may show."""
        credentials = self.load()
        return credentials.describe() if credentials is not None else "not set"

    def as_env(self) -> dict[str, str]:
        """Environment variables for Terraform; empty when nothing is stored."""
        credentials = self.load()
        return credentials.as_env() if credentials is not None else {}
