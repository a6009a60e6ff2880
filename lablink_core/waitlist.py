"""The waitlist: when every VM is taken, a researcher can queue instead of retrying by hand.

A queue entry holds what a request would (email, CRD code) and a ticket: a seat token the
researcher keeps, stored hashed, which becomes the seat token of the VM they get. The next
VM that becomes assignable (released, healed, newly launched, heard from again) goes to the
head of the queue: :meth:`Waitlist.dispatch` pairs the oldest entries with assignable VMs and
assigns them in one statement, under a transaction-scoped advisory lock so dispatchers never
run side by side (first in, first served: no skipped place, no VM twice, no researcher twice).
While anyone waits, a plain request does not claim a VM ahead of them (see the allocator).

An entry expires when its page (or API client) has not asked about it for
``waitlist.expire_seconds``: nobody is given a VM they are no longer there to use.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.exc import IntegrityError

from lablink_core.crd import parse_crd_command
from lablink_core.db import reconnecting
from lablink_core.errors import InvalidInput, LablinkError, NotFound, SeatTaken
from lablink_core.metrics import Metrics
from lablink_core.models import ASSIGNABLE_WHERE, checked_identifier
from lablink_core.seats import checked_token, hash_token, new_pin, new_seat_token
from lablink_core.validation import normalize_email

DISPATCH_LOCK_KEY = 1_281_969_743  # one more than the fleet lock's


class WaitlistFull(LablinkError):
    """The queue is as long as it may be."""

    code = "waitlist_full"


@dataclass(frozen=True)
class Ticket:
    """A place in the queue, or what became of it."""

    id: int
    email: str
    state: str  # waiting | assigned | expired | left
    position: int | None  # 1 = next; None unless waiting
    hostname: str | None = None
    pin: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "position": self.position}
        if self.state == "assigned":
            body |= {"hostname": self.hostname, "pin": self.pin}
        return body


class Waitlist:
    """The queue of one VM table."""

    def __init__(
        self,
        engine: Engine,
        table_name: str,
        *,
        silence_seconds: float = 120.0,
        expire_seconds: float = 120.0,
        max_length: int = 2000,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics or Metrics()
        self._vms = checked_identifier(table_name)
        self._table = f"{self._vms}_waitlist"
        self.silence_seconds = silence_seconds
        self.expire_seconds = expire_seconds
        self.max_length = max_length

    @reconnecting
    def join(self, email: object, crd_command: object) -> tuple[str, Ticket]:
        """Queue this researcher; returns their new ticket (keep it: it is shown once) and
        their place. Refused if the email holds a VM or waits already."""
        address = normalize_email(email)
        crd = parse_crd_command(crd_command)
        ticket = new_seat_token()
        try:
            row = self._insert(address, ticket, crd.code, crd.redirect_url)
        except IntegrityError as error:  # the same email joined at the same moment
            raise SeatTaken(f"{address} is already in the queue.", field="email") from error
        if row is None:
            raise WaitlistFull(f"The queue is full ({self.max_length} waiting); try later.")
        return ticket, self.status(ticket)

    def _insert(self, address: str, ticket: str, code: str, url: str) -> Row[Any] | None:
        with self._engine.begin() as connection:
            self._refuse_duplicates(connection, address)
            return connection.execute(
                text(
                    f"INSERT INTO {self._table} (email, ticket_hash, crd_code, crd_redirect_url) "
                    "SELECT :email, :hash, :code, :url "
                    f"WHERE (SELECT count(*) FROM {self._table} WHERE state = 'waiting') < :max "
                    "RETURNING id"
                ),
                {
                    "email": address,
                    "hash": hash_token(ticket),
                    "code": code,
                    "url": url,
                    "max": self.max_length,
                },
            ).first()

    def _refuse_duplicates(self, connection: Connection, email: str) -> None:
        held = connection.execute(
            text(f"SELECT 1 FROM {self._vms} WHERE user_email = :e"), {"e": email}
        ).first()
        if held is not None:
            raise SeatTaken(f"{email} already holds a VM.", field="email")
        waiting = connection.execute(
            text(f"SELECT 1 FROM {self._table} WHERE email = :e AND state = 'waiting'"),
            {"e": email},
        ).first()
        if waiting is not None:
            raise SeatTaken(
                f"{email} is already in the queue (from another page); wait there, or leave "
                "the queue there first.",
                field="email",
            )

    @reconnecting
    def status(self, ticket: object) -> Ticket:
        """Where this ticket stands; asking keeps a waiting entry alive."""
        token = checked_token(ticket)
        if token is None:
            raise InvalidInput("ticket is required", field="ticket")
        with self._engine.begin() as connection:
            row = connection.execute(
                text(
                    f"UPDATE {self._table} AS w SET last_seen_at = now() "
                    "WHERE ticket_hash = :hash RETURNING id, email, state, hostname, pin, "
                    f"(SELECT count(*) FROM {self._table} AS q WHERE q.state = 'waiting' "
                    "AND q.id <= w.id) AS position"
                ),
                {"hash": hash_token(token)},
            ).first()
        if row is None:
            raise NotFound("No such ticket: it may have expired.", field="ticket")
        position = int(row.position) if row.state == "waiting" else None
        return Ticket(int(row.id), row.email, row.state, position, row.hostname, row.pin)

    @reconnecting
    def touch(self, entry_ids: list[int]) -> None:
        """These entries' pages are open: keep them from expiring."""
        if not entry_ids:
            return
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"UPDATE {self._table} SET last_seen_at = now() "
                    "WHERE id = ANY(:ids) AND state = 'waiting'"
                ),
                {"ids": entry_ids},
            )

    @reconnecting
    def leave(self, ticket: object) -> None:
        token = checked_token(ticket)
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"UPDATE {self._table} SET state = 'left', ended_at = now() "
                    "WHERE ticket_hash = :hash AND state = 'waiting'"
                ),
                {"hash": hash_token(token or "")},
            )

    @reconnecting
    def length(self) -> int:
        with self._engine.connect() as connection:
            value = connection.execute(
                text(f"SELECT count(*) FROM {self._table} WHERE state = 'waiting'")
            ).scalar_one()
        return int(value)

    @reconnecting
    def waiting(self) -> list[dict[str, Any]]:
        """Who is waiting, in order (for admins): position, email, since, last seen."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, email, created_at, last_seen_at, "
                    "row_number() OVER (ORDER BY id) AS position "
                    f"FROM {self._table} WHERE state = 'waiting' ORDER BY id"
                )
            ).mappings()
            return [dict(row) for row in rows]

    @reconnecting
    def positions(self) -> dict[int, int]:
        """Every waiting entry's place, by entry id (one read for all open pages)."""
        return {int(entry["id"]): int(entry["position"]) for entry in self.waiting()}

    @reconnecting
    def expire(self, now: dt.datetime) -> int:
        """Drop entries nobody has asked about for ``expire_seconds``."""
        with self._engine.begin() as connection:
            result = connection.execute(
                text(
                    f"UPDATE {self._table} SET state = 'expired', ended_at = now() "
                    "WHERE state = 'waiting' AND last_seen_at < :cutoff"
                ),
                {"cutoff": now - dt.timedelta(seconds=self.expire_seconds)},
            )
        return int(result.rowcount)

    @reconnecting
    def dispatch(self, limit: int = 500) -> list[tuple[int, str]]:
        """Give assignable VMs to the head of the queue, in order; returns
        ``(entry id, hostname)`` of each assignment made."""
        pins = [new_pin() for _ in range(limit)]
        with self._engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DISPATCH_LOCK_KEY})
            rows = connection.execute(
                text(_DISPATCH.format(vms=self._vms, waitlist=self._table, free=ASSIGNABLE_WHERE)),
                {"limit": limit, "pins": pins, "silence": self.silence_seconds},
            ).all()
        if rows:
            self._metrics.assigned("waitlist", len(rows))
        return [(int(row.id), str(row.hostname)) for row in rows]


