"""Leases: a loop that must run in one process at a time (the healer, reclaims, schedules,
the waitlist's upkeep) runs where the lease is held. A lease is a row with an expiry, renewed
by its holder well before it expires; a holder that dies lets it expire, and another process
takes it over. No connection is held open for it (waiting VMs must not cost connections)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket

from sqlalchemy import Engine, text

from lablink_core.db import reconnecting


def holder_id() -> str:
    """This process, recognisably: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


_TAKE = text(
    """
    INSERT INTO lablink_leases AS lease (name, holder, expires_at, acquired_at)
    VALUES (:name, :holder, :expires, :now)
    ON CONFLICT (name) DO UPDATE SET
        holder = EXCLUDED.holder,
        expires_at = EXCLUDED.expires_at,
        acquired_at = CASE WHEN lease.holder = EXCLUDED.holder
                           THEN lease.acquired_at ELSE EXCLUDED.acquired_at END
    WHERE lease.holder = EXCLUDED.holder OR lease.expires_at < :now
    RETURNING holder
    """
)
_HELD_BY_ANOTHER = text(
    "SELECT 1 FROM lablink_leases WHERE name = :name AND holder <> :holder AND expires_at >= :now"
)
# A holder renews once this share of the TTL has passed: three chances before it expires.
RENEW_AFTER = 0.25


class Lease:
    """One named lease, as seen from one would-be holder.

    The loops ask for it on every pass (twice a second), but only a renewal that is due
    writes: every write is a commit PostgreSQL flushes to disk, and every process of every
    host asks. A process that does not hold it reads first and writes only when the lease
    is free or has expired, so one given up at shutdown is taken over on the next pass."""

    def __init__(self, engine: Engine, name: str, holder: str, *, ttl_seconds: float) -> None:
        self._engine = engine
        self.name = name
        self.holder = holder
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self._renewed_at: dt.datetime | None = None

    def acquire(self, now: dt.datetime) -> bool:
        """Take or renew the lease at ``now``; False while another live holder has it."""
        renewed = self._renewed_at
        if renewed is not None and renewed <= now < renewed + self.ttl * RENEW_AFTER:
            return True
        self._renewed_at = None
        if not self._take(now, holding=renewed is not None):
            return False
        self._renewed_at = now
        return True

    @reconnecting
    def _take(self, now: dt.datetime, *, holding: bool) -> bool:
        params = {"name": self.name, "holder": self.holder, "now": now}
        with self._engine.begin() as connection:
            if not holding and connection.execute(_HELD_BY_ANOTHER, params).first():
                return False
            row = connection.execute(_TAKE, {**params, "expires": now + self.ttl}).first()
        return row is not None

    @reconnecting
    def release(self) -> None:
        """Give the lease up (at shutdown), so another process need not wait for its expiry."""
        self._renewed_at = None
        with self._engine.begin() as connection:
            connection.execute(
                text("DELETE FROM lablink_leases WHERE name = :name AND holder = :holder"),
                {"name": self.name, "holder": self.holder},
            )

    @reconnecting
    def current_holder(self, now: dt.datetime) -> str | None:
        with self._engine.connect() as connection:
            value = connection.execute(
                text("SELECT holder FROM lablink_leases WHERE name = :name AND expires_at >= :now"),
                {"name": self.name, "now": now},
            ).scalar()
        return None if value is None else str(value)
