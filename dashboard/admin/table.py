"""One session's view of the live VM table: a remote-paginated Tabulator kept in step with
the server-wide :class:`~dashboard.live.LiveVMTable` through a per-session subscription."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter
from panel.viewable import Viewer

from dashboard.admin.frames import TITLES
from dashboard.admin.ticker import SessionTicker
from dashboard.live import LiveVMTable

log = logging.getLogger(__name__)

PATCH_LIMIT = 200
"""Changed cells up to which a new snapshot is patched in; more and the value is swapped."""

HEADER_FILTERS: dict[str, Any] = {
    "hostname": {"type": "input", "func": "like", "placeholder": "hostname"},
    "status": {"type": "input", "func": "like", "placeholder": "status"},
    "user_email": {"type": "input", "func": "like", "placeholder": "email"},
    "in_use": {"type": "tickCross", "tristate": True, "indeterminateValue": None},
    "health": {"type": "input", "func": "like", "placeholder": "health"},
    "last_heard_s": {"type": "number", "func": ">=", "placeholder": ">="},
    "age_s": {"type": "number", "func": ">=", "placeholder": ">="},
    "unresponsive": {"type": "tickCross", "tristate": True, "indeterminateValue": None},
}


class LiveTableView(Viewer):
    """A Tabulator over a private copy of the live snapshot, updated on the session's ticks.

    Call :meth:`attach` in the session (it unsubscribes itself when the session is
    destroyed) or, in a notebook, call it and later the function it returns.
    """

    def __init__(self, table: LiveVMTable, *, page_size: int = 50, **params: Any) -> None:
        super().__init__(**params)
        self._table = table
        self._lock = threading.Lock()
        self._pending: pd.DataFrame | None = None
        self._ticker: SessionTicker | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.updates_applied = 0
        self._shown = table.snapshot  # the shared frame the widget's value equals
        self.tabulator = pn.widgets.Tabulator(
            table.snapshot.copy(),
            pagination="remote",
            page_size=page_size,
            header_filters=HEADER_FILTERS,
            selectable="checkbox",
            show_index=False,
            disabled=True,
            titles=TITLES,
            formatters={
                "in_use": {"type": "tickCross"},
                "unresponsive": {"type": "tickCross"},
                "last_heard_s": NumberFormatter(format="0,0", text_align="right"),
                "age_s": NumberFormatter(format="0,0", text_align="right"),
            },
            sizing_mode="stretch_width",
            min_height=300,
        )
        self.summary = pn.pane.Str("", sizing_mode="stretch_width")
        self._summarize(self.tabulator.value)

    def __panel__(self) -> pn.Column:
        return pn.Column(self.summary, self.tabulator, sizing_mode="stretch_width")

    def _summarize(self, frame: pd.DataFrame) -> None:
        held = int((frame["user_email"] != "").sum())
        silent = int(frame["unresponsive"].sum())
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC")
        self.summary.object = (
            f"{len(frame)} VMs, {held} assigned, {silent} unresponsive (updated {stamp})"
        )

    # Subscription ------------------------------------------------------------------------

    def attach(self) -> Callable[[], None]:
        """Subscribe this view to the live table; returns the function that detaches it."""
        self._ticker = SessionTicker(self._apply_pending, pn.state.curdoc)
        self._unsubscribe = self._table.subscribe(self._on_snapshot)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self._on_session_destroyed)
        return self.detach

    def detach(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        if self._ticker is not None:
            self._ticker.close()

    def _on_session_destroyed(self, _context: object) -> None:
        self.detach()

    def _on_snapshot(self, frame: pd.DataFrame) -> None:
        """Called from the live table's thread: keep the newest frame, ask for one tick."""
        with self._lock:
            self._pending = frame
        if self._ticker is not None:
            self._ticker.request()

    def _apply_pending(self) -> None:
        with self._lock:
            frame, self._pending = self._pending, None
        if frame is not None:
            self.apply(frame)

    # Applying a snapshot -----------------------------------------------------------------

    def apply(self, frame: pd.DataFrame) -> None:
        """Show ``frame``: patch the changed cells, or swap the value and keep the selection."""
        self._summarize(frame)
        self.updates_applied += 1
        patch = self._table.changes(self._shown, frame)
        self._shown = frame
        if patch is not None:
            cells = sum(len(values) for values in patch.values())
            if cells == 0:
                return
            if cells <= PATCH_LIMIT:
                self.tabulator.patch(patch, as_index=True)
                return
        selected = self.selected_hostnames()
        self.tabulator.value = frame.copy()
        positions = frame.index.get_indexer(selected)
        self.tabulator.selection = [int(p) for p in positions if p >= 0]

    def selected_hostnames(self) -> list[str]:
        value = self.tabulator.value
        if value is None or not self.tabulator.selection:
            return []
        rows = [i for i in self.tabulator.selection if 0 <= i < len(value)]
        return [str(name) for name in value.index[rows]]

    def rows(self, hostnames: list[str]) -> pd.DataFrame:
        """The shown rows of these VMs (those still in the table)."""
        value = self.tabulator.value
        return value.loc[[h for h in hostnames if h in value.index]]
