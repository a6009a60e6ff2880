"""The researcher's side of a workshop's day, without widgets: waiting in the queue, when the
session ends and why, extensions, and what happens to the VM (repairs, reclaims).

:class:`SessionWatch` turns the process's shared :class:`~dashboard.public_state.PublicSnapshot`
into what one researcher is told; it asks the database only when that snapshot says their
own entry or VM changed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dashboard.public_state import PublicSnapshot
from dashboard.researcher.seat import Seat
from lablink_core.reclaim import HeldVM

HEALING_WORDS = {"rebooting": "being restarted", "replacing": "being replaced"}


@dataclass(frozen=True)
class SessionNotes:
    """What the page says about the seat: a calm note, an urgent warning, the extension."""

    note: str = ""
    warning: str = ""
    can_extend: bool = False


def _clock(at: dt.datetime, now: dt.datetime) -> str:
    minutes = max(0, round((at - now).total_seconds() / 60))
    return f"{at.astimezone(dt.UTC):%H:%M} UTC (in {minutes} min)"


def session_notes(
    seat: Seat | None, snapshot: PublicSnapshot, now: dt.datetime, warning_minutes: float
) -> SessionNotes:
    """The notes for a researcher holding ``seat`` (nothing while queued or without one)."""
    if seat is None or seat.queued:
        return SessionNotes()
    held = snapshot.held.get(seat.hostname)
    if held is None:
        return SessionNotes()
    note = _repair_note(held)
    plan, warning = held.plan, ""
    if plan is not None:
        note = (
            note + " " if note else ""
        ) + f"This VM will be reclaimed at {_clock(plan.at, now)}: {plan.reason}."
        if plan.kind == "teardown" and snapshot.teardown is not None:
            left = snapshot.teardown.warning(now)
            warning = f"Scheduled teardown in less than {left}: save your work." if left else ""
        elif plan.at - now <= dt.timedelta(minutes=warning_minutes):
            warning = f"Your session ends at {_clock(plan.at, now)} ({plan.reason})."
    extendable = plan is not None and plan.extendable and held.extensions_left > 0
    return SessionNotes(note, warning, extendable and bool(warning))


def _repair_note(held: HeldVM) -> str:
    if held.healing is None:
        return ""
    words = HEALING_WORDS.get(held.healing, "being repaired")
    reason = f" ({held.reason})" if held.reason else ""
    return f"Your VM is {words}{reason}; it keeps your session. Give it a few minutes."
