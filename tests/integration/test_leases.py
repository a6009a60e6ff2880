"""Leases on real PostgreSQL: one holder at a time, takeover after expiry or release, and
writes only when a renewal is due (every write is a commit flushed to disk)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from lablink_core.leases import Lease

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
TTL = 60.0


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def lease_row(engine: Engine) -> tuple[str, dt.datetime, str, str] | None:
    """The lease's holder, expiry and row versions (xmin changes on every write, xmax on a
    row lock too)."""
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT holder, expires_at, xmin::text, xmax::text FROM lablink_leases")
        ).first()
    return None if row is None else (row[0], row[1], row[2], row[3])


def test_one_holder_at_a_time_and_takeover_after_expiry(engine: Engine) -> None:
    first = Lease(engine, "sessions", "first", ttl_seconds=TTL)
    second = Lease(engine, "sessions", "second", ttl_seconds=TTL)

    assert first.acquire(at(0))
    assert not second.acquire(at(1))
    assert first.acquire(at(TTL / 4))  # renewed: expires at TTL * 1.25 now
    assert not second.acquire(at(TTL + 1))
    assert second.acquire(at(TTL * 1.25 + 1)), "an expired lease is taken over"
    assert not first.acquire(at(TTL * 1.25 + 2)), "the old holder learns it lost the lease"
    assert lease_row(engine) is not None and lease_row(engine)[0] == "second"  # type: ignore[index]


def test_a_holder_writes_only_when_its_renewal_is_due(engine: Engine) -> None:
    holder = Lease(engine, "healer", "holder", ttl_seconds=TTL)
    assert holder.acquire(at(0))
    written = lease_row(engine)

    for second in range(1, 15):  # passes every second for a quarter of the TTL
        assert holder.acquire(at(second))
    assert lease_row(engine) == written

    assert holder.acquire(at(TTL / 4))
    renewed = lease_row(engine)
    assert renewed is not None and written is not None
    assert renewed[1] == at(TTL / 4 + TTL) and renewed[2] != written[2]


def test_a_process_that_does_not_hold_the_lease_only_reads(engine: Engine) -> None:
    holder = Lease(engine, "healer", "holder", ttl_seconds=TTL)
    other = Lease(engine, "healer", "other", ttl_seconds=TTL)
    assert holder.acquire(at(0))
    before = lease_row(engine)

    for second in range(1, 10):
        assert not other.acquire(at(second))

    assert lease_row(engine) == before, "no write and no row lock by the one that waits"


def test_a_released_lease_is_taken_over_on_the_next_pass(engine: Engine) -> None:
    holder = Lease(engine, "sessions", "holder", ttl_seconds=TTL)
    other = Lease(engine, "sessions", "other", ttl_seconds=TTL)
    assert holder.acquire(at(0))
    assert not other.acquire(at(0.5))

    holder.release()

    assert other.acquire(at(1))
    assert not holder.acquire(at(1.5)), "a released holder asks the database again"


def test_a_clock_that_moves_back_makes_the_holder_ask_again(engine: Engine) -> None:
    holder = Lease(engine, "sessions", "holder", ttl_seconds=TTL)
    assert holder.acquire(at(100))
    with engine.begin() as connection:  # another process took it meanwhile
        connection.execute(text("UPDATE lablink_leases SET holder = 'thief'"))

    assert not holder.acquire(at(50))
