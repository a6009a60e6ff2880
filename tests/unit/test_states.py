"""VM states as the pages show them: one word, a tone that means the same everywhere (red
only for trouble), and the reason; no column reads backwards."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from dashboard.admin.frames import COLUMNS, TITLES, vm_frame
from dashboard.look import TONES, badge
from dashboard.states import STATE_MEANINGS, STATE_TONES, legend_html, silence, vm_state

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def vm(**values: Any) -> dict[str, Any]:
    base = {"hostname": "vm-1", "status": "available", "last_heard_at": NOW, "created_at": NOW}
    return {**base, **values}


@pytest.mark.parametrize(
    ("row", "key"),
    [
        (vm(), "available"),
        (vm(status="assigned", user_email="a@x.org"), "assigned"),
        (vm(status="connected", user_email="a@x.org"), "connected"),
        (vm(status="booting", last_heard_at=None), "booting"),
        (vm(status="error"), "error"),
        (vm(status="recycling"), "recycling"),
        (vm(unresponsive=True), "unresponsive"),
        (vm(status="assigned", user_email="a@x.org", unresponsive=True), "unresponsive"),
        (vm(health_state="unhealthy"), "unhealthy"),
        (vm(healing="rebooting", unresponsive=True), "rebooting"),
        (vm(healing="replacing"), "replacing"),
        (vm(credential_revoked=True, unresponsive=True), "revoked"),
        (vm(status="booting", credential_revoked=True), "booting"),  # not enrolled yet
    ],
)
def test_the_state_that_matters_most_is_shown(row: dict[str, Any], key: str) -> None:
    assert vm_state(row, now=NOW).key == key


def test_every_state_has_a_tone_a_meaning_and_red_only_for_trouble() -> None:
    assert set(STATE_TONES) == set(STATE_MEANINGS)
    assert set(STATE_TONES.values()) <= set(TONES)
    red = {key for key, tone in STATE_TONES.items() if tone == "trouble"}
    assert red == {"unhealthy", "unresponsive", "error"}
    assert "ll-trouble" not in vm_state(vm()).badge_html()


def test_the_reason_comes_from_the_row_then_the_latest_action() -> None:
    assert vm_state(vm(status="error", status_reason="GPU Xid 79")).reason == "GPU Xid 79"
    action = {"action": "reboot", "actor": "healer", "reason": "no heartbeat", "outcome": "ok"}
    assert vm_state(vm(healing="rebooting"), action).reason == "reboot by healer: no heartbeat (ok)"
    silent = vm(unresponsive=True, last_heard_at=NOW - dt.timedelta(minutes=7))
    assert vm_state(silent, now=NOW).reason == "not heard from for 7 min"
    assert silence(None) == "never" and silence(NOW - dt.timedelta(hours=3), NOW) == "3 h"


def test_badges_and_reasons_are_escaped() -> None:
    html = vm_state(vm(status="error", status_reason='<img src=x onerror="1">')).badge_html()
    assert "<img" not in html and "&lt;img" in html
    assert badge("<b>", "ok") == '<span class="ll-badge ll-ok">&lt;b&gt;</span>'
    assert legend_html().count("ll-badge") == len(STATE_TONES)


def test_the_table_has_no_backwards_column() -> None:
    assert "unresponsive" not in COLUMNS and "Unresponsive" not in TITLES.values()
    frame = vm_frame(
        [vm(hostname="free"), vm(hostname="silent", unresponsive=True)],
        now=NOW,
        actions={"free": {"action": "release", "actor": "admin", "reason": "asked"}},
    )
    assert list(frame["status"]) == ["available", "unresponsive"]
    assert list(frame["in_use"]) == [False, False]  # shown as "" (not a red cross) when free
    assert frame.loc["free", "reason"] == "release by admin: asked"
    assert frame.loc["silent", "reason"].startswith("not heard from")
