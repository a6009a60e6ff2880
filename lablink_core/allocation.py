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

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.exc import IntegrityError

from lablink_core.claim import NO_VM_MESSAGE, SEAT_TAKEN_MESSAGE, ClaimStatement, PreparedClaim
from lablink_core.crd import CrdCommand, parse_crd_command
from lablink_core.credentials import VMCredentials
from lablink_core.db import reconnecting, single_statement
from lablink_core.errors import NotFound, NoVMAvailable, SeatTaken
from lablink_core.metrics import Metrics
from lablink_core.models import ASSIGNABLE_WHERE, checked_identifier
from lablink_core.seats import (
    Assignment,
    checked_token,
    hash_token,
    new_pin,
    new_seat_token,
    token_matches,
)
from lablink_core.validation import normalize_email, validate_hostname
from lablink_core.vm_actions import ActionLog

__all__ = ["ADMIN_RELEASE", "RESEARCHER_RELEASE", "Allocator", "Assignment", "hash_token"]

RESEARCHER_RELEASE = "released by the researcher"
ADMIN_RELEASE = "released by an admin"


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
        actions: ActionLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics or Metrics()
        self._actions = actions
        self._table = checked_identifier(table_name)
        self.claims = ClaimStatement(table_name)
        self._reuse = release_policy == "reuse"
        # Without credentials (some tests), a released VM cannot be rotated, so it is recycled.
        self._credentials = credentials
        self.silence_seconds = silence_seconds
        self._new_pin = pin_factory
        self._new_token = token_factory

    @property
    def metrics(self) -> Metrics:
        return self._metrics

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
        seat_token = checked_token(seat_token)
        if seat_token:
            renewed = self._renew(address, crd, seat_token)
            if renewed is not None:
                self._metrics.assigned("renewal")
                return renewed
        try:
            claimed = self._claim(address, crd)
        except IntegrityError as error:
            # Another request for the same email won the race for the unique index.
            raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="email") from error
        if claimed is not None:
            self._metrics.assigned("new")
            return claimed
        if self.holder_of(address) is not None:
            raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="email")
        raise NoVMAvailable(NO_VM_MESSAGE)

    def prepare_claim(self, email: str, crd: CrdCommand) -> PreparedClaim:
        """A claim's parameters, with a new PIN and seat token."""
        return self.claims.prepare(
            email,
            crd,
            pin=self._new_pin(),
            seat_token=self._new_token(),
            silence_seconds=self.silence_seconds,
        )

    def _claim(self, email: str, crd: CrdCommand) -> Assignment | None:
        claim = self.prepare_claim(email, crd)
        # One statement picks, locks and assigns the VM: atomic without a transaction block.
        with single_statement(self._engine) as connection:
            row = connection.execute(self.claims.statement, claim.params).first()
        return None if row is None else claim.assignment(row.hostname, row.generation)

    def _renew(self, email: str, crd: CrdCommand, seat_token: str) -> Assignment | None:
        """Deliver a fresh CRD command to the VM this seat holds. None if it holds none."""
        with self._engine.begin() as connection:
            row = self._lock_seat(connection, email)
            if row is None:
                return None
            if not token_matches(seat_token, row.seat_token_hash):
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
        with single_statement(self._engine) as connection:
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
        if row is None or not token_matches(seat_token, row.seat_token_hash):
            return None
        return str(row.hostname)

    @reconnecting
    def seat_by_token(self, seat_token: str) -> tuple[str, str] | None:
        """``(email, hostname)`` of the seat this token proves (a browser that has only the
        cookie /request_vm set), or None."""
        token = checked_token(seat_token)
        if token is None:
            return None
        with single_statement(self._engine) as connection:
            row = connection.execute(
                text(
                    f"SELECT user_email, hostname FROM {self._table} "
                    "WHERE seat_token_hash = :hash AND user_email IS NOT NULL"
                ),
                {"hash": hash_token(token)},
            ).first()
        return None if row is None else (str(row.user_email), str(row.hostname))

    @reconnecting
    def release(self, email: object, seat_token: str) -> str:
        """The researcher gives their VM back. Returns the hostname released."""
        address = normalize_email(email)
        with self._engine.begin() as connection:
            row = self._lock_seat(connection, address)
            if row is None:
                raise NotFound(f"{address} holds no VM.", field="email")
            if not token_matches(seat_token, row.seat_token_hash):
                raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="seat_token")
            hostname = str(row.hostname)
            self._free(connection, hostname, RESEARCHER_RELEASE)
            self._record(connection, hostname, address, RESEARCHER_RELEASE, "researcher")
        return hostname

    @reconnecting
    def release_hostname(self, hostname: object, *, reason: str = ADMIN_RELEASE) -> None:
        """An admin frees a VM, whoever holds it."""
        name = validate_hostname(hostname)
        if not self.take_back(name, reason, actor="admin"):
            raise NotFound(f"No VM named {name} is assigned.", field="hostname")

    @reconnecting
    def take_back(self, hostname: str, reason: str, *, actor: str = "reclaim") -> bool:
        """Free a VM from its researcher, recording why; False if nobody held it."""
        with self._engine.begin() as connection:
            email = connection.execute(
                text(f"SELECT user_email FROM {self._table} WHERE hostname = :h FOR UPDATE"),
                {"h": hostname},
            ).scalar()
            if email is None or not self._free(connection, hostname, reason):
                return False
            self._record(connection, hostname, str(email), reason, actor)
        return True

    def _record(
        self, connection: Connection, hostname: str, email: str, reason: str, actor: str
    ) -> None:
        if self._actions is not None:
            self._actions.record_in(
                connection, hostname, "release", reason, actor=actor, email=email
            )

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
                    previous_credential_hash = CASE WHEN :rotate AND client_kind = 'lablink'
                                           THEN credential_hash
                                           ELSE previous_credential_hash END,
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
        with single_statement(self._engine) as connection:
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
