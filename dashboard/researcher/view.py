"""The researcher page at ``/``: ask for a VM with an email and a Chrome Remote Desktop command.

The browser keeps its seat (email, seat token, hostname, PIN) in ``localStorage`` through
:class:`SeatStore`, so a researcher who comes back sees the VM, can paste a fresh command
(codes expire) and can release it. Everything a person typed is escaped before it is shown.
"""

from __future__ import annotations

import html
import json
from typing import Any

import panel as pn
import param
from panel.custom import JSComponent
from panel.viewable import Viewer

from dashboard.researcher.state import RequestState, Seat

FREE_COUNT_PERIOD_MS = 5000
MAX_STORED = 2048  # what the browser sends back is untrusted: a seat is a few hundred bytes
HEADLESS_URL = "https://remotedesktop.google.com/headless"
ACCESS_URL = "https://remotedesktop.google.com/access"
COMMAND_PLACEHOLDER = (
    'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/..." '
    '--redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)'
)
INTRO = f"""# LabLink

Get a GPU machine in the cloud and use it from your browser with Chrome Remote Desktop.

1. Open [{HEADLESS_URL}]({HEADLESS_URL}), click **Begin**, **Next** and **Authorize**.
2. Copy the command shown for **Debian Linux**. It looks like the example in the box below.
3. Paste it here with your email and submit. The command works for a few minutes only.
"""
STYLES = """
.lablink-msg { padding: 8px 12px; border-radius: 6px; margin: 4px 0; }
.lablink-info { background: #e7f1fb; color: #123d63; }
.lablink-success { background: #e6f4ea; color: #14532d; }
.lablink-warning { background: #fff4e5; color: #663c00; }
.lablink-danger { background: #fdecea; color: #611a15; }
.lablink-field-error { color: #b3261e; font-size: 0.9em; margin: 0 10px; }
"""


class SeatStore(JSComponent):
    """Mirrors one ``localStorage`` entry: the browser sends it once loaded; Python writes it."""

    stored = param.String(default="", doc="The stored seat as JSON; empty when none.")
    loaded = param.Boolean(default=False, doc="The browser has sent what it had stored.")

    _esm = """
    const KEY = "lablink.seat";
    export function render({ model }) {
      let saved = "";
      try { saved = window.localStorage.getItem(KEY) || ""; } catch (e) { saved = ""; }
      model.stored = saved;
      model.loaded = true;
      model.on("stored", () => {
        try {
          if (model.stored) { window.localStorage.setItem(KEY, model.stored); }
          else { window.localStorage.removeItem(KEY); }
        } catch (e) { /* storage disabled: the seat lasts for this page only */ }
      });
      return document.createElement("span");
    }
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


class RequestView(Viewer):
    """The form, the live checks, the assigned VM and the free-VM count of one session."""

    state = param.ClassSelector(class_=RequestState, doc="The session's request state.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._email = pn.widgets.TextInput(
            label="Email", placeholder="you@university.edu", sizing_mode="stretch_width"
        )
        self._command = pn.widgets.TextAreaInput(
            label="Chrome Remote Desktop command",
            placeholder=COMMAND_PLACEHOLDER,
            rows=3,
            sizing_mode="stretch_width",
        )
        self._submit = pn.widgets.Button(label="Request a VM", color="primary", disabled=True)
        self._release = pn.widgets.Button(label="Release this VM", color="danger", visible=False)
        self._email_error = _html(margin=0)
        self._command_error = _html(margin=0)
        self._message = _html(sizing_mode="stretch_width")
        self._free = _html(margin=(0, 10))
        self._seat = _html(visible=False, sizing_mode="stretch_width")
        self._store = SeatStore(height=0, width=0, margin=0)
        self._wire()
        self._show_all()

    def _wire(self) -> None:
        self._email.param.watch(lambda e: setattr(self.state, "email", e.new or ""), "value_input")
        self._command.param.watch(
            lambda e: setattr(self.state, "crd_command", e.new or ""), "value_input"
        )
        self._submit.on_click(self._on_submit)
        self._release.on_click(self._on_release)
        self._store.param.watch(self._on_loaded, "loaded")
        self.state.param.watch(self._show_inputs, ["email", "crd_command"])
        self.state.param.watch(self._show_checks, ["email_error", "command_error", "valid"])
        self.state.param.watch(self._show_outcome, ["message", "message_kind", "busy"])
        self.state.param.watch(self._show_seat, ["seat"])
        self.state.param.watch(self._show_free, ["free_count"])

    def _show_all(self) -> None:
        self._show_inputs()
        self._show_checks()
        self._show_outcome()
        self._show_seat()
        self._show_free()

    def _show_inputs(self, *_: object) -> None:
        _set_text(self._email, self.state.email)
        _set_text(self._command, self.state.crd_command)

    def _show_checks(self, *_: object) -> None:
        self._email_error.object = _field_error(self.state.email_error)
        self._command_error.object = _field_error(self.state.command_error)
        self._submit.disabled = not self.state.valid or self.state.busy

    def _show_outcome(self, *_: object) -> None:
        self._message.object = message_html(self.state.message, self.state.message_kind)
        self._submit.disabled = not self.state.valid or self.state.busy
        self._release.disabled = self.state.busy

    def _show_seat(self, *_: object) -> None:
        seat = self.state.seat
        held = seat is not None
        self._seat.object = seat_html(seat) if seat is not None else ""
        self._seat.visible = self._release.visible = held
        self._email.disabled = held
        self._submit.label = "Send the new command" if held else "Request a VM"
        self._persist()

    def _persist(self) -> None:
        if self._store.loaded:
            seat = self.state.seat
            self._store.stored = json.dumps(seat.as_dict()) if seat is not None else ""

    def _show_free(self, *_: object) -> None:
        count = self.state.free_count
        text = "" if count is None else f"{count} VM{'' if count == 1 else 's'} free right now"
        self._free.object = message_html(text, "info", role="status")

    async def _on_submit(self, _: object) -> None:
        await self.state.submit()

    async def _on_release(self, _: object) -> None:
        await self.state.release()

    async def _on_loaded(self, _: object) -> None:
        text = self._store.stored
        try:
            stored = Seat.from_dict(json.loads(text)) if 0 < len(text) <= MAX_STORED else None
        except ValueError:
            stored = None
        await self.state.restore(stored)
        self._persist()

    def start_refreshing(self) -> None:
        """Count free VMs now and every few seconds, for this session only. Panel stops the
        periodic callback when the session is destroyed."""
        pn.state.onload(self.state.refresh_free_count)
        pn.state.add_periodic_callback(self.state.refresh_free_count, FREE_COUNT_PERIOD_MS)

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Column(
            self._email,
            self._email_error,
            self._command,
            self._command_error,
            pn.Row(self._submit, self._release),
            self._message,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.pane.Markdown(INTRO, sizing_mode="stretch_width"),
            self._free,
            self._seat,
            form,
            self._store,
            max_width=760,
            sizing_mode="stretch_width",
        )


def _html(**params: Any) -> pn.pane.HTML:
    """An HTML pane with the page's styles (each pane has its own shadow root)."""
    return pn.pane.HTML("", stylesheets=[STYLES], **params)


def _set_text(widget: pn.widgets.TextInput | pn.widgets.TextAreaInput, value: str) -> None:
    if widget.value_input != value:
        widget.param.update(value=value, value_input=value)


def _field_error(text: str) -> str:
    return (
        f'<div class="lablink-field-error" role="alert">{html.escape(text)}</div>' if text else ""
    )
