"""Scheduled teardown of the fleet: once at a moment, or daily at a local time in a time zone.

Schedules live in ``lablink_schedules`` and survive restarts. A due run is claimed by one
``UPDATE ... WHERE next_run_at = <the due time>``: of two processes that see it due, one
wins, so a run happens exactly once (the maintenance lease already keeps the passes in one
process; the claim makes it so even if two ever overlapped). A run destroys every VM of the
fleet, assigned ones too: their researchers have been warned 15 and 5 minutes before.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, text

from lablink_core.errors import InvalidInput, NotFound, OperationInProgress

log = logging.getLogger(__name__)
WARNINGS = (dt.timedelta(minutes=15), dt.timedelta(minutes=5))
_COLUMNS = (
    "id, action, kind, run_at, time_of_day, timezone, next_run_at, last_run_at, last_outcome, "
    "enabled, created_by, created_at"
)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidInput(f"unknown time zone {name!r}", field="timezone") from error


def next_daily(time_of_day: dt.time, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first moment strictly after ``after`` when the clock in ``timezone`` shows
    ``time_of_day`` (a time skipped by a DST change runs at the shifted wall time)."""
    tz = zone(timezone)
    local = after.astimezone(tz)
    candidate = dt.datetime.combine(local.date(), time_of_day, tzinfo=tz)
    while candidate <= after:
        candidate = dt.datetime.combine(
            candidate.date() + dt.timedelta(days=1), time_of_day, tzinfo=tz
        )
    return candidate.astimezone(dt.UTC)


@dataclass(frozen=True)
class Teardown:
    """The next scheduled teardown: when, and which schedule."""

    at: dt.datetime
    schedule_id: int

    def warning(self, now: dt.datetime) -> str | None:
        """ "15 minutes" or "5 minutes" once inside that warning window, else None."""
        left = self.at - now
        for window in sorted(WARNINGS):
            if dt.timedelta(0) <= left <= window:
                return f"{int(window.total_seconds() // 60)} minutes"
        return None


class ScheduleStore:
    """Creates, lists and removes teardown schedules."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_once(self, at: dt.datetime, *, now: dt.datetime, by: str | None = None) -> int:
        if at.tzinfo is None:
            raise InvalidInput("the time needs a time zone", field="at")
        if at <= now:
            raise InvalidInput("the teardown time is in the past", field="at")
        return self._insert("once", {"run_at": at, "next_run_at": at, "by": by})

    def add_daily(
        self, time_of_day: dt.time, timezone: str, *, now: dt.datetime, by: str | None = None
    ) -> int:
        first = next_daily(time_of_day, timezone, now)
        params = {"time_of_day": time_of_day, "timezone": timezone, "next_run_at": first}
        return self._insert("daily", {**params, "by": by})

    def _insert(self, kind: str, values: dict[str, Any]) -> int:
        params = {"run_at": None, "time_of_day": None, "timezone": "UTC", **values, "kind": kind}
        with self._engine.begin() as connection:
            value = connection.execute(
                text(
                    "INSERT INTO lablink_schedules "
                    "(kind, run_at, time_of_day, timezone, next_run_at, created_by) "
                    "VALUES (:kind, :run_at, :time_of_day, :timezone, :next_run_at, :by) "
                    "RETURNING id"
                ),
                params,
            ).scalar_one()
        return int(value)

    def list(self) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(f"SELECT {_COLUMNS} FROM lablink_schedules ORDER BY id")
            ).mappings()
            return [dict(row) for row in rows]

    def remove(self, schedule_id: int) -> None:
        with self._engine.begin() as connection:
            result = connection.execute(
                text("DELETE FROM lablink_schedules WHERE id = :id"), {"id": schedule_id}
            )
        if result.rowcount == 0:
            raise NotFound(f"No schedule #{schedule_id}.", field="id")

    def next_teardown(self, now: dt.datetime) -> Teardown | None:
        """The earliest enabled teardown still to come (or due and not yet run)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT id, next_run_at FROM lablink_schedules WHERE enabled "
                    "AND next_run_at IS NOT NULL ORDER BY next_run_at LIMIT 1"
                )
            ).first()
        return None if row is None else Teardown(row.next_run_at, int(row.id))

    def claim_due(self, now: dt.datetime) -> dict[str, Any] | None:
        """Take one due run: move its schedule on (or switch a one-off off) in the same
        statement that checks it is still due, so only one caller gets it."""
        with self._engine.begin() as connection:
            due = (
                connection.execute(
                    text(
                        f"SELECT {_COLUMNS} FROM lablink_schedules WHERE enabled "
                        "AND next_run_at <= :now ORDER BY next_run_at LIMIT 1 "
                        "FOR UPDATE SKIP LOCKED"
                    ),
                    {"now": now},
                )
                .mappings()
                .first()
            )
            if due is None:
                return None
            following = None
            if due["kind"] == "daily":
                following = next_daily(due["time_of_day"], due["timezone"], now)
            connection.execute(
                text(
                    "UPDATE lablink_schedules SET last_run_at = next_run_at, "
                    "next_run_at = :following, enabled = :enabled WHERE id = :id"
                ),
                {"id": due["id"], "following": following, "enabled": following is not None},
            )
        return dict(due)

    def give_back(self, claimed: dict[str, Any]) -> None:
        """Undo a claim whose run could not start (another fleet operation was running)."""
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE lablink_schedules SET next_run_at = :due, enabled = true, "
                    "last_run_at = :last WHERE id = :id"
                ),
                {
                    "id": claimed["id"],
                    "due": claimed["next_run_at"],
                    "last": claimed["last_run_at"],
                },
            )

    def finish(self, schedule_id: int, outcome: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                text("UPDATE lablink_schedules SET last_outcome = :o WHERE id = :id"),
                {"id": schedule_id, "o": outcome[:1000]},
            )


class TeardownRunner:
    """Runs due teardowns: ``destroy(reason)`` is the fleet's destroy-all, forced."""

    def __init__(self, store: ScheduleStore, destroy: Callable[[str], object]) -> None:
        self._store = store
        self._destroy = destroy

    def pass_once(self, now: dt.datetime) -> list[int]:
        """Run what is due; returns the ids of the schedules that ran."""
        ran = []
        while (claimed := self._store.claim_due(now)) is not None:
            try:
                self._destroy("scheduled teardown")
            except OperationInProgress:
                self._store.give_back(claimed)
                break  # the next pass tries again
            except Exception as error:
                log.exception("scheduled teardown #%s failed", claimed["id"])
                self._store.finish(int(claimed["id"]), f"failed: {error}")
            else:
                self._store.finish(int(claimed["id"]), "succeeded")
            ran.append(int(claimed["id"]))
        return ran
