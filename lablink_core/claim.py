"""The claim: one statement that picks, locks and assigns the best free VM.

Concurrent claims lock different free rows (``FOR UPDATE SKIP LOCKED``) and never share one;
a partial unique index on ``user_email`` makes "one VM per email" a fact of the database.
Both the thread-pool path (:class:`lablink_core.allocation.Allocator`) and the event-loop
path (:class:`lablink_core.async_claim.AsyncClaims`) run this one SQL source.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import TextClause, text

from lablink_core.async_db import pyformat
from lablink_core.crd import CrdCommand
from lablink_core.models import ASSIGNABLE_WHERE, checked_identifier
from lablink_core.seats import Assignment, hash_token

NO_VM_MESSAGE = "No VM is free right now. Join the queue, or try again in a minute."
SEAT_TAKEN_MESSAGE = (
    "{email} already holds a VM. Open the page from the browser you used before, "
    "or ask an admin to release it."
)

# VMs waiting on a long poll now come first, then the most recently heard. Nobody jumps the
# queue: while researchers wait, VMs go to them (the waitlist).
_CLAIM = """
UPDATE {table} SET
    status = 'assigned', user_email = :email, crd_code = :code,
    crd_redirect_url = :url, pin = :pin, seat_token_hash = :token_hash,
    generation = generation + 1, assigned_at = now(), in_use = false,
    last_activity_at = NULL, extended_until = NULL, extensions_used = 0,
    status_reason = NULL
WHERE hostname = (
    SELECT hostname FROM {table}
    WHERE {free} AND last_heard_at > now() - make_interval(secs => :silence)
    ORDER BY waiting DESC, last_heard_at DESC
    FOR UPDATE SKIP LOCKED
    LIMIT 1)
AND NOT EXISTS (SELECT 1 FROM {table}_waitlist WHERE state = 'waiting')
RETURNING hostname, generation
"""


@dataclass(frozen=True)
class PreparedClaim:
    """One claim's parameters, and the secrets the researcher is told if it succeeds."""

    email: str
    crd: CrdCommand
    pin: str
    seat_token: str
    params: dict[str, object]

    def assignment(self, hostname: str, generation: int) -> Assignment:
        return Assignment(hostname, self.email, self.pin, self.seat_token, generation, self.crd)


class ClaimStatement:
    """The claim and the seat lookup for one VM table, built once (a ``text()`` construct
    parses its parameters, a cost on every claim)."""

    def __init__(self, table_name: str) -> None:
        table = checked_identifier(table_name)
        self.statement: TextClause = text(_CLAIM.format(table=table, free=ASSIGNABLE_WHERE))
        holder = f"SELECT hostname FROM {table} WHERE user_email = :email"  # noqa: S608 (checked)
        self.holder: TextClause = text(holder)
        self.statement_pyformat = pyformat(self.statement)
        self.holder_pyformat = pyformat(self.holder)

    @staticmethod
    def prepare(
        email: str, crd: CrdCommand, *, pin: str, seat_token: str, silence_seconds: float
    ) -> PreparedClaim:
        params: dict[str, object] = {
            "email": email,
            "code": crd.code,
            "url": crd.redirect_url,
            "pin": pin,
            "token_hash": hash_token(seat_token),
            "silence": silence_seconds,
        }
        return PreparedClaim(email, crd, pin, seat_token, params)
