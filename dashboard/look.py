"""One look for every page: the palette, the type, and the small HTML pieces (badges, notices,
cards) that the pages share.

Colours mean the same everywhere: green is ready, blue and violet are a researcher's, amber
is work in progress, grey is out of service on purpose, and red is trouble, and only
trouble. Each tone is a dark text on a light tint, both taken from Bootstrap's alert
colours (contrast above 4.5:1, WCAG AA). No font is fetched: the type is the system's own
sans-serif stack, so a workshop room without internet sees the same page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import panel as pn


@dataclass(frozen=True)
class Tone:
    """A text colour on a background, with a border between the two."""

    text: str
    background: str
    border: str


TONES: dict[str, Tone] = {
    "ok": Tone("#0f5132", "#d1e7dd", "#a3cfbb"),
    "held": Tone("#084298", "#cfe2ff", "#9ec5fe"),
    "active": Tone("#3d2785", "#e2dcf7", "#c5b8ef"),
    "progress": Tone("#664d03", "#fff3cd", "#ffe69c"),
    "off": Tone("#41464b", "#e2e3e5", "#c4c8cb"),
    "trouble": Tone("#842029", "#f8d7da", "#f1aeb5"),
}
"""Tone name -> colours. "trouble" is the only red."""

NOTICE_TONES = {"info": "held", "success": "ok", "warning": "progress", "danger": "trouble"}
"""The notice kinds the pages use -> their tone."""

PRIMARY = "#0b5cad"
HEADER = "#0d3b66"
FONT = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", '
    '"Liberation Sans", Arial, sans-serif'
)
MONO = 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace'


def _tone_rules() -> str:
    rules = []
    for name, tone in TONES.items():
        rules.append(
            f".ll-{name} {{ color: {tone.text}; background: {tone.background}; "
            f"border-color: {tone.border}; }}"
        )
    return "\n".join(rules)


INPUT_CSS = """
.bk-input:disabled { background-color: #e9ecef; color: #495057; border-color: #ced4da; }
"""
"""A disabled input reads as disabled, not as a primary-coloured bar (widgets' stylesheets)."""


def _kpi_rules() -> str:
    return "\n".join(
        f".ll-kpi-{name} {{ border-left-color: {tone.text}; }}" for name, tone in TONES.items()
    )


COMPONENT_CSS = f"""
:host {{ font-family: {FONT}; }}
.ll-badge {{ display: inline-block; padding: 1px 8px; border-radius: 999px; border: 1px solid;
  font-size: 0.85em; font-weight: 600; line-height: 1.5; white-space: nowrap; }}
.ll-notice {{ padding: 8px 12px; border-radius: 6px; border: 1px solid; margin: 4px 0;
  white-space: pre-wrap; }}
.ll-card {{ border: 1px solid #dee2e6; border-radius: 8px; padding: 12px 16px;
  background: #fff; }}
.ll-muted {{ color: #495057; }}
.ll-kpi {{ font-size: 2rem; font-weight: 700; line-height: 1.1; }}
.ll-kpi-label {{ color: #495057; font-size: 0.9rem; }}
.ll-log {{ font-family: {MONO}; font-size: 12px; white-space: pre-wrap; margin: 0;
  background: #1e1e1e; color: #e8e8e8; padding: 8px; border-radius: 6px;
  max-height: 320px; overflow-y: auto; }}
table.ll-list {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
table.ll-list th, table.ll-list td {{ text-align: left; padding: 4px 8px;
  border-bottom: 1px solid #dee2e6; vertical-align: top; }}
.ll-legend {{ list-style: none; padding: 0; margin: 0; columns: 2 320px; }}
.ll-legend li {{ margin: 4px 0; }}
.ll-lead {{ color: #343a40; margin: 0 0 4px 0; }}
.ll-kpis {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr));
  gap: 12px; }}
.ll-kpi-card {{ border-left-width: 6px; }}
{_kpi_rules()}
a {{ color: {PRIMARY}; }}
{_tone_rules()}
"""
"""Classes for the HTML the pages build (each pane has a shadow root of its own, so every
pane that shows such HTML carries this stylesheet)."""

PAGE_CSS = f"""
:root {{
  --design-primary-color: {PRIMARY};
  --design-primary-text-color: #ffffff;
  --bs-font-sans-serif: {FONT};
  --bokeh-base-font: {FONT};
}}
body {{ font-family: {FONT}; background: #f5f7fa; }}
#header .title, #header .title:hover {{ color: #ffffff; font-weight: 600; }}
#header-items {{ justify-content: flex-end; padding-right: 12px; }}
#sidebar {{ background: #ffffff; border-right: 1px solid #dee2e6; }}
#main {{ padding-top: 8px; }}
"""
"""Styles of the page itself (outside the components' shadow roots)."""

NAV_CSS = f"""
nav ul {{ list-style: none; margin: 0 0 8px 0; padding: 0; display: flex; flex-wrap: wrap;
  gap: 4px; border-bottom: 2px solid #dee2e6; }}
nav a {{ display: block; padding: 8px 14px; border-radius: 6px 6px 0 0; color: #212529;
  text-decoration: none; font-weight: 500; }}
nav a:hover {{ background: #e9eef5; }}
nav a[aria-current="page"] {{ background: {PRIMARY}; color: #ffffff; }}
"""

HEADER_CSS = """
:host { color: #ffffff; }
.ll-who { color: #ffffff; white-space: nowrap; }
.ll-who a { color: #ffffff; font-weight: 600; margin-left: 8px; }
"""


CARD_STYLE = {
    "background": "#ffffff",
    "border": "1px solid #dee2e6",
    "border-radius": "8px",
    "padding": "8px 12px",
}
"""A layout's ``styles`` that make it a card."""


def html_pane(text: str = "", **params: Any) -> pn.pane.HTML:
    """An HTML pane that knows the shared classes (badges, notices, cards)."""
    stylesheets = [COMPONENT_CSS, *params.pop("stylesheets", [])]
    return pn.pane.HTML(text, stylesheets=stylesheets, **params)


def badge(label: str, tone: str, *, title: str = "") -> str:
    """A coloured pill with ``label``; ``title`` (escaped) shows on hover."""
    hover = f' title="{html.escape(title, quote=True)}"' if title else ""
    return f'<span class="ll-badge ll-{tone}"{hover}>{html.escape(label)}</span>'
