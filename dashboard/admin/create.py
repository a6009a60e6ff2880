"""/admin/create: the launch form, the running operation's progress and log, and history."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from dashboard.admin.actions import in_background
from dashboard.admin.launch import LaunchState
from dashboard.admin.ticker import Poller, SessionTicker
from dashboard.admin.widgets import kind_of, notice_html, progress_text, progress_value
from lablink_core.fleet.operations import describe

OPERATION_COLUMNS = ["id", "kind", "provider", "state", "planned", "done", "started", "error"]


def operations_frame(operations: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "id": op["id"],
            "kind": op["kind"],
            "provider": op["provider"],
            "state": op["state"],
            "planned": op["planned"],
            "done": op["done"],
            "started": op["started_at"].strftime("%Y-%m-%d %H:%M:%S") if op["started_at"] else "",
            "error": op.get("error") or "",
        }
        for op in operations
    ]
    return pd.DataFrame(rows, columns=OPERATION_COLUMNS)


def running_text(running: dict[str, Any] | None) -> str:
    """Another operation's progress (this session's own shows in its progress bar)."""
    if running is None:
        return ""
    return (
        f"Another fleet operation, #{running['id']}, is running: {describe(running)}, "
        f"{running['done']} of {running['planned']} done."
    )


class CreateView(Viewer):
    """The launch form; :meth:`attach` starts this session's polling of the history."""

    def __init__(self, state: LaunchState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self._poller: Poller[Any] | None = None
        limit = state.param.count.bounds[1]
        self.count = pn.widgets.IntInput.from_param(
            state.param.count, label=f"Number of instances (1-{limit})", start=1, end=limit
        )
        self.machine = [
            pn.widgets.TextInput.from_param(
                state.param[key], label=label, sizing_mode="stretch_width"
            )
            for key, label in (
                ("machine_type", "Machine type"),
                ("ami_id", "AMI id"),
                ("image", "Container image"),
                ("repository", "Repository (optional)"),
            )
        ]
        self.machine_box = pn.Column(
            *self.machine, visible=not state.is_local, margin=0, sizing_mode="stretch_width"
        )
        self.where = pn.pane.HTML(notice_html(state.where(), _where_kind(state)))
        self.cost = pn.pane.HTML("", sizing_mode="stretch_width")
        self.launch = pn.widgets.Button(label="Launch", color="primary")
        self.launch.on_click(self._on_launch)
        self.notice = pn.pane.HTML("", sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=0, max=100, width=400, visible=False)
        self.progress_label = pn.pane.HTML("", sizing_mode="stretch_width")
        self.log = pn.pane.Str("", sizing_mode="stretch_width", max_height=320, styles=_LOG_STYLE)
        self.running = pn.pane.HTML("", sizing_mode="stretch_width")
        self.history = pn.widgets.Tabulator(
            operations_frame([]), show_index=False, disabled=True, sizing_mode="stretch_width"
        )
        state.param.watch(self._show_message, "message")
        state.param.watch(self._show_progress, ["progress", "log"])
        state.param.watch(self._show_operations, ["operations", "running", "progress"])
        state.param.watch(self._show_cost, ["count", "machine_type"])
        if not state.has_fleet:
            self.launch.disabled = True
        self._show_message()
        self._show_progress()
        self._show_operations()
        self._show_cost()

    def attach(self, executor: Executor | None = None) -> None:
        """Follow progress on this session's ticks and poll the history every 2 s."""
        doc = pn.state.curdoc
        ticker = SessionTicker(self.state.drain, doc, min_interval=0.25)
        self.state.notify_with(ticker.request)
        self._poller = Poller(self.state.read_operations, self._show_read, doc, executor)
        if doc is not None and doc.session_context is not None:
            pn.state.add_periodic_callback(self._poller.poll, period=2000)
            pn.state.on_session_destroyed(lambda _context: self._close(ticker))
        self._poller.poll()

    def _close(self, ticker: SessionTicker) -> None:
        ticker.close()
        if self._poller is not None:
            self._poller.close()

    def _show_read(self, read: tuple[list[dict[str, Any]], dict[str, Any] | None]) -> None:
        self.state.show_operations(*read)

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Column(self.count, self.machine_box, self.cost, self.launch, width=480)
        return pn.Column(
            self.where,
            form,
            self.notice,
            pn.Row(self.progress, self.progress_label),
            pn.pane.Markdown("### Output"),
            self.log,
            self.running,
            pn.pane.Markdown("### Latest fleet operations"),
            self.history,
            sizing_mode="stretch_width",
        )

    def _on_launch(self, _event: object) -> None:
        self.launch.disabled = True
        self.state.log = ""
        self.notice.object = notice_html("Starting the launch...", "info")

        def start() -> None:  # off the loop: fleet.start waits for the lock and the database
            try:
                self.state.launch()
            finally:
                self.launch.disabled = False
                if self._poller is not None:
                    self._poller.poll()

        in_background(start, name="lablink-launch")

    def _show_message(self, *_events: object) -> None:
        self.notice.object = notice_html(self.state.message, kind_of(self.state.message))

    def _show_progress(self, *_events: object) -> None:
        progress = self.state.progress
        if progress is not None and progress.finished and self._poller is not None:
            self._poller.poll()  # the history and "running" box catch up at once
        self.progress.visible = progress is not None
        self.progress.value = progress_value(progress)
        self.progress_label.object = notice_html(progress_text(progress))
        self.log.object = self.state.log or "(no output yet)"

    def _show_operations(self, *_events: object) -> None:
        self.running.object = notice_html(running_text(self.state.shown_running()), "warning")
        self.history.value = operations_frame(self.state.operations)

    def _show_cost(self, *_events: object) -> None:
        if self.state.is_local or not self.state.has_fleet:
            self.cost.object = ""
            return
        self.cost.object = notice_html("Estimated cost: " + self.state.cost().describe())


def _where_kind(state: LaunchState) -> str:
    return "success" if state.is_local else ("warning" if state.has_fleet else "danger")


_LOG_STYLE = {
    "background": "#1e1e1e",
    "color": "#e0e0e0",
    "padding": "8px",
    "overflow-y": "auto",
    "font-size": "12px",
}
