"""Assigning VMs to researchers, race-free.

A claim is one statement: ``UPDATE ... WHERE hostname = (SELECT ... FOR UPDATE SKIP LOCKED
LIMIT 1)``, so concurrent requests lock different free rows and never share one. A partial
unique index on ``user_email`` makes "one VM per email" a fact of the database.

Only a VM that can serve is claimed: free, not unhealthy, holding a valid credential, not
being healed, and alive (heard from within ``silence_seconds``: it polls, reports, or a
server process holding its long poll vouches for it). VMs waiting on ``/vm_startup`` right
now come first, then the most recently heard. The predicate is the one of the partial index
``ix_<table>_assignable`` (:data:`lablink_core.models.ASSIGNABLE_WHERE`).

A VM handed back under the ``reuse`` policy gets a new credential in the same statement, so
its previous user cannot use a copy of the old one to receive the next user's code; the VM
is told the new one in the answer to its waiting poll. A VM running the original LabLink
client cannot follow a rotation, so it serves one researcher and is recycled on release.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.exc import IntegrityError

from lablink_core.crd import CrdCommand, parse_crd_command
from lablink_core.credentials import VMCredentials
from lablink_core.db import reconnecting
from lablink_core.errors import InvalidInput, NotFound, NoVMAvailable, SeatTaken
from lablink_core.models import ASSIGNABLE_WHERE, checked_identifier
from lablink_core.validation import normalize_email, validate_hostname

SEAT_TAKEN_MESSAGE = (
    "{email} already holds a VM. Open the page from the browser you used before, "
    "or ask an admin to release it."
)


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


class Allocator:
    """Claims, renews and releases VMs for researchers. Thread-safe; owns no connection."""

    def __init__(
        self,
        engine: Engine,
        table_name: str,
        *,
        credentials: VMCredentials | None = None,
        release_policy: str = "reuse",
        silence_seconds: float = 120.0,
        pin_factory: Callable[[], str] = new_pin,
        token_factory: Callable[[], str] = new_seat_token,
    ) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name)
        self._reuse = release_policy == "reuse"
        # Without credentials (some tests), a released VM cannot be rotated, so it is recycled.
        self._credentials = credentials
        self.silence_seconds = silence_seconds
        self._new_pin = pin_factory
        self._new_token = token_factory

    @reconnecting
    def request_vm(
        self, email: object, crd_command: object, seat_token: str | None = None
    ) -> Assignment:
        """Assign a free VM to ``email``, or renew the CRD command of the VM it already holds.

        Raises InvalidInput, SeatTaken (the email holds a VM and the token does not match),
        or NoVMAvailable.
        """
        address = normalize_email(email)
        crd = parse_crd_command(crd_command)
        seat_token = _checked_token(seat_token)
        if seat_token:
            renewed = self._renew(address, crd, seat_token)
            if renewed is not None:
                return renewed
        try:
            claimed = self._claim(address, crd)
        except IntegrityError as error:
            # Another request for the same email won the race for the unique index.
            raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="email") from error
        if claimed is not None:
            return claimed
        if self.holder_of(address) is not None:
            raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="email")
        raise NoVMAvailable("No VM is free right now. Please try again in a minute.")

    def _claim(self, email: str, crd: CrdCommand) -> Assignment | None:
        token, pin = self._new_token(), self._new_pin()
        statement = text(
            f"""
            UPDATE {self._table} SET
                status = 'assigned', user_email = :email, crd_code = :code,
                crd_redirect_url = :url, pin = :pin, seat_token_hash = :token_hash,
                generation = generation + 1, assigned_at = now(), in_use = false,
                last_activity_at = NULL, extended_until = NULL, extensions_used = 0,
                status_reason = NULL
            WHERE hostname = (
                SELECT hostname FROM {self._table}
                WHERE {ASSIGNABLE_WHERE}
                    AND last_heard_at > now() - make_interval(secs => :silence)
                ORDER BY waiting DESC, last_heard_at DESC
                FOR UPDATE SKIP LOCKED
                LIMIT 1)
            RETURNING hostname, generation
            """
        )
        params: dict[str, object] = {
            "email": email,
            "code": crd.code,
            "url": crd.redirect_url,
            "pin": pin,
            "token_hash": hash_token(token),
            "silence": self.silence_seconds,
        }
        with self._engine.begin() as connection:
            row = connection.execute(statement, params).first()
        if row is None:
            return None
        return Assignment(row.hostname, email, pin, token, row.generation, crd)

    def _renew(self, email: str, crd: CrdCommand, seat_token: str) -> Assignment | None:
        """Deliver a fresh CRD command to the VM this seat holds. None if it holds none."""
        with self._engine.begin() as connection:
            row = self._lock_seat(connection, email)
            if row is None:
                return None
            if not _token_matches(seat_token, row.seat_token_hash):
                raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=email), field="seat_token")
            generation = connection.execute(
                text(
                    f"UPDATE {self._table} SET crd_code = :code, crd_redirect_url = :url, "
                    "generation = generation + 1 WHERE hostname = :hostname RETURNING generation"
                ),
                {"code": crd.code, "url": crd.redirect_url, "hostname": row.hostname},
            ).scalar_one()
        return Assignment(row.hostname, email, row.pin, seat_token, generation, crd, renewed=True)

    def _lock_seat(self, connection: Connection, email: str) -> Row[Any] | None:
        return connection.execute(
            text(
                f"SELECT hostname, pin, seat_token_hash FROM {self._table} "
                "WHERE user_email = :email FOR UPDATE"
            ),
            {"email": email},
        ).first()

    def _seat_row(self, email: object) -> Row[Any] | None:
        address = normalize_email(email)
        with self._engine.connect() as connection:
            return connection.execute(
                text(f"SELECT hostname, seat_token_hash FROM {self._table} WHERE user_email = :e"),
                {"e": address},
            ).first()

    @reconnecting
    def holder_of(self, email: object) -> str | None:
        """The hostname that ``email`` holds, or None."""
        row = self._seat_row(email)
        return None if row is None else str(row.hostname)

    @reconnecting
    def seat(self, email: object, seat_token: str) -> str | None:
        """The hostname held by this email and token (for a returning browser), or None."""
        row = self._seat_row(email)
        if row is None or not _token_matches(seat_token, row.seat_token_hash):
            return None
        return str(row.hostname)

    @reconnecting
    def release(self, email: object, seat_token: str) -> str:
        """The researcher gives their VM back. Returns the hostname released."""
        address = normalize_email(email)
        with self._engine.begin() as connection:
            row = self._lock_seat(connection, address)
            if row is None:
                raise NotFound(f"{address} holds no VM.", field="email")
            if not _token_matches(seat_token, row.seat_token_hash):
                raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="seat_token")
            self._free(connection, str(row.hostname))
        return str(row.hostname)

    @reconnecting
    def release_hostname(self, hostname: object) -> None:
        """An admin frees a VM, whoever holds it."""
        name = validate_hostname(hostname)
        with self._engine.begin() as connection:
            if not self._free(connection, name):
                raise NotFound(f"No VM named {name} is assigned.", field="hostname")

    def _free(self, connection: Connection, hostname: str, reason: str | None = None) -> bool:
        """Take the VM back from its researcher: available again with a new credential
        (reuse), or recycling (the recycle policy, and VMs of the original client)."""
        rotate = self._reuse and self._credentials is not None
        issued = self._credentials.issue(hostname) if self._credentials is not None else None
        result = connection.execute(
            text(
                f"""
                UPDATE {self._table} SET
                    status = CASE WHEN :rotate AND client_kind = 'lablink'
                                  THEN 'available' ELSE 'recycling' END,
                    credential_salt = CASE WHEN :rotate AND client_kind = 'lablink'
                                           THEN :salt ELSE credential_salt END,
                    credential_hash = CASE WHEN :rotate AND client_kind = 'lablink'
                                           THEN :hash ELSE credential_hash END,
                    user_email = NULL, crd_code = NULL,
                    crd_redirect_url = NULL, pin = NULL, seat_token_hash = NULL,
                    in_use = false, assigned_at = NULL, generation = generation + 1,
                    extended_until = NULL, extensions_used = 0, status_reason = :reason
                WHERE hostname = :hostname AND user_email IS NOT NULL
                """
            ),
            {
                "rotate": rotate,
                "salt": issued.salt if issued else None,
                "hash": issued.hash if issued else None,
                "hostname": hostname,
                "reason": reason,
            },
        )
        return result.rowcount == 1

    @reconnecting
    def free_count(self) -> int:
        """VMs a request could get right now (the claim's own predicate)."""
        return self.pool_counts()["free"]

    @reconnecting
    def pool_counts(self) -> dict[str, int]:
        """``free``: assignable now; ``silent``: otherwise free, but not heard from lately
        (they rejoin the pool when they speak again); ``unhealthy``: free but unhealthy."""
        with self._engine.connect() as connection:
            row = connection.execute(
                text(
                    f"""
                    SELECT
                        count(*) FILTER (WHERE {ASSIGNABLE_WHERE} AND last_heard_at
                            > now() - make_interval(secs => :silence)) AS free,
                        count(*) FILTER (WHERE {ASSIGNABLE_WHERE} AND (last_heard_at IS NULL
                            OR last_heard_at <= now() - make_interval(secs => :silence)))
                            AS silent,
                        count(*) FILTER (WHERE status = 'available' AND user_email IS NULL
                            AND health_state = 'unhealthy') AS unhealthy
                    FROM {self._table}
                    """
                ),
                {"silence": self.silence_seconds},
            ).one()
        return {"free": int(row.free), "silent": int(row.silent), "unhealthy": int(row.unhealthy)}


_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _checked_token(token: object) -> str | None:
    if token is None or token == "":
        return None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidInput(
            "seat token is malformed; use the one you were given", field="seat_token"
        )
    return token


def _token_matches(token: str | None, stored_hash: object) -> bool:
    token = _checked_token(token)
    if not token or not isinstance(stored_hash, str):
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)
