"""A VM's own log and boot output, kept for its admin: the last lines per VM, in
``<table>_logs``, so a VM that fails to boot or connect says why without an SSH session.

Lines are redacted on the way in, whatever the client did already: the VM's credential (the
one it called with), its current PIN and CRD code, anything shaped like a credential,
enrolment token or OAuth code, and ``--code=``/``--pin=`` arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, text

from lablink_core.db import reconnecting
from lablink_core.errors import InvalidInput
from lablink_core.models import checked_identifier
from lablink_core.validation import validate_hostname

KEPT_PER_VM = 500
MAX_LINES_PER_CALL = 200
MAX_LINE_LENGTH = 2000
SOURCES = ("agent", "boot", "crd")
REDACTED = "[redacted]"
_PATTERNS = (
    re.compile(r"lv[me][12]\.[A-Za-z0-9_-]+"),  # credentials and enrolment tokens
    re.compile(r"4/0[A-Za-z0-9_-]{6,}"),  # Google OAuth codes
    re.compile(r"(--(?:code|pin)[= ])\S+"),
    re.compile(r"(?i)(bearer\s+)\S+"),
)


def redact(line: str, secrets: Iterable[str]) -> str:
    """``line`` with every secret and secret-shaped token replaced."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        line = line.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        line = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, line)
    return line


def parse_lines(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The ``source`` and ``lines`` of a POST /api/vm/logs body, checked."""
    source = body.get("source")
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}", field="source")
    lines = body.get("lines")
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise InvalidInput("lines must be a list of text lines", field="lines")
    if len(lines) > MAX_LINES_PER_CALL:
        raise InvalidInput(f"send at most {MAX_LINES_PER_CALL} lines at a time", field="lines")
    cleaned = [
        "".join(ch if ch.isprintable() or ch == "\t" else "?" for ch in line)[:MAX_LINE_LENGTH]
        for line in lines
    ]
    return str(source), cleaned


class VMLogStore:
    """Appends to and reads one VM table's log ring."""

    def __init__(self, engine: Engine, table_name: str) -> None:
        self._engine = engine
        self._vms = checked_identifier(table_name)
        self._table = f"{self._vms}_logs"

    @reconnecting
    def append(
        self, hostname: object, proof: str, credential: str, source: str, lines: Sequence[str]
    ) -> bool:
        """Store a VM's lines (redacted); False if hostname and credential match no VM."""
        name = validate_hostname(hostname)
        with self._engine.begin() as connection:
            row = connection.execute(
                text(
                    f"SELECT pin, crd_code FROM {self._vms} "
                    "WHERE hostname = :h AND credential_hash = :proof"
                ),
                {"h": name, "proof": proof},
            ).first()
            if row is None:
                return False
            secrets = [credential, row.pin or "", row.crd_code or ""]
            entries = [{"h": name, "s": source, "l": redact(line, secrets)} for line in lines]
            if entries:
                connection.execute(
                    text(f"INSERT INTO {self._table} (hostname, source, line) VALUES (:h, :s, :l)"),
                    entries,
                )
                self._trim(connection, name)
        return True

    def _trim(self, connection: Any, hostname: str) -> None:
        connection.execute(
            text(
                f"DELETE FROM {self._table} WHERE hostname = :h AND id < ("
                f"SELECT min(id) FROM (SELECT id FROM {self._table} WHERE hostname = :h "
                "ORDER BY id DESC LIMIT :keep) AS kept)"
            ),
            {"h": hostname, "keep": KEPT_PER_VM},
        )

    @reconnecting
    def tail(self, hostname: object, limit: int = KEPT_PER_VM) -> list[dict[str, Any]]:
        """The VM's last lines, oldest first."""
        name = validate_hostname(hostname)
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    f"SELECT id, source, line, at FROM (SELECT * FROM {self._table} "
                    "WHERE hostname = :h ORDER BY id DESC LIMIT :n) AS last ORDER BY id"
                ),
                {"h": name, "n": max(1, min(limit, KEPT_PER_VM))},
            ).mappings()
            return [dict(row) for row in rows]
