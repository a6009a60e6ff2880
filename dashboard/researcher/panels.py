"""The part of the researcher page about what this browser holds: the VM (with its session
end, repairs, an extension, and a release that asks twice) or the place in the queue."""

from __future__ import annotations

import html
from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from dashboard.researcher.seat import Seat
from dashboard.researcher.state import RequestState

ACCESS_URL = "https://remotedesktop.google.com/access"
STYLES = """
.lablink-msg { padding: 8px 12px; border-radius: 6px; margin: 4px 0; }
.lablink-info { background: #e7f1fb; color: #123d63; }
.lablink-success { background: #e6f4ea; color: #14532d; }
.lablink-warning { background: #fff4e5; color: #663c00; }
.lablink-danger { background: #fdecea; color: #611a15; }
.lablink-field-error { color: #b3261e; font-size: 0.9em; margin: 0 10px; }
.lablink-hint { color: #444; font-size: 0.9em; margin: 0 10px; }
"""


def message_html(text: str, kind: str, *, role: str = "alert") -> str:
    return (
        f'<div class="lablink-msg lablink-{kind}" role="{role}">{html.escape(text)}</div>'
        if text
        else ""
    )


def seat_html(seat: Seat) -> str:
    host, pin = html.escape(seat.hostname), html.escape(seat.pin)
    pin_line = (
        f"<p>PIN: <b data-testid='pin'>{pin}</b></p>"
        if seat.pin
        else "<p>PIN: paste a fresh command below to see it again.</p>"
    )
    return (
        f"<p>Your VM: <b data-testid='hostname'>{host}</b></p>{pin_line}"
        f"<p>To connect, open <a href='{ACCESS_URL}' target='_blank' rel='noopener'>"
        f"{ACCESS_URL}</a>, choose <b>{host}</b> and enter the PIN. It can take a minute "
        "to appear. If it does not, get a fresh command and send it below.</p>"
    )


def queue_html(position: int | None) -> str:
    place = "" if position is None else f"number <b data-testid='position'>{position}</b> "
    return (
        f"<p>You are {place}in the queue. Keep this page open: the next free VM is yours, "
        "and it will show here.</p>"
    )


def html_pane(**params: Any) -> pn.pane.HTML:
    """An HTML pane with the page's styles (each pane has its own shadow root)."""
    return pn.pane.HTML("", stylesheets=[STYLES], **params)


class SeatPanel(Viewer):
    """The VM or queue place of this browser, and what to do with it."""

    state = param.ClassSelector(class_=RequestState, doc="The session's request state.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._seat = html_pane(visible=False, sizing_mode="stretch_width")
        self._note = html_pane(sizing_mode="stretch_width")
        self._warning = html_pane(sizing_mode="stretch_width")
        self._extend = pn.widgets.Button(label="Give me more time", color="primary", visible=False)
        self._release = pn.widgets.Button(label="Release this VM", color="danger", visible=False)
        self._confirm = pn.widgets.Button(label="Yes, release it", color="danger", visible=False)
        self._cancel = pn.widgets.Button(label="Keep it", visible=False)
        self._question = html_pane(sizing_mode="stretch_width")
        self._join = pn.widgets.Button(label="Wait in the queue", color="primary", visible=False)
        self._leave = pn.widgets.Button(label="Leave the queue", visible=False)
        # Panel awaits a coroutine function it is given (not a lambda returning a coroutine).
        self._extend.on_click(self._on_extend)
        self._release.on_click(lambda _: self.state.ask_release())
        self._cancel.on_click(lambda _: self.state.cancel_release())
        self._confirm.on_click(self._on_confirm)
        self._join.on_click(self._on_join)
        self._leave.on_click(self._on_leave)
        names = ["seat", "position", "note", "warning", "can_extend", "confirming_release"]
        self.state.param.watch(self._show, [*names, "queue_offered", "busy"])
        self._show()

    async def _on_extend(self, _: object) -> None:
        await self.state.extend()

    async def _on_confirm(self, _: object) -> None:
        await self.state.release()

    async def _on_join(self, _: object) -> None:
        await self.state.join_queue()

    async def _on_leave(self, _: object) -> None:
        await self.state.leave_queue()

    def _show(self, *_: object) -> None:
        state, seat = self.state, self.state.seat
        holding, queued = seat is not None and not seat.queued, seat is not None and seat.queued
        self._seat.object = (
            seat_html(seat) if holding else (queue_html(state.position) if queued else "")
        )
        self._seat.visible = seat is not None
        self._note.object = message_html(state.note, "info", role="status")
        self._warning.object = message_html(state.warning, "warning")
        self._extend.visible = holding and state.can_extend
        asking = holding and state.confirming_release
        self._release.visible = holding and not asking
        self._confirm.visible = self._cancel.visible = asking
        self._question.object = (
            message_html(
                f"Release {seat.hostname}? Anything not saved elsewhere is lost.", "warning"
            )
            if asking and seat is not None
            else ""
        )
        self._join.visible = state.queue_offered and seat is None
        self._leave.visible = queued
        for button in (self._release, self._confirm, self._join, self._leave, self._extend):
            button.disabled = state.busy

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self._seat,
            self._note,
            self._warning,
            pn.Row(self._extend, self._release, self._join, self._leave),
            self._question,
            pn.Row(self._confirm, self._cancel),
            sizing_mode="stretch_width",
        )