# Heads are locked in queue order; free VMs are those the claim would take, in its order.
# Entries whose email came to hold a VM meanwhile are not heads (and cannot be given one).
_DISPATCH = """
WITH heads AS (
    SELECT h.*, row_number() OVER (ORDER BY h.id) AS n FROM (
        SELECT w.id, w.email, w.ticket_hash, w.crd_code, w.crd_redirect_url
        FROM {waitlist} AS w
        WHERE w.state = 'waiting'
            AND NOT EXISTS (SELECT 1 FROM {vms} AS held WHERE held.user_email = w.email)
        ORDER BY w.id LIMIT :limit FOR UPDATE
    ) AS h
), free AS (
    SELECT f.hostname, row_number() OVER (ORDER BY f.waiting DESC, f.last_heard_at DESC) AS n
    FROM (
        SELECT hostname, waiting, last_heard_at FROM {vms}
        WHERE {free} AND last_heard_at > now() - make_interval(secs => :silence)
        ORDER BY waiting DESC, last_heard_at DESC LIMIT :limit FOR UPDATE SKIP LOCKED
    ) AS f
), pairs AS (
    SELECT heads.id, heads.email, heads.ticket_hash, heads.crd_code, heads.crd_redirect_url,
           free.hostname, (CAST(:pins AS text[]))[heads.n] AS pin
    FROM heads JOIN free ON free.n = heads.n
), assigned AS (
    UPDATE {vms} AS vm SET
        status = 'assigned', user_email = p.email, crd_code = p.crd_code,
        crd_redirect_url = p.crd_redirect_url, pin = p.pin, seat_token_hash = p.ticket_hash,
        generation = vm.generation + 1, assigned_at = now(), in_use = false,
        last_activity_at = NULL, extended_until = NULL, extensions_used = 0, status_reason = NULL
    FROM pairs AS p WHERE vm.hostname = p.hostname
    RETURNING vm.hostname
)
UPDATE {waitlist} AS w SET state = 'assigned', hostname = p.hostname, pin = p.pin,
    ended_at = now()
FROM pairs AS p WHERE w.id = p.id
RETURNING w.id, p.hostname
"""
