"""The per-VM card of the instance page (see :mod:`dashboard.admin.vm_detail`)."""

from __future__ import annotations

import html
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import panel as pn
from panel.viewable import Viewer

from dashboard.admin.confirm import ConfirmPanel
from dashboard.admin.ticker import Poller
from dashboard.admin.vm_detail import VMDetailState
from dashboard.admin.widgets import kind_of, notice_html
from dashboard.look import CARD_STYLE, html_pane
from dashboard.states import STATE_MEANINGS, action_reason, silence, vm_state
from lablink_core.fleet.base import FleetProgress


def facts_html(vm: dict[str, Any]) -> str:
    """The VM's state, reason and a few facts, escaped."""
    state = vm_state(vm)
    rows = [
        ("State", state.badge_html() + " " + html.escape(STATE_MEANINGS.get(state.key, ""))),
        ("Why", html.escape(state.reason or "(nothing to report)")),
        ("Researcher", html.escape(str(vm.get("user_email") or "nobody"))),
        ("Provider", html.escape(f"{vm.get('provider', '')} · client {vm.get('client_kind', '')}")),
        ("Last heard", html.escape(silence(vm.get("last_heard_at")) + " ago")),
        ("GPU", html.escape(str(vm.get("health") or "not reported"))),
        ("Repairs", html.escape(str(vm.get("heal_attempts") or 0))),
    ]
    body = "".join(f"<tr><th scope='row'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="ll-list">{body}</table>'


def history_html(history: list[dict[str, Any]]) -> str:
    if not history:
        return '<p class="ll-muted">No action recorded for this VM yet.</p>'
    items = "".join(
        f"<tr><td>{html.escape(f'{row["at"]:%Y-%m-%d %H:%M:%S}' if row.get('at') else '')}</td>"
        f"<td>{html.escape(action_reason(row))}</td></tr>"
        for row in history
    )
    head = "<tr><th scope='col'>When (UTC)</th><th scope='col'>What and why</th></tr>"
    return f'<table class="ll-list">{head}{items}</table>'


def log_html(lines: list[dict[str, Any]]) -> str:
    if not lines:
        return '<p class="ll-muted">This VM has sent no log lines yet.</p>'
    text = "\n".join(f"[{row.get('source', '')}] {row.get('line', '')}" for row in lines)
    return f'<pre class="ll-log" tabindex="0" aria-label="Log lines">{html.escape(text)}</pre>'


class VMDetailView(Viewer):
    """Hidden until :meth:`open`; reads the VM off the event loop, shows it on a tick."""

    def __init__(
        self,
        state: VMDetailState,
        *,
        executor: Executor | None = None,
        on_change: Callable[[], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self._executor = executor
        self._on_change = on_change or (lambda: None)
        self.title = html_pane(sizing_mode="stretch_width")
        self.facts = html_pane(sizing_mode="stretch_width")
        self.history = html_pane(sizing_mode="stretch_width")
        self.log = html_pane(sizing_mode="stretch_width")
        self.notice = pn.pane.HTML("", sizing_mode="stretch_width")
        self.confirm = ConfirmPanel()
        self.reboot = pn.widgets.Button(label="Reboot", color="warning")
        self.replace = pn.widgets.Button(label="Replace", color="warning")
        self.revoke = pn.widgets.Button(label="Revoke credential", color="danger")
        self.refresh = pn.widgets.Button(label="Refresh", color="light")
        self.close = pn.widgets.Button(label="Close", color="light")
        self.reboot.on_click(lambda _: self._ask_heal("reboot"))
        self.replace.on_click(lambda _: self._ask_heal("replace"))
        self.revoke.on_click(lambda _: self._ask_revoke())
        self.refresh.on_click(lambda _: self.open(self.state.hostname))
        self.close.on_click(lambda _: self.state.close())
        self.reboot.disabled = self.replace.disabled = not state.can_heal
        self._layout = self._build_layout()
        state.param.watch(self._render, ["hostname", "vm", "log_lines", "history"])
        state.param.watch(self._say, "message")

    def __panel__(self) -> pn.Column:
        return self._layout

    def _build_layout(self) -> pn.Column:
        return pn.Column(
            self.title,
            pn.Row(self.reboot, self.replace, self.revoke, self.refresh, self.close),
            self.confirm,
            self.notice,
            pn.Row(
                pn.Column(self.facts, pn.pane.Markdown("#### History"), self.history),
                pn.Column(pn.pane.Markdown("#### Log"), self.log),
                sizing_mode="stretch_width",
            ),
            visible=False,
            styles=CARD_STYLE,
            sizing_mode="stretch_width",
        )

    def open(self, hostname: str) -> None:
        """Show ``hostname``: read it off the loop, then render on this session's tick."""
        if not hostname:
            return
        self.confirm.close()
        if hostname != self.state.hostname:
            self.state.message = ""  # about another VM
        read = lambda: self.state.read(hostname)  # noqa: E731
        Poller(read, self._shown, pn.state.curdoc, self._executor).poll()

    def _shown(self, values: dict[str, Any]) -> None:
        self.state.show(values)

    def _render(self, *_: object) -> None:
        state = self.state
        self._layout.visible = bool(state.hostname)
        if not state.hostname:
            return
        self.title.object = f"<h3>{html.escape(state.hostname)}</h3>"
        self.facts.object = facts_html(state.vm)
        self.history.object = history_html(state.history)
        self.log.object = log_html(state.log_lines)

    def _say(self, event: Any) -> None:
        self.notice.object = notice_html(event.new, kind_of(event.new))

    def _ask_heal(self, action: str) -> None:
        name = html.escape(self.state.hostname)
        what = "Reboot" if action == "reboot" else "Replace"
        effect = (
            "It restarts; its researcher keeps it."
            if action == "reboot"
            else "A fresh VM of the same name takes its place; what is on its disk is lost."
        )
        self.confirm.ask(
            f"<p><strong>{what} {name}?</strong> {effect}</p>",
            lambda: self._heal(action),
            confirm_label=f"{what} {self.state.hostname}",
        )

    def _heal(self, action: str) -> None:
        self.state.heal(action, self._heal_progress)

    def _heal_progress(self, progress: FleetProgress) -> None:
        """The fleet's thread: say how it ended; the table follows through its own updates."""
        if progress.state == "failed":
            self.state.message = f"Repair #{progress.operation_id} failed: {progress.error}"
        elif progress.finished:
            self.state.message = f"Repair #{progress.operation_id} finished: {progress.message}"
        self._on_change()

    def _ask_revoke(self) -> None:
        name = html.escape(self.state.hostname)
        self.confirm.ask(
            f"<p><strong>Revoke the credential of {name}?</strong> It can no longer register, "
            "report or receive a researcher until it is enrolled again.</p>",
            self._revoke,
            confirm_label=f"Revoke {self.state.hostname}",
        )

    def _revoke(self) -> None:
        if self.state.revoke():
            self._on_change()
            self.open(self.state.hostname)
