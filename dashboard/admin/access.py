"""/admin/access: who may take a VM (the access rule) and when the fleet is torn down.

The states hold params and call lablink_core (:class:`~lablink_core.access.AccessPolicy`,
:class:`~lablink_core.schedules.ScheduleStore`); the views hold the widgets. Blocking calls
are short (a settings write, a schedule insert), made from the button callbacks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from dashboard.admin.widgets import kind_of, notice_html
from lablink_core.access import AccessPolicy, AccessRule, parse_allowlist
from lablink_core.config import ACCESS_MODES
from lablink_core.errors import LablinkError
from lablink_core.schedules import ScheduleStore, zone

MODE_LABELS = {
    "open": "Open: anyone with the page",
    "code": "Event code: people who know the code you announce",
    "allowlist": "List: the emails and domains below",
    "signin": "Sign-in: verified emails (OpenID Connect)",
}


def access_summary(rule: AccessRule) -> str:
    """One line for the overview: the rule in force, with the event code to announce."""
    text = f"Who may take a VM: {MODE_LABELS.get(rule.mode, rule.mode)}"
    if rule.mode == "code" and rule.event_code:
        text += f". The event code to announce: {rule.event_code}"
    elif rule.mode == "allowlist":
        text += f" ({len(rule.allowlist)} on the list)"
    return notice_html(text + ". Change it on Access and schedules.", "info")


class AccessState(param.Parameterized):
    """The access rule being edited."""

    mode = param.Selector(default="open", objects=list(ACCESS_MODES), doc="The access mode.")
    event_code = param.String(default="", doc="The event code, for the 'code' mode.")
    allowlist = param.String(default="", doc="Emails and @domains, one per line or CSV.")
    message = param.String(default="", doc="What happened to the last change.")

    def __init__(self, policy: AccessPolicy, user: str, **params: Any) -> None:
        super().__init__(**params)
        self._policy = policy
        self._user = user
        self.load()

    def load(self) -> None:
        rule = self._policy.rule()
        self.param.update(
            mode=rule.mode, event_code=rule.event_code or "", allowlist="\n".join(rule.allowlist)
        )

    def save(self) -> bool:
        try:
            entries = parse_allowlist(self.allowlist)
            rule = self._policy.change(
                mode=self.mode, event_code=self.event_code, allowlist=entries, by=self._user
            )
        except LablinkError as error:
            self.message = f"Not saved: {error.message}"
            return False
        self.load()
        self.message = f"Saved: {MODE_LABELS[rule.mode]} ({len(rule.allowlist)} on the list)."
        return True


class ScheduleState(param.Parameterized):
    """Teardown schedules: the list, and the form to add one."""

    kind = param.Selector(default="once", objects=["once", "daily"], doc="Once, or every day.")
    when = param.String(default="", doc="'2026-12-04 17:30' (once) or '17:30' (daily).")
    timezone = param.String(default="UTC", doc="IANA time zone of 'when'.")
    schedules = param.DataFrame(default=None, allow_None=True, doc="The schedules.")
    message = param.String(default="", doc="What happened to the last change.")

    def __init__(self, store: ScheduleStore, user: str, **params: Any) -> None:
        super().__init__(**params)
        self._store = store
        self._user = user
        self.refresh()

    def refresh(self) -> None:
        rows = self._store.list()
        columns = ["id", "kind", "next_run_at", "timezone", "last_run_at", "last_outcome"]
        self.schedules = pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)

    def add(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            tz = zone(self.timezone.strip() or "UTC")
            if self.kind == "daily":
                at = dt.time.fromisoformat(self.when.strip())
                made = self._store.add_daily(at, tz.key, now=now, by=self._user)
            else:
                moment = dt.datetime.fromisoformat(self.when.strip()).replace(tzinfo=tz)
                made = self._store.add_once(moment, now=now, by=self._user)
        except ValueError:
            self.message = "Not added: write the time as 2026-12-04 17:30 (once) or 17:30 (daily)."
            return False
        except LablinkError as error:
            self.message = f"Not added: {error.message}"
            return False
        self.refresh()
        self.message = f"Teardown #{made} scheduled."
        return True

    def remove(self, schedule_id: int) -> None:
        try:
            self._store.remove(schedule_id)
        except LablinkError as error:
            self.message = error.message
            return
        self.refresh()
        self.message = f"Teardown #{schedule_id} removed."


class AccessView(Viewer):
    """The access rule's form."""

    def __init__(self, state: AccessState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.mode = pn.widgets.RadioBoxGroup.from_param(
            state.param.mode, options={label: mode for mode, label in MODE_LABELS.items()}
        )
        self.code = pn.widgets.TextInput.from_param(state.param.event_code, label="Event code")
        self.allowlist = pn.widgets.TextAreaInput.from_param(
            state.param.allowlist, label="Emails and @domains", rows=6
        )
        self.upload = pn.widgets.FileInput(
            label="Or upload a CSV of emails", accept=".csv,.txt", multiple=False
        )
        self.upload.param.watch(self._uploaded, "value")
        self.save = pn.widgets.Button(label="Save the access rule", color="primary")
        self.save.on_click(lambda _: state.save())
        self.notice = pn.pane.HTML("", sizing_mode="stretch_width")
        state.param.watch(
            lambda e: setattr(self.notice, "object", notice_html(e.new, kind_of(e.new))), "message"
        )

    def _uploaded(self, event: Any) -> None:
        if event.new:
            self.state.allowlist = bytes(event.new).decode("utf-8", "replace")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown("### Who may take a VM"),
            self.mode,
            self.code,
            self.allowlist,
            self.upload,
            self.save,
            self.notice,
            sizing_mode="stretch_width",
        )


class ScheduleView(Viewer):
    """Teardown schedules: add, list, remove."""

    def __init__(self, state: ScheduleState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.kind = pn.widgets.RadioButtonGroup.from_param(state.param.kind)
        self.when = pn.widgets.TextInput.from_param(state.param.when, label="When")
        self.timezone = pn.widgets.TextInput.from_param(state.param.timezone, label="Time zone")
        self.add = pn.widgets.Button(label="Schedule the teardown", color="warning")
        self.add.on_click(lambda _: state.add())
        self.remove_id = pn.widgets.IntInput(label="Schedule #", start=1, value=1, width=120)
        self.remove = pn.widgets.Button(label="Remove", color="danger")
        self.remove.on_click(lambda _: state.remove(int(self.remove_id.value)))
        self.table = pn.widgets.Tabulator.from_param(
            state.param.schedules, show_index=False, disabled=True, sizing_mode="stretch_width"
        )
        self.notice = pn.pane.HTML("", sizing_mode="stretch_width")
        state.param.watch(
            lambda e: setattr(self.notice, "object", notice_html(e.new, kind_of(e.new))), "message"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown(
                "### Scheduled teardown\nEvery VM of the fleet is destroyed at that time; "
                "researchers are warned 15 and 5 minutes before."
            ),
            self.kind,
            pn.Row(self.when, self.timezone),
            self.add,
            self.notice,
            self.table,
            pn.Row(self.remove_id, self.remove),
            sizing_mode="stretch_width",
        )
