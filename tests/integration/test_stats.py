"""The admin overview's numbers, from real PostgreSQL and the trigger's event history."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from lablink_core import stats
from lablink_core.allocation import Allocator
from lablink_core.enrolment import VMEnrolment
from lablink_core.vms import VMRegistry
from tests.integration.test_allocation import CRD, crd
from tests.support.vms import bring_online, poll

TABLE = "vms"


def test_status_counts(
    engine: Engine, registry: VMRegistry, enrolment: VMEnrolment, allocator: Allocator
) -> None:
    for name in ("vm-1", "vm-2", "vm-3"):
        bring_online(enrolment, registry, name)
    registry.add_booting(["vm-4"], provider="local")
    allocator.request_vm("ada@example.org", CRD)
    assert stats.status_counts(engine, TABLE) == {"assigned": 1, "available": 2, "booting": 1}


def test_assignments_per_minute_skips_renewals(
    engine: Engine, registry: VMRegistry, enrolment: VMEnrolment, allocator: Allocator
) -> None:
    for name in ("vm-1", "vm-2"):
        bring_online(enrolment, registry, name)
    first = allocator.request_vm("ada@example.org", CRD)
    allocator.request_vm("ada@example.org", crd("4/renewed"), first.seat_token)  # a renewal
    allocator.request_vm("grace@example.org", CRD)
    allocator.release("ada@example.org", first.seat_token)
    # The VM picks up its rotated credential; then it is assigned again.
    poll(registry, first.hostname, enrolment.current([first.hostname])[first.hostname])
    allocator.request_vm("alan@example.org", CRD)
    with engine.connect() as connection:
        raw = connection.execute(
            text("SELECT count(*) FROM vms_events WHERE kind = 'assigned'")
        ).scalar_one()
    assert raw == 4  # the trigger records the renewal as 'assigned' too
    minutes = stats.assignments_per_minute(engine, TABLE)
    assert sum(n for _, n in minutes) == 3
    assert all(m.second == 0 and m.microsecond == 0 for m, _ in minutes)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert stats.assignments_per_minute(engine, TABLE, since=future) == []


def test_startup_seconds_counts_only_fleet_launched_vms(
    engine: Engine, registry: VMRegistry, enrolment: VMEnrolment
) -> None:
    bring_online(enrolment, registry, "vm-manual")
    registry.add_booting(["vm-fleet"], provider="local")
    with engine.begin() as connection:  # launched 42 s ago
        connection.execute(
            text("UPDATE vms SET created_at = now() - interval '42 seconds' WHERE hostname = :h"),
            {"h": "vm-fleet"},
        )
    assert stats.startup_seconds(engine, TABLE) == []  # still booting
    bring_online(enrolment, registry, "vm-fleet", provider="local")
    (seconds,) = stats.startup_seconds(engine, TABLE)
    assert 41.0 <= seconds <= 60.0
