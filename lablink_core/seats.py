"""Seats: what a researcher is given with a VM (its PIN and a seat token that proves the
seat later), and how tokens are made and checked (stored only hashed)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from lablink_core.crd import CrdCommand
from lablink_core.errors import InvalidInput


@dataclass(frozen=True)
class Assignment:
    """What a researcher is told: which VM, its PIN, and the token that proves the seat."""

    hostname: str
    email: str
    pin: str
    seat_token: str
    generation: int
    crd: CrdCommand
    renewed: bool = False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_pin() -> str:
    """Six random digits: what Chrome Remote Desktop asks for, never a constant."""
    return f"{secrets.randbelow(10**6):06d}"


def new_seat_token() -> str:
    return secrets.token_urlsafe(24)


_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def checked_token(token: object) -> str | None:
    if token is None or token == "":
        return None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidInput(
            "seat token is malformed; use the one you were given", field="seat_token"
        )
    return token


def token_matches(token: str | None, stored_hash: object) -> bool:
    token = checked_token(token)
    if not token or not isinstance(stored_hash, str):
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)
