"""/admin/instances: the live VM table with export, release and destroy behind confirmations."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import panel as pn
from panel.viewable import Viewer

from dashboard.admin.actions import InstanceActions, csv_text, in_background, split_selection
from dashboard.admin.confirm import ConfirmPanel, name_list
from dashboard.admin.table import LiveTableView
from dashboard.admin.vm_detail_view import VMDetailView
from dashboard.admin.widgets import kind_of, notice_html, progress_text, progress_value
from dashboard.live import LiveVMTable
from dashboard.look import html_pane
from dashboard.states import legend_html


def _pairs(assigned: list[tuple[str, str]]) -> str:
    return name_list([f"{name} ({email})" for name, email in assigned])


class InstancesView(Viewer):
    """The live table plus its actions. ``attach()`` subscribes it for this session."""

    def __init__(
        self,
        table: LiveVMTable,
        actions: InstanceActions,
        detail: VMDetailView | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.table = LiveTableView(table)
        self.actions = actions
        self.detail = detail
        self.confirm = ConfirmPanel()
        self.notice = pn.pane.HTML("", sizing_mode="stretch_width")
        self.legend = html_pane(legend_html(), sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=0, max=100, visible=False, width=300)
        self.progress_label = pn.pane.HTML("", sizing_mode="stretch_width")
        self.destroy_selected = pn.widgets.Button(label="Destroy selected", color="danger")
        self.destroy_all = pn.widgets.Button(label="Destroy all", color="danger")
        self.release_selected = pn.widgets.Button(label="Release selected", color="warning")
        self.export = pn.widgets.FileDownload(
            callback=self._csv, filename="lablink-vms.csv", label="Export CSV", embed=False
        )
        self.destroy_selected.on_click(self._ask_destroy_selected)
        self.destroy_all.on_click(self._ask_destroy_all)
        self.release_selected.on_click(self._ask_release)
        self.table.tabulator.on_click(self._on_cell_click, column="details")
        self._watchers = [
            actions.param.watch(self._show_message, "message"),
            actions.param.watch(self._show_progress, "progress"),
        ]
        if not actions.has_fleet:
            self.destroy_selected.disabled = self.destroy_all.disabled = True

    def attach(self) -> None:
        self.table.attach()

    def __panel__(self) -> pn.viewable.Viewable:
        buttons = pn.Row(
            self.destroy_selected, self.destroy_all, self.release_selected, self.export
        )
        return pn.Column(
            buttons,
            self.confirm,
            self.notice,
            pn.Row(self.progress, self.progress_label),
            *([self.detail] if self.detail is not None else []),
            self.table,
            pn.Accordion(("What the states mean", self.legend), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def _on_cell_click(self, event: Any) -> None:
        value = self.table.tabulator.value
        if self.detail is not None and value is not None and 0 <= event.row < len(value):
            self.detail.open(str(value.index[event.row]))

    def _ask(self, question: str, action: Callable[[], object], *, confirm_label: str) -> None:
        """A new question replaces the last action's message, which no longer applies."""
        self.actions.message = ""
        self.confirm.ask(question, action, confirm_label=confirm_label)

    # Display -----------------------------------------------------------------------------

    def _show_message(self, event: Any) -> None:
        self.notice.object = notice_html(event.new, kind_of(event.new))

    def _show_progress(self, event: Any) -> None:
        self.progress.visible = event.new is not None
        self.progress.value = progress_value(event.new)
        self.progress_label.object = notice_html(progress_text(event.new))

    def _say(self, text: str) -> None:
        self.actions.message = text

    def _csv(self) -> io.StringIO:
        return io.StringIO(csv_text(self.table.tabulator.value))

    # Destroy selected ------------------------------------------------------------------

    def _ask_destroy_selected(self, _event: object) -> None:
        chosen = split_selection(self.table.rows(self.table.selected_hostnames()))
        if not chosen.hostnames:
            self._say("Select the VMs to destroy first (tick their boxes).")
            return
        count = len(chosen.hostnames)
        question = f"<p><strong>Destroy {count} VM{'s' if count != 1 else ''}:</strong> "
        question += name_list(chosen.hostnames) + "</p>"
        if chosen.assigned:
            question += (
                f"<p>{len(chosen.assigned)} of them are assigned; you will be asked again.</p>"
            )
            self._ask(
                question,
                lambda: self._ask_destroy_assigned(chosen.hostnames, chosen.assigned),
                confirm_label=f"Destroy {count} VMs",
            )
            return
        self._ask(
            question,
            lambda: self._destroy(chosen.hostnames, force=False),
            confirm_label=f"Destroy {count} VM{'s' if count != 1 else ''}",
        )

    def _ask_destroy_assigned(self, hostnames: list[str], assigned: list[tuple[str, str]]) -> None:
        question = (
            "<p><strong>These VMs are assigned to researchers, who will lose them:</strong> "
            f"{_pairs(assigned)}</p><p>Destroy them too?</p>"
        )
        self._ask(
            question,
            lambda: self._destroy(hostnames, force=True),
            confirm_label=f"Yes, destroy {len(assigned)} assigned VM"
            + ("s" if len(assigned) != 1 else ""),
        )

    def _destroy(self, hostnames: list[str], *, force: bool) -> None:
        self._say(f"Starting to destroy {', '.join(hostnames)}...")
        in_background(lambda: self.actions.destroy(hostnames, force=force))

    # Destroy all -----------------------------------------------------------------------

    def _ask_destroy_all(self, _event: object) -> None:
        fleet_names = set(self.actions.fleet_hostnames())
        if not fleet_names:
            self._say("The fleet has no VMs to destroy.")
            return
        chosen = split_selection(self.table.rows(sorted(fleet_names)))
        names = sorted(fleet_names)
        question = (
            f"<p><strong>Destroy all {len(names)} VMs of the fleet</strong> and its shared "
            f"resources: {name_list(names)}</p>"
        )
        if chosen.assigned:
            question += f"<p>{len(chosen.assigned)} are assigned; you will be asked again.</p>"
            follow_up = lambda: self._ask_destroy_all_assigned(chosen.assigned)  # noqa: E731
            self._ask(question, follow_up, confirm_label=f"Destroy all {len(names)}")
            return
        self._ask(
            question,
            lambda: self._destroy_all(force=False),
            confirm_label=f"Destroy all {len(names)}",
        )

    def _ask_destroy_all_assigned(self, assigned: list[tuple[str, str]]) -> None:
        question = (
            "<p><strong>These VMs are assigned to researchers, who will lose them:</strong> "
            f"{_pairs(assigned)}</p><p>Destroy every VM anyway?</p>"
        )
        self._ask(
            question,
            lambda: self._destroy_all(force=True),
            confirm_label="Yes, destroy all, assigned ones too",
        )

    def _destroy_all(self, *, force: bool) -> None:
        self._say("Starting to destroy every VM of the fleet...")
        in_background(lambda: self.actions.destroy_all(force=force))

    # Release ---------------------------------------------------------------------------

    def _ask_release(self, _event: object) -> None:
        chosen = split_selection(self.table.rows(self.table.selected_hostnames()))
        if not chosen.assigned:
            self._say("Select assigned VMs to release (free ones have nothing to release).")
            return
        question = (
            "<p><strong>Release these VMs</strong> (their researchers lose them): "
            f"{_pairs(chosen.assigned)}</p>"
        )
        names = [name for name, _ in chosen.assigned]
        self._ask(
            question,
            lambda: in_background(lambda: self.actions.release(names)),
            confirm_label=f"Release {len(names)}",
        )
