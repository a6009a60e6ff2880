"""What state a VM is in, as a person reads it: one word, its tone, and why.

The VM table's ``status`` says where a VM is in its life (booting, available, assigned,
connected, error, recycling); other columns say what is wrong or under way (it is silent,
its GPU is unwell, the healer is rebooting it, its credential was revoked). The pages show
the one that matters most, in the same colours everywhere (see :mod:`dashboard.look`), with
the reason: the row's ``status_reason``, else its latest action's reason, else what the VM
last said about itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dashboard.look import badge

STATE_TONES: dict[str, str] = {
    "available": "ok",
    "assigned": "held",
    "connected": "active",
    "booting": "progress",
    "rebooting": "progress",
    "replacing": "progress",
    "recycling": "off",
    "revoked": "off",
    "unhealthy": "trouble",
    "unresponsive": "trouble",
    "error": "trouble",
}
"""Every state the pages show -> its tone. Red ("trouble") only for trouble."""

STATE_MEANINGS: dict[str, str] = {
    "available": "free: the next researcher may get it",
    "assigned": "held by a researcher, not connected yet",
    "connected": "a researcher's remote desktop is connected",
    "booting": "starting; not yet ready",
    "rebooting": "being restarted to repair it",
    "replacing": "being replaced by a fresh VM of the same name",
    "recycling": "being taken down or rebuilt; nobody gets it now",
    "revoked": "its credential was revoked: it cannot call in",
    "unhealthy": "its GPU reports a problem",
    "unresponsive": "not heard from lately: out of the free pool until it speaks",
    "error": "it reported an error",
}
"""State -> what it means, for the legend and the hover text."""


@dataclass(frozen=True)
class VMState:
    """The state a page shows for one VM."""

    key: str
    reason: str = ""

    @property
    def tone(self) -> str:
        return STATE_TONES.get(self.key, "off")

    @property
    def trouble(self) -> bool:
        return self.tone == "trouble"

    def badge_html(self) -> str:
        hover = self.reason or STATE_MEANINGS.get(self.key, "")
        return badge(self.key, self.tone, title=hover)


def state_key(vm: Mapping[str, Any]) -> str:
    """The one state that matters most for this VM row (from :meth:`VMRegistry.list`)."""
    if vm.get("credential_revoked") and vm.get("status") != "booting":
        return "revoked"
    healing = vm.get("healing")
    if healing in ("rebooting", "replacing"):
        return str(healing)
    status = str(vm.get("status") or "")
    if status in ("error", "recycling"):
        return status
    if vm.get("unresponsive"):
        return "unresponsive"
    if vm.get("health_state") == "unhealthy":
        return "unhealthy"
    return status if status in STATE_TONES else "booting"


def action_reason(action: Mapping[str, Any] | None) -> str:
    """ "reboot by healer: no heartbeat for 180 s" from an action-log row."""
    if not action:
        return ""
    who = f" by {action['actor']}" if action.get("actor") else ""
    reason = f": {action['reason']}" if action.get("reason") else ""
    outcome = f" ({action['outcome']})" if action.get("outcome") else ""
    return f"{action.get('action', '')}{who}{reason}{outcome}"


def vm_state(
    vm: Mapping[str, Any],
    latest_action: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> VMState:
    """The VM's state and the reason for it, most specific first."""
    key = state_key(vm)
    reason = str(vm.get("status_reason") or "") or action_reason(latest_action)
    if key == "unresponsive" and not reason:
        reason = f"not heard from for {silence(vm.get('last_heard_at'), now)}"
    if not reason and key in ("error", "unhealthy"):
        reason = str(vm.get("status_message") or vm.get("health") or "")
    return VMState(key, reason)


def silence(moment: object, now: dt.datetime | None = None) -> str:
    """How long ago ``moment`` was, in words: "45 s", "3 min", "2 h", "never"."""
    if not isinstance(moment, dt.datetime):
        return "never"
    seconds = max(0, round(((now or dt.datetime.now(dt.UTC)) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def legend_html() -> str:
    """Every state's badge with what it means (the instance page's key)."""
    items = "".join(
        f"<li>{VMState(key).badge_html()} {meaning}</li>" for key, meaning in STATE_MEANINGS.items()
    )
    return f'<ul class="ll-legend" aria-label="What the states mean">{items}</ul>'
