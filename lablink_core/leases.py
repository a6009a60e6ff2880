"""Leases: a loop that must run in one process at a time (the healer, reclaims, schedules,
the waitlist's upkeep) runs where the lease is held. A lease is a row with an expiry, renewed
by its holder on every pass; a holder that dies lets it expire, and another process takes
it over. No connection is held open for it (waiting VMs must not cost connections)."""

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


class Lease:
    """One named lease, as seen from one would-be holder."""

    def __init__(self, engine: Engine, name: str, holder: str, *, ttl_seconds: float) -> None:
        self._engine = engine
        self.name = name
        self.holder = holder
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    @reconnecting
    def acquire(self, now: dt.datetime) -> bool:
        """Take or renew the lease at ``now``; False while another live holder has it."""
        with self._engine.begin() as connection:
            row = connection.execute(
                text(
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
                ),
                {"name": self.name, "holder": self.holder, "expires": now + self.ttl, "now": now},
            ).first()
        return row is not None

    @reconnecting
    def release(self) -> None:
        """Give the lease up (at shutdown), so another process need not wait for its expiry."""
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
