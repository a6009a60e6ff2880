"""One session's view of the live VM table: a remote-paginated Tabulator kept in step with
the server-wide :class:`~dashboard.live.LiveVMTable` through a per-session subscription."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
from panel.io.model import JSCode
from panel.viewable import Viewer

from dashboard.a11y import TABLE_FOOTER_CSS
from dashboard.admin.frames import TITLES
from dashboard.admin.ticker import SessionTicker
from dashboard.live import LiveVMTable
from dashboard.look import COMPONENT_CSS
from dashboard.states import STATE_MEANINGS, STATE_TONES

log = logging.getLogger(__name__)

PATCH_LIMIT = 200
"""Changed cells up to which a new snapshot is patched in; more and the value is swapped."""

HEADER_FILTERS: dict[str, Any] = {
    "hostname": {"type": "input", "func": "like", "placeholder": "hostname"},
    "status": {"type": "input", "func": "like", "placeholder": "state"},
    "user_email": {"type": "input", "func": "like", "placeholder": "email"},
    "health": {"type": "input", "func": "like", "placeholder": "health"},
    "last_heard_s": {"type": "number", "func": ">=", "placeholder": ">= s"},
    "age_s": {"type": "number", "func": ">=", "placeholder": ">= s"},
    "reason": {"type": "input", "func": "like", "placeholder": "reason"},
}
# The state column holds the state's name (sorted, filtered and exported as text); the browser
# draws it as the badge, with the row's reason on hover. Text goes in as text, never markup.
BADGE_FORMATTER = JSCode(
    """function(cell) {
  const tones = TONES, meanings = MEANINGS;
  const key = String(cell.getValue() == null ? "" : cell.getValue());
  const badge = document.createElement("span");
  badge.className = "ll-badge ll-" + (tones[key] || "off");
  badge.textContent = key;
  badge.title = String(cell.getRow().getData().reason || meanings[key] || "");
  return badge;
}""".replace("TONES", json.dumps(STATE_TONES)).replace("MEANINGS", json.dumps(STATE_MEANINGS))
)
SECONDS_FORMATTER = JSCode(
    """function(cell) {
  const s = cell.getValue();
  if (s == null || isNaN(s)) { return "never"; }
  if (s < 120) { return Math.round(s) + " s"; }
  if (s < 7200) { return Math.floor(s / 60) + " min"; }
  return Math.floor(s / 3600) + " h";
}"""
)
FORMATTERS: dict[str, Any] = {
    "status": BADGE_FORMATTER,
    "in_use": {"type": "lookup", "true": "in use", "false": ""},
    "hostname": {"type": "textarea"},
    "user_email": {"type": "textarea"},
    "health": {"type": "textarea"},
    "reason": {"type": "textarea"},
    "last_heard_s": SECONDS_FORMATTER,
    "age_s": SECONDS_FORMATTER,
}
WIDTHS = {
    "hostname": 135,
    "status": 130,
    "user_email": 190,
    "in_use": 110,
    "health": 160,
    "last_heard_s": 100,
    "details": 85,
}
EMPTY_TABLE = "No VMs yet. Launch some on Create instances."
TROUBLE_ROW = "background-color: #fdf1f2"
TROUBLE_STATES = [key for key, tone in STATE_TONES.items() if tone == "trouble"]


def trouble_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Cell styles that tint every row in trouble (unresponsive, unhealthy, error)."""
    styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
    if "status" in frame.columns:
        styles.loc[frame["status"].isin(TROUBLE_STATES).to_numpy(), :] = TROUBLE_ROW
    return styles


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
            formatters=FORMATTERS,
            widths=WIDTHS,
            hidden_columns=["age_s"],
            layout="fit_columns",
            configuration={"placeholder": EMPTY_TABLE},
            buttons={"details": '<span class="ll-badge ll-held">Details</span>'},
            stylesheets=[COMPONENT_CSS, TABLE_FOOTER_CSS],
            sizing_mode="stretch_width",
            min_height=300,
        )
        self.tabulator.style.apply(trouble_rows, axis=None)
        self.summary = pn.pane.Str("", sizing_mode="stretch_width")
        self._summarize(self.tabulator.value)

    def __panel__(self) -> pn.Column:
        return pn.Column(self.summary, self.tabulator, sizing_mode="stretch_width")

    def _summarize(self, frame: pd.DataFrame) -> None:
        held = int((frame["user_email"] != "").sum())
        silent = int((frame["status"] == "unresponsive").sum())
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
