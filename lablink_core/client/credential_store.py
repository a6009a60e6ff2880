"""The VM's bearer credential: where it comes from, how it is replaced, where it is kept.

Sources, newest first: the credential file (written whenever the allocator rotates the
credential, so it outlives the agent and the container), then the configured one (the
environment or the command line). The file wins at start because it is newer; a 401 with
the file's credential falls back, once, to the configured one, which is how a VM that was
re-enrolled (a new credential in its environment) recovers from a stale file.

The value itself is never logged and never in a repr.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

MAX_CREDENTIAL_LENGTH: Final = 1000


def is_credential(text: object) -> bool:
    """Non-empty printable ASCII without spaces: it goes into an HTTP header as is."""
    return (
        isinstance(text, str)
        and 0 < len(text) <= MAX_CREDENTIAL_LENGTH
        and text.isascii()
        and all(ch.isprintable() and not ch.isspace() for ch in text)
    )


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_credential_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if is_credential(text) else None


class CredentialStore:
    """The credential to send now, with the one fallback a 401 allows."""

    def __init__(self, configured: str | None, path: Path | None) -> None:
        self.path = path
        self._configured = configured if is_credential(configured) else None
        self._lock = threading.Lock()
        self._current: str | None = self._configured
        self._source = "configured"
        self._saved: str | None = None
        self._unsaved: str | None = None  # a value the file refused: not retried every answer
        self._fell_back = False

    def __repr__(self) -> str:
        return f"CredentialStore(path={self.path!r}, source={self._source!r})"

    def load(self) -> None:
        """Prefer the credential file's value when it holds one."""
        saved = read_credential_file(self.path)
        with self._lock:
            self._saved = saved
            if saved is not None:
                self._current, self._source = saved, "file"

    @property
    def current(self) -> str | None:
        with self._lock:
            return self._current

    @property
    def source(self) -> str:
        return self._source

    def known(self) -> tuple[str | None, ...]:
        """Every credential value this store has held, for redaction."""
        with self._lock:
            return (self._configured, self._saved, self._current)

    def replace(self, credential: object, why: str) -> bool:
        """Switch to a credential the allocator issued (rotation or enrolment) and save it."""
        if not isinstance(credential, str) or not is_credential(credential):
            log.warning("ignored a malformed credential from the allocator (%s)", why)
            return False
        with self._lock:
            if credential == self._current:
                return True
            self._current, self._source = credential, "allocator"
        log.info("switched to the credential the allocator issued (%s)", why)
        self._save(credential)
        return True

    def fall_back(self) -> bool:
        """After a 401: move from the file's credential to the configured one, once.

        False means there is nothing left to try."""
        with self._lock:
            usable = self._configured is not None and self._configured != self._current
            if self._fell_back or self._source != "file" or not usable:
                return False
            self._fell_back = True
            self._current, self._source = self._configured, "configured"
        log.warning(
            "the allocator refused the credential from %s; trying the configured one", self.path
        )
        return True

    def accepted(self) -> None:
        """The allocator took the current credential: make sure the file holds it."""
        with self._lock:
            current, saved, unsaved = self._current, self._saved, self._unsaved
        if current is not None and current not in (saved, unsaved):
            self._save(current)

    def _save(self, credential: str) -> None:
        if self.path is None:
            return
        try:
            write_private_file(self.path, credential)
        except OSError as error:
            # Still usable from memory; only a restart would need the file.
            log.warning("could not save the credential to %s: %s", self.path, error.strerror)
            with self._lock:
                self._unsaved = credential
            return
        with self._lock:
            self._saved = credential
