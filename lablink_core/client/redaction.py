"""Removing secrets from text before it leaves the VM (log lines, status messages).

Two nets: the exact values the agent knows to be secret (its credentials, the enrolment
token, each task's CRD code and PIN), and patterns for secrets it may never have been told
about (a code on a start-host command line, any LabLink token, a bearer header). The server
redacts again; this side must not rely on it.
"""

from __future__ import annotations

import re
import threading
from typing import Final

MARK: Final = "[redacted]"
# Values shorter than this are not secrets worth hiding, and hiding them would mangle text.
MIN_SECRET_LENGTH: Final = 4
# Enough for every PIN and code of a long-running VM; the oldest are dropped first.
MAX_KNOWN_SECRETS: Final = 256

# (pattern, replacement): group 1, where present, is kept so the text still reads.
_PATTERNS: Final[list[tuple[re.Pattern[str], str]]] = [
    (re.compile(r"(--(?:code|pin)(?:=|\s+))\S+"), r"\1" + MARK),
    (re.compile(r"\bl(?:vm[12]|ve1)\.[A-Za-z0-9._~+/=-]+"), MARK),
    (re.compile(r"(\bBearer\s+)\S+", re.IGNORECASE), r"\1" + MARK),
    # Google OAuth authorization codes and refresh tokens ("4/0Ab...", "1//0g...").
    (re.compile(r"\b(?:4/0|1//0)[A-Za-z0-9_-]{6,}"), MARK),
    (
        re.compile(
            r"""(["']?\b(?:pin|code|credential|enrolment_token|api_token|oauth_refresh_token)"""
            r"""["']?\s*[:=]\s*["']?)[^\s"',}]+""",
            re.IGNORECASE,
        ),
        r"\1" + MARK,
    ),
]


class Redactor:
    """Knows the secrets seen so far and scrubs them, and secret-shaped text, from strings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: list[str] = []

    def learn(self, *secrets: str | None) -> None:
        with self._lock:
            for secret in secrets:
                if secret and len(secret) >= MIN_SECRET_LENGTH and secret not in self._known:
                    self._known.append(secret)
            del self._known[:-MAX_KNOWN_SECRETS]

    def __call__(self, text: str) -> str:
        with self._lock:
            # Longest first, so a secret containing another is removed whole.
            known = sorted(self._known, key=len, reverse=True)
        for secret in known:
            if secret in text:
                text = text.replace(secret, MARK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text
