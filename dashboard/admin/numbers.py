"""The overview's numbers at a glance: free, assigned, waiting, in trouble, and the fleet's
estimated cost per hour; and who is waiting in the queue (admins only).

The VM counts come from the live table's snapshot (the same states as the instance table),
so they change as soon as the table does; the queue comes from the waitlist.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dashboard.states import STATE_TONES
from lablink_core.prices import FleetCost, dollars

TROUBLE = [key for key, tone in STATE_TONES.items() if tone == "trouble"]


@dataclass(frozen=True)
class FleetNumbers:
    """What the number cards show."""

    total: int = 0
    free: int = 0
    assigned: int = 0
    waiting: int = 0
    trouble: int = 0


def fleet_numbers(frame: pd.DataFrame, waiting: int) -> FleetNumbers:
    """Counts of the live table's frame by state (see :mod:`dashboard.states`)."""
    states = frame["status"] if "status" in frame.columns else pd.Series([], dtype=object)
    return FleetNumbers(
        total=len(frame),
        free=int((states == "available").sum()),
        assigned=int(states.isin(["assigned", "connected"]).sum()),
        waiting=waiting,
        trouble=int(states.isin(TROUBLE).sum()),
    )


def _card(value: str, label: str, tone: str, note: str = "") -> str:
    extra = f'<div class="ll-kpi-label">{html.escape(note)}</div>' if note else ""
    return (
        f'<div class="ll-card ll-kpi-card ll-kpi-{tone}" role="group" '
        f'aria-label="{html.escape(label, quote=True)}">'
        f'<div class="ll-kpi">{html.escape(value)}</div>'
        f'<div class="ll-kpi-label"><b>{html.escape(label)}</b></div>{extra}</div>'
    )


def cards_html(numbers: FleetNumbers, cost: FleetCost | None) -> str:
    """The number cards; red only when something is in trouble."""
    cards = [
        _card(str(numbers.free), "Free VMs", "ok", f"of {numbers.total} in the fleet"),
        _card(str(numbers.assigned), "Assigned", "held", "held by researchers"),
        _card(
            str(numbers.waiting),
            "Waiting",
            "progress" if numbers.waiting else "off",
            "researchers in the queue",
        ),
        _card(
            str(numbers.trouble),
            "Unhealthy",
            "trouble" if numbers.trouble else "off",
            "unresponsive, unhealthy or in error",
        ),
        _card(*_cost_parts(cost)),
    ]
    return f'<div class="ll-kpis">{"".join(cards)}</div>'


def _cost_parts(cost: FleetCost | None) -> tuple[str, str, str, str]:
    if cost is None:
        return ("—", "Cost per hour", "off", "no fleet on this server")
    if cost.provider == "local":
        return ("$0", "Cost per hour", "ok", "local fleet: no cloud charges")
    if cost.total is None:
        return ("?", "Cost per hour", "off", f"no price known for {cost.machine_type}")
    note = f"{cost.count} × {cost.machine_type} at {dollars(cost.each or 0.0)}/h"  # noqa: RUF001
    return (dollars(cost.total), "Cost per hour (estimate)", "held", note)


def waiting_html(waiting: Sequence[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """Who waits, in order, since when (emails escaped)."""
    if not waiting:
        return '<p class="ll-muted">Nobody is waiting for a VM.</p>'
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for entry in waiting:
        since = entry.get("created_at")
        minutes = round((now - since).total_seconds() / 60) if isinstance(since, dt.datetime) else 0
        rows.append(
            f"<tr><td>{int(entry.get('position') or 0)}</td>"
            f"<td>{html.escape(str(entry.get('email') or ''))}</td>"
            f"<td>{minutes} min</td></tr>"
        )
    head = "<tr><th scope='col'>#</th><th scope='col'>Email</th><th scope='col'>Waiting</th></tr>"
    return f'<table class="ll-list">{head}{"".join(rows)}</table>'
