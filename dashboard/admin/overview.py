"""/admin: VMs by status, assignments per minute, start-up times, and links to the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from panel.viewable import Viewer
from sqlalchemy import Engine

from dashboard.admin.widgets import NAV_LINKS
from lablink_core import stats
from lablink_core.models import VM_STATUSES

HISTORY = dt.timedelta(hours=24)


class OverviewState(param.Parameterized):
    """The overview's numbers, read through :mod:`lablink_core.stats`."""

    counts = param.Dict(default={}, doc="VMs per status.")
    assignments = param.List(default=[], doc="(minute, new assignments) over the last day.")
    startup = param.List(default=[], doc="Seconds from launch to ready, one per VM.")
    read_at = param.Date(default=None, allow_None=True, doc="When the numbers were read.")

    def __init__(self, engine: Engine, table_name: str, **params: Any) -> None:
        super().__init__(**params)
        self._engine = engine
        self._table = table_name

    def read(self) -> dict[str, Any]:
        """Query the numbers (blocking: call off the event loop)."""
        since = dt.datetime.now(dt.UTC) - HISTORY
        return {
            "counts": stats.status_counts(self._engine, self._table),
            "assignments": stats.assignments_per_minute(self._engine, self._table, since=since),
            "startup": stats.startup_seconds(self._engine, self._table),
            "read_at": dt.datetime.now(dt.UTC),
        }

    def refresh(self) -> None:
        self.param.update(**self.read())


def _figure(title: str, **kwargs: Any) -> Any:
    plot = figure(
        title=title, height=280, sizing_mode="stretch_width", toolbar_location=None, **kwargs
    )
    plot.grid.grid_line_alpha = 0.3
    return plot


def histogram(values: list[float], bins: int = 20) -> dict[str, list[float]]:
    if not values:
        return {"left": [], "right": [], "top": []}
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    return {"left": list(edges[:-1]), "right": list(edges[1:]), "top": list(counts)}


class OverviewView(Viewer):
    """Three plots fed by one :class:`OverviewState`; their sources update in place."""

    def __init__(self, state: OverviewState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.status_source = ColumnDataSource(
            {"status": list(VM_STATUSES), "count": [0] * len(VM_STATUSES)}
        )
        self.assign_source = ColumnDataSource({"minute": [], "count": []})
        self.startup_source = ColumnDataSource({"left": [], "right": [], "top": []})
        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width")
        state.param.watch(self._render, ["counts", "assignments", "startup"])
        self._render()

    def attach(self, period_ms: int = 10_000) -> None:
        """Read now and every ``period_ms`` while the session lives."""
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self.poll, period=period_ms)
        pn.state.execute(self.poll)

    async def poll(self) -> None:
        self.state.param.update(**(await asyncio.to_thread(self.state.read)))

    def _plots(self) -> list[Any]:
        by_status = _figure("VMs by status", x_range=list(VM_STATUSES))
        by_status.vbar(x="status", top="count", width=0.7, source=self.status_source)
        by_status.y_range.start = 0
        assigned = _figure("Assignments per minute (last 24 h)", x_axis_type="datetime")
        assigned.vbar(x="minute", top="count", width=50_000, source=self.assign_source)
        assigned.y_range.start = 0
        startup = _figure("VM start-up time (launch to ready, seconds)")
        startup.quad(left="left", right="right", top="top", bottom=0, source=self.startup_source)
        startup.y_range.start = 0
        return [
            pn.pane.Bokeh(p, sizing_mode="stretch_width") for p in (by_status, assigned, startup)
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        links = " · ".join(f"[{label}]({url})" for label, url in NAV_LINKS[1:])
        return pn.Column(
            self.summary,
            pn.pane.Markdown(links),
            pn.GridBox(*self._plots(), ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def _render(self, *_events: object) -> None:
        counts = self.state.counts
        self.status_source.data = {
            "status": list(VM_STATUSES),
            "count": [counts.get(s, 0) for s in VM_STATUSES],
        }
        minutes = self.state.assignments
        self.assign_source.data = {
            "minute": [m for m, _ in minutes],
            "count": [n for _, n in minutes],
        }
        self.startup_source.data = histogram(self.state.startup)
        total = sum(counts.values())
        free = counts.get("available", 0)
        held = counts.get("assigned", 0) + counts.get("connected", 0)
        self.summary.object = (
            f"**{total}** VMs: **{free}** free, **{held}** assigned, "
            f"**{sum(n for _, n in minutes)}** assignments in the last 24 hours."
        )
