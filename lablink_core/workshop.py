"""Assembling the loops of a workshop's day for one process: the healer, and the session
upkeep (idle and overdue sessions reclaimed, scheduled teardowns, expired queue entries),
each under a lease of its own so a long Terraform replacement never holds up a teardown."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lablink_core.healing import Healer
from lablink_core.leases import Lease, holder_id
from lablink_core.maintenance import Clock, Maintenance, Step, utc_clock
from lablink_core.schedules import TeardownRunner

if TYPE_CHECKING:
    from lablink_core.fleet import Fleet
    from lablink_core.services import Services

log = logging.getLogger(__name__)


def _teardown(services: Services, fleet: Fleet | None) -> TeardownRunner:
    def destroy(reason: str) -> object:
        if fleet is None:
            raise RuntimeError("this server has no fleet to tear down")
        for vm in fleet.vms():  # their researchers are told why their VM went
            if vm["user_email"]:
                services.actions.record(
                    vm["hostname"], "teardown", reason, actor="schedule", email=vm["user_email"]
                )
        return fleet.destroy_all(force=True, reason=reason, actor="schedule")

    return TeardownRunner(services.schedules, destroy)


def build_maintenance(
    services: Services,
    fleet: Fleet | None,
    *,
    clock: Clock = utc_clock,
    holder: str | None = None,
) -> list[Maintenance]:
    """The maintenance loops of this process (not started)."""
    config = services.config
    holder = holder or holder_id()
    table = config.db.table_name
    loops = []
    if config.health.enabled:
        healer = Healer(
            services.engine, table, fleet, services.actions, config.health, services.metrics
        )
        period = config.health.interval_seconds
        lease = Lease(services.engine, "healer", holder, ttl_seconds=max(60.0, 6 * period))
        steps = [Step("heal", period, healer.pass_once)]
        loops.append(Maintenance(lease, steps, clock=clock, tick=min(1.0, period / 2)))
    waitlist = services.waitlist
    idle = config.session.idle_minutes * 60 or config.session.max_minutes * 60
    reclaim_period = max(0.5, min(5.0, idle / 4)) if idle else 5.0
    sessions = [
        Step("reclaim", reclaim_period, services.sessions.pass_once),
        Step("teardown", 2.0, _teardown(services, fleet).pass_once),
        Step("waitlist", 2.0, waitlist.expire),
    ]
    lease = Lease(services.engine, "sessions", holder, ttl_seconds=60.0)
    loops.append(Maintenance(lease, sessions, clock=clock, tick=0.5))
    return loops
