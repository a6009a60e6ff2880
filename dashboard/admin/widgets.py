"""Small display helpers shared by the admin views: escaped notices and progress."""

from __future__ import annotations

import html

import panel as pn

from dashboard.look import NOTICE_TONES, TONES
from lablink_core.fleet.base import FleetProgress


def notice_html(text: str, kind: str = "info") -> str:
    """``text`` escaped, in a box of the kind's tone (empty text: nothing). Inline styles, so
    any pane can show it."""
    if not text:
        return ""
    tone = TONES[NOTICE_TONES.get(kind, "held")]
    return (
        f'<div role="status" style="color:{tone.text};background:{tone.background};'
        f"border:1px solid {tone.border};padding:8px 12px;border-radius:6px;"
        f'white-space:pre-wrap">{html.escape(text)}</div>'
    )


def notice(text: str, kind: str = "info") -> pn.pane.HTML:
    """A pane showing :func:`notice_html`."""
    return pn.pane.HTML(notice_html(text, kind), sizing_mode="stretch_width")


def kind_of(message: str) -> str:
    lowered = message.lower()
    if "failed" in lowered or "cannot" in lowered or "refused" in lowered:
        return "danger"
    if "still running" in lowered or "assigned" in lowered:
        return "warning"
    if "finished" in lowered or "saved" in lowered or "released" in lowered:
        return "success"
    return "info"


def progress_text(progress: FleetProgress | None) -> str:
    if progress is None:
        return ""
    return (
        f"Operation #{progress.operation_id} ({progress.kind}): {progress.state}, "
        f"{progress.done} of {progress.planned} done. {progress.message}"
    )


def progress_value(progress: FleetProgress | None) -> int:
    """0-100 for a pn.indicators.Progress."""
    if progress is None:
        return 0
    return round(progress.fraction * 100)
