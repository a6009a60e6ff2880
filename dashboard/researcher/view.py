"""The researcher page at ``/``: ask for a VM with an email and a Chrome Remote Desktop command.

The browser keeps its seat (email, seat token, hostname, PIN) in ``localStorage`` through
:class:`SeatStore`, so a researcher who comes back sees the VM, can paste a fresh command
(codes expire) and can release it. Everything a person typed is escaped before it is shown.
"""

from __future__ import annotations

import functools
import html
import json
from typing import Any

import panel as pn
import param
from panel.custom import JSComponent
from panel.viewable import Viewer

from dashboard.admin.ticker import SessionTicker
from dashboard.look import INPUT_CSS
from dashboard.public_state import PublicSnapshot, PublicState
from dashboard.researcher.panels import SeatPanel, html_pane, message_html
from dashboard.researcher.state import RequestState, Seat

MAX_STORED = 2048  # what the browser sends back is untrusted: a seat is a few hundred bytes
HEADLESS_URL = "https://remotedesktop.google.com/headless"
COMMAND_PLACEHOLDER = (
    'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/..." '
    '--redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)'
)
INTRO = f"""# Request a VM

Get a GPU machine in the cloud and use it from your browser with Chrome Remote Desktop.

1. Open [{HEADLESS_URL}]({HEADLESS_URL}), click **Begin**, **Next** and **Authorize**.
2. Copy the command shown for **Debian Linux**. It looks like the example in the box below.
3. Paste it here with your email and submit. The command works for a few minutes only.
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


class RequestView(Viewer):
    """The form, the live checks, the assigned VM and the free-VM count of one session."""

    state = param.ClassSelector(class_=RequestState, doc="The session's request state.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._email = pn.widgets.TextInput(
            label="Email",
            placeholder="you@university.edu",
            sizing_mode="stretch_width",
            stylesheets=[INPUT_CSS],
        )
        self._command = pn.widgets.TextAreaInput(
            label="Chrome Remote Desktop command",
            placeholder=COMMAND_PLACEHOLDER,
            rows=3,
            sizing_mode="stretch_width",
        )
        self._code = pn.widgets.TextInput(
            label="Event code", placeholder="announced by your instructor", visible=False
        )
        self._submit = pn.widgets.Button(label="Request a VM", color="primary", disabled=True)
        self._hint = html_pane(margin=0)
        self._signin = html_pane(visible=False)
        self._email_error = html_pane(margin=0)
        self._command_error = html_pane(margin=0)
        self._message = html_pane(sizing_mode="stretch_width")
        self._free = html_pane(margin=(0, 10))
        self._store = SeatStore(height=0, width=0, margin=0)
        # Watchers run in the order they were added: the browser's copy of a new seat is
        # written before the panel shows its PIN, so a reload once the PIN shows keeps it.
        self.state.param.watch(self._persist, ["seat"])
        self._panel = SeatPanel(state=self.state)
        self._ticker: SessionTicker | None = None
        self._pending: PublicSnapshot | None = None
        self._wire()
        self._show_all()

    def _wire(self) -> None:
        self._email.param.watch(lambda e: setattr(self.state, "email", e.new or ""), "value_input")
        self._command.param.watch(
            lambda e: setattr(self.state, "crd_command", e.new or ""), "value_input"
        )
        self._code.param.watch(
            lambda e: setattr(self.state, "event_code", e.new or ""), "value_input"
        )
        self._submit.on_click(self._on_submit)
        self._store.param.watch(self._on_loaded, "loaded")
        self.state.param.watch(self._show_inputs, ["email", "crd_command"])
        self.state.param.watch(
            self._show_checks, ["email_error", "command_error", "valid", "missing"]
        )
        self.state.param.watch(self._show_outcome, ["message", "message_kind", "busy"])
        self.state.param.watch(self._show_seat, ["seat"])
        self.state.param.watch(self._show_free, ["free_count"])

    def show_signin(self, required: bool, email: str | None) -> None:
        """In the 'signin' mode the email comes from the sign-in, not from the form."""
        if not required:
            return
        self._signin.visible = True
        if email:
            self._signin.object = (
                f"Signed in as <b>{html.escape(email)}</b> · <a href='/signout'>Sign out</a>"
            )
            self.state.email = email
            self._email.disabled = True
        else:
            self._signin.object = "<a href='/signin?next=/'>Sign in</a> to request a VM."

    def show_event_code(self, shown: bool) -> None:
        """The workshop asks for its event code (access mode 'code')."""
        self._code.visible = shown

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
        hint = self.state.missing if not self.state.valid else ""
        self._hint.object = f'<div class="lablink-hint">{html.escape(hint)}</div>' if hint else ""
        self._show_submit()

    def _show_submit(self) -> None:
        seat = self.state.seat
        queued = seat is not None and seat.queued
        self._submit.disabled = not self.state.valid or self.state.busy or queued

    def _show_outcome(self, *_: object) -> None:
        self._message.object = message_html(self.state.message, self.state.message_kind)
        self._show_submit()

    def _show_seat(self, *_: object) -> None:
        seat = self.state.seat
        self._email.disabled = seat is not None
        holding = seat is not None and not seat.queued
        self._submit.label = "Send the new command" if holding else "Request a VM"
        self._show_submit()

    def _persist(self, *_: object) -> None:
        if self._store.loaded:
            seat = self.state.seat
            self._store.stored = json.dumps(seat.as_dict()) if seat is not None else ""

    def _show_free(self, *_: object) -> None:
        count = self.state.free_count
        text = "" if count is None else f"{count} VM{'' if count == 1 else 's'} free right now"
        self._free.object = message_html(text, "info", role="status")

    async def _on_submit(self, _: object) -> None:
        await self.state.submit()

    async def _on_loaded(self, _: object) -> None:
        text = self._store.stored
        try:
            stored = Seat.from_dict(json.loads(text)) if 0 < len(text) <= MAX_STORED else None
        except ValueError:
            stored = None
        await self.state.restore(stored)
        if self.state.seat is None:
            await self.state.restore_from_cookie(self._cookie_token)
        self._persist()

    _cookie_token: str | None = None

    def attach(self, public: PublicState, cookie_token: str | None = None) -> None:
        """Follow the process's shared snapshot for this session (free count, queue place,
        session end), and recognise the seat cookie /request_vm set. Unsubscribes when the
        session is destroyed."""
        self._cookie_token = cookie_token
        doc = pn.state.curdoc
        self._ticker = SessionTicker(self._apply_pending, doc)
        unsubscribe = public.subscribe(self._on_snapshot)
        self.state.on_queue_entry = lambda old, new: _follow(public, old, new)

        def detach(_context: object) -> None:
            unsubscribe()
            _follow(public, self.state.entry_id, None)
            if self._ticker is not None:
                self._ticker.close()

        if doc is not None and doc.session_context is not None:
            pn.state.on_session_destroyed(detach)
        self._on_snapshot(public.snapshot)

    def _on_snapshot(self, snapshot: PublicSnapshot) -> None:
        """From the reader's thread: keep the newest snapshot, ask for a tick."""
        self._pending = snapshot
        if self._ticker is not None:
            self._ticker.request()

    def _apply_pending(self) -> None:
        snapshot, self._pending = self._pending, None
        if snapshot is not None:
            # Bokeh may run this tick on a worker thread: let Panel schedule the coroutine on
            # the server's loop, with this session's document.
            pn.state.execute(functools.partial(self.state.apply, snapshot))

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Column(
            self._signin,
            self._email,
            self._email_error,
            self._command,
            self._command_error,
            self._code,
            pn.Row(self._submit),
            self._hint,
            self._message,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.pane.Markdown(INTRO, sizing_mode="stretch_width"),
            self._free,
            self._panel,
            form,
            self._store,
            max_width=760,
            sizing_mode="stretch_width",
        )


def _follow(public: PublicState, old: int | None, new: int | None) -> None:
    """Keep the queue entry shown on this page alive (and stop keeping the old one)."""
    if old is not None:
        public.let_go(old)
    if new is not None:
        public.keep_alive(new)


def _set_text(widget: pn.widgets.TextInput | pn.widgets.TextAreaInput, value: str) -> None:
    if widget.value_input != value:
        widget.param.update(value=value, value_input=value)


def _field_error(text: str) -> str:
    return (
        f'<div class="lablink-field-error" role="alert">{html.escape(text)}</div>' if text else ""
    )
