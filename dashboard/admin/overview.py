"""/admin: VMs by status, assignments per minute, start-up times, and links to the rest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource, Range1d
from bokeh.plotting import figure
from panel.viewable import Viewer
from sqlalchemy import Engine

from dashboard.admin.frames import vm_frame
from dashboard.admin.numbers import cards_html, fleet_numbers, waiting_html
from dashboard.admin.ticker import Poller, SessionTicker
from dashboard.live import LiveVMTable
from dashboard.look import CARD_STYLE, TONES, html_pane
from dashboard.states import STATE_TONES
from lablink_core import stats
from lablink_core.models import VM_STATUSES
from lablink_core.prices import FleetCost

HISTORY = dt.timedelta(hours=24)
BAR_COLORS = [TONES[STATE_TONES[status]].text for status in VM_STATUSES]
STARTUP_TITLE = "Start-up time of the fleet's VMs (launch to ready, seconds)"


def startup_note(any_started: bool, vm_count: int) -> str:
    """What an empty start-up chart means: no VM now, or none ready yet."""
    if any_started:
        return ""
    if vm_count == 0:
        return " (no VMs now; destroyed VMs are not counted)"
    return " (none of the fleet's VMs is ready yet)"


class OverviewState(param.Parameterized):
    """The overview's numbers, read through :mod:`lablink_core.stats`."""

    counts = param.Dict(default={}, doc="VMs per status.")
    assignments = param.List(default=[], doc="(minute, new assignments) over the last day.")
    startup = param.List(default=[], doc="Seconds from launch to ready, one per VM.")
    waiting = param.List(default=[], doc="Who waits in the queue, in order (admins only).")
    read_at = param.Date(default=None, allow_None=True, doc="When the numbers were read.")

    def __init__(
        self, engine: Engine, table_name: str, waitlist: Any = None, **params: Any
    ) -> None:
        super().__init__(**params)
        self._engine = engine
        self._table = table_name
        self._waitlist = waitlist  # lablink_core.waitlist.Waitlist, or None

    def read(self) -> dict[str, Any]:
        """Query the numbers (blocking: call off the event loop)."""
        since = dt.datetime.now(dt.UTC) - HISTORY
        return {
            "counts": stats.status_counts(self._engine, self._table),
            "assignments": stats.assignments_per_minute(self._engine, self._table, since=since),
            "startup": stats.startup_seconds(self._engine, self._table),
            "waiting": self._waitlist.waiting() if self._waitlist is not None else [],
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


def datetime_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _window(
    now: dt.datetime, minutes: list[dt.datetime] | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """At least the last hour on the time axis, more if older minutes have assignments."""
    start = min([now - dt.timedelta(hours=1), *(minutes or [])])
    return start - dt.timedelta(minutes=1), now + dt.timedelta(minutes=1)


def histogram(values: list[float], bins: int = 20) -> dict[str, list[float]]:
    if not values:
        return {"left": [], "right": [], "top": []}
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    return {"left": list(edges[:-1]), "right": list(edges[1:]), "top": list(counts)}


def _close(poller: Poller[Any], ticker: SessionTicker, unsubscribe: Callable[[], None]) -> None:
    unsubscribe()
    ticker.close()
    poller.close()


class OverviewView(Viewer):
    """Number cards, three plots and the queue, fed by one :class:`OverviewState` and the live
    table's snapshots (:meth:`show_frame`); the plots' sources update in place."""

    def __init__(
        self,
        state: OverviewState,
        cost: Callable[[int], FleetCost] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self._cost = cost
        self._frame = vm_frame([])
        self.cards = html_pane(sizing_mode="stretch_width")
        self.queue = html_pane(sizing_mode="stretch_width")
        self.status_source = ColumnDataSource(
            {"status": list(VM_STATUSES), "count": [0] * len(VM_STATUSES), "color": BAR_COLORS}
        )
        self.assign_source = ColumnDataSource({"minute": [], "count": []})
        self.startup_source = ColumnDataSource({"left": [], "right": [], "top": []})
        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._make_plots()
        state.param.watch(self._render, ["counts", "assignments", "startup", "waiting"])
        self._render()

    def show_frame(self, frame: pd.DataFrame) -> None:
        """A new snapshot of the live table (on this session's tick): the number cards."""
        self._frame = frame
        self._show_cards()

    def _show_cards(self) -> None:
        numbers = fleet_numbers(self._frame, len(self.state.waiting))
        cost = self._cost(numbers.total) if self._cost is not None else None
        self.cards.object = cards_html(numbers, cost)

    def attach(
        self,
        period_ms: int = 10_000,
        executor: Executor | None = None,
        live: LiveVMTable | None = None,
    ) -> None:
        """Read now, every ``period_ms``, and whenever the ``live`` table changes, while the
        session lives (reads run off the loop; the page changes on the session's tick)."""
        doc = pn.state.curdoc
        poller = Poller(self.state.read, self._show, doc, executor)
        latest: list[pd.DataFrame] = []
        ticker = SessionTicker(lambda: latest and self.show_frame(latest.pop()), doc)

        def on_snapshot(frame: pd.DataFrame) -> None:  # the live table's thread
            latest[:] = [frame]
            ticker.request()
            poller.poll()

        unsubscribe = live.subscribe(on_snapshot) if live is not None else (lambda: None)
        if doc is not None and doc.session_context is not None:
            pn.state.add_periodic_callback(poller.poll, period=period_ms)
            pn.state.on_session_destroyed(lambda _: _close(poller, ticker, unsubscribe))
        if live is not None:
            self.show_frame(live.snapshot)
        poller.poll()

    def _show(self, values: dict[str, Any]) -> None:
        self.state.param.update(**values)

    def _make_plots(self) -> None:
        by_status = _figure("VMs by status", x_range=list(VM_STATUSES))
        by_status.vbar(x="status", top="count", width=0.7, color="color", source=self.status_source)
        by_status.y_range.start = 0
        # Explicit ranges: Bokeh draws no axes for an empty plot with automatic ranges.
        self.minutes, self.assign_y = Range1d(*_window(datetime_now())), Range1d(0, 1)
        assigned = _figure(
            "Assignments per minute",
            x_axis_type="datetime",
            x_range=self.minutes,
            y_range=self.assign_y,
        )
        assigned.vbar(x="minute", top="count", width=45_000, source=self.assign_source)
        self.startup_x, self.startup_y = Range1d(0, 60), Range1d(0, 1)
        self.startup_plot = _figure(STARTUP_TITLE, x_range=self.startup_x, y_range=self.startup_y)
        self.startup_plot.quad(
            left="left", right="right", top="top", bottom=0, source=self.startup_source
        )
        self.plots = [
            pn.pane.Bokeh(p, sizing_mode="stretch_width")
            for p in (by_status, assigned, self.startup_plot)
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        waiting = pn.Column(
            pn.pane.Markdown("#### Who is waiting"),
            self.queue,
            styles=CARD_STYLE,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            self.cards,
            self.summary,
            pn.GridBox(*self.plots, waiting, ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def _render(self, *_events: object) -> None:
        counts = self.state.counts
        self.status_source.data = {
            "status": list(VM_STATUSES),
            "count": [counts.get(s, 0) for s in VM_STATUSES],
            "color": BAR_COLORS,
        }
        minutes = self.state.assignments
        self.assign_source.data = {
            "minute": [m for m, _ in minutes],
            "count": [n for _, n in minutes],
        }
        self.minutes.start, self.minutes.end = _window(datetime_now(), [m for m, _ in minutes])
        self.assign_y.end = max([1, *(n for _, n in minutes)]) * 1.1
        bins = histogram(self.state.startup)
        self.startup_source.data = bins
        if bins["left"]:
            pad = 0.1 * max(bins["right"][-1] - bins["left"][0], 0.1)
            self.startup_x.start = max(0.0, bins["left"][0] - pad)
            self.startup_x.end = bins["right"][-1] + pad
        self.startup_y.end = max([1, *bins["top"]]) * 1.1
        self.startup_plot.title.text = STARTUP_TITLE + startup_note(
            bool(self.state.startup), sum(counts.values())
        )
        self.queue.object = waiting_html(self.state.waiting)
        self._show_cards()
        total = sum(counts.values())
        free = counts.get("available", 0)
        held = counts.get("assigned", 0) + counts.get("connected", 0)
        self.summary.object = (
            f"**{total}** VMs: **{free}** free, **{held}** assigned, "
            f"**{sum(n for _, n in minutes)}** assignments in the last 24 hours."
        )
