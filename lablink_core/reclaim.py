"""Session limits and idle reclaim: when a researcher's VM will be taken back, and why.

A VM reports activity: a remote desktop client connected, or the GPU busy above
``session.gpu_busy_percent`` (the report sets ``last_activity_at``). A session ends at the
earliest of: ``session.max_minutes`` after the assignment (plus one extension's minutes per
extension taken), ``session.idle_minutes`` after the last activity (or the assignment, or
the end of an extension), and the next scheduled teardown. The researcher's page warns
``session.warning_minutes`` before and offers ``session.extensions`` extensions (a teardown
cannot be extended). A reclaimed VM is released as if its researcher had released it
(``app.release_policy``), with the reason recorded and shown to both sides.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from lablink_core.config import SessionConfig
from lablink_core.errors import InvalidInput, NotFound
from lablink_core.models import checked_identifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReclaimPlan:
    """When a session will end, and why: ``kind`` is session, idle or teardown."""

    at: dt.datetime
    kind: str
    reason: str

    @property
    def extendable(self) -> bool:
        return self.kind != "teardown"

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "reason": self.reason}


def _minutes(value: float) -> str:
    return f"{value:g} min"


def reclaim_plan(
    vm: Mapping[str, Any],
    config: SessionConfig,
    teardown_at: dt.datetime | None = None,
) -> ReclaimPlan | None:
    """The end of ``vm``'s session (None if nothing will end it)."""
    assigned = vm.get("assigned_at")
    if assigned is None:
        return None
    extension = dt.timedelta(minutes=config.extension_minutes)
    plans = []
    if config.max_minutes > 0:
        limit = assigned + dt.timedelta(minutes=config.max_minutes)
        limit += extension * int(vm.get("extensions_used") or 0)
        reason = f"session limit ({_minutes(config.max_minutes)})"
        plans.append(ReclaimPlan(limit, "session", reason))
    if config.idle_minutes > 0:
        active = max(t for t in (assigned, vm.get("last_activity_at")) if t is not None)
        idle_end = active + dt.timedelta(minutes=config.idle_minutes)
        extended = vm.get("extended_until")
        if extended is not None and extended > idle_end:
            idle_end = extended
        plans.append(ReclaimPlan(idle_end, "idle", f"idle {_minutes(config.idle_minutes)}"))
    if teardown_at is not None:
        plans.append(ReclaimPlan(teardown_at, "teardown", "scheduled teardown"))
    return min(plans, key=lambda plan: plan.at, default=None)


@dataclass(frozen=True)
class HeldVM:
    """An assigned VM as its researcher's page shows it."""

    plan: ReclaimPlan | None
    status: str
    healing: str | None  # rebooting | replacing | None
    reason: str | None  # why the healer acts, or why it was taken back
    extensions_left: int


_ASSIGNED = "hostname, user_email, assigned_at, last_activity_at, extended_until, extensions_used"


class SessionClock:
    """Reads sessions' ends, extends them, and takes back VMs whose session is over."""

    def __init__(
        self,
        engine: Engine,
        table_name: str,
        config: SessionConfig,
        *,
        release: Callable[[str, str], bool],
        teardown_at: Callable[[dt.datetime], dt.datetime | None] = lambda now: None,
    ) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name)
        self.config = config
        # release(hostname, reason): the allocator's admin release, recording the reason.
        self._release = release
        self._teardown_at = teardown_at

    def plan_for(self, hostname: str, now: dt.datetime) -> ReclaimPlan | None:
        """When this VM's session ends (for its researcher's page)."""
        with self._engine.connect() as connection:
            row = (
                connection.execute(
                    text(f"SELECT {_ASSIGNED} FROM {self._table} WHERE hostname = :h"),
                    {"h": hostname},
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return reclaim_plan(dict(row), self.config, self._teardown_at(now))

    def held(self, now: dt.datetime) -> dict[str, HeldVM]:
        """Every assigned VM with the end of its session and what its researcher should
        know of it (one read for all the researcher pages of a process)."""
        teardown = self._teardown_at(now)
        with self._engine.connect() as connection:
            rows = (
                connection.execute(
                    text(
                        f"SELECT {_ASSIGNED}, status, healing, status_reason FROM {self._table} "
                        "WHERE user_email IS NOT NULL"
                    )
                )
                .mappings()
                .all()
            )
        held = {}
        for row in map(dict, rows):
            left = max(0, self.config.extensions - int(row["extensions_used"] or 0))
            plan = reclaim_plan(row, self.config, teardown)
            held[str(row["hostname"])] = HeldVM(
                plan, str(row["status"]), row["healing"], row["status_reason"], left
            )
        return held

    def extensions_left(self, hostname: str) -> int:
        with self._engine.connect() as connection:
            used = connection.execute(
                text(f"SELECT extensions_used FROM {self._table} WHERE hostname = :h"),
                {"h": hostname},
            ).scalar()
        return max(0, self.config.extensions - int(used or 0))

    def extend(self, hostname: str, now: dt.datetime) -> ReclaimPlan | None:
        """One more ``extension_minutes`` for this session; refused when none is left."""
        with self._engine.begin() as connection:
            row = connection.execute(
                text(
                    f"UPDATE {self._table} SET extensions_used = extensions_used + 1, "
                    "extended_until = :until WHERE hostname = :h AND user_email IS NOT NULL "
                    "AND extensions_used < :allowed RETURNING hostname"
                ),
                {
                    "h": hostname,
                    "until": now + dt.timedelta(minutes=self.config.extension_minutes),
                    "allowed": self.config.extensions,
                },
            ).first()
        if row is None:
            if self.plan_for(hostname, now) is None:
                raise NotFound(f"{hostname} is not assigned.", field="hostname")
            raise InvalidInput("This session cannot be extended any more.")
        return self.plan_for(hostname, now)

    def pass_once(self, now: dt.datetime) -> list[tuple[str, str]]:
        """Take back every VM whose idle time or session limit ran out; returns
        ``(hostname, reason)`` of those released. (Teardowns are the scheduler's.)"""
        if self.config.max_minutes <= 0 and self.config.idle_minutes <= 0:
            return []
        with self._engine.connect() as connection:
            rows = (
                connection.execute(
                    text(f"SELECT {_ASSIGNED} FROM {self._table} WHERE user_email IS NOT NULL")
                )
                .mappings()
                .all()
            )
        released = []
        for vm in map(dict, rows):
            plan = reclaim_plan(vm, self.config)
            if plan is not None and plan.at <= now and self._release(vm["hostname"], plan.reason):
                log.info("reclaimed %s from %s: %s", vm["hostname"], vm["user_email"], plan.reason)
                released.append((str(vm["hostname"]), plan.reason))
        return released
