"""A researcher's first claim, on the event loop: the server's hot path.

:meth:`lablink_core.allocation.Allocator.request_vm` does the same from a thread; this path
skips the thread hops and SQLAlchemy's execute path (see :mod:`lablink_core.async_db`). A
renewal (the researcher shows a seat token) needs a transaction, so it stays on the thread
path.
"""

from __future__ import annotations

import psycopg2.errors

from lablink_core.allocation import Allocator
from lablink_core.async_db import AsyncStatements
from lablink_core.claim import NO_VM_MESSAGE, SEAT_TAKEN_MESSAGE
from lablink_core.crd import parse_crd_command
from lablink_core.errors import NoVMAvailable, SeatTaken
from lablink_core.seats import Assignment
from lablink_core.validation import normalize_email


class AsyncClaims:
    """Claims of ``allocator``'s table run through ``statements``."""

    def __init__(self, allocator: Allocator, statements: AsyncStatements) -> None:
        self._allocator = allocator
        self._statements = statements

    async def request_vm(self, email: object, crd_command: object) -> Assignment:
        """Assign a free VM to ``email``. Raises InvalidInput, SeatTaken (the email holds a
        VM already) or NoVMAvailable."""
        address = normalize_email(email)
        claim = self._allocator.prepare_claim(address, parse_crd_command(crd_command))
        claims = self._allocator.claims
        try:
            row = await self._statements.fetch_one(claims.statement_pyformat, claim.params)
        except psycopg2.errors.UniqueViolation as error:
            # Another request for the same email won the race for the unique index.
            raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="email") from error
        if row is not None:
            self._allocator.metrics.assigned("new")
            return claim.assignment(str(row[0]), int(row[1]))
        if await self._statements.fetch_one(claims.holder_pyformat, {"email": address}):
            raise SeatTaken(SEAT_TAKEN_MESSAGE.format(email=address), field="email")
        raise NoVMAvailable(NO_VM_MESSAGE)
