"""The configuration's reference as a Markdown table, made from the params' own
documentation (``lablink config reference``); the README's table is this output, and a test
keeps it so."""

from __future__ import annotations

from typing import Any

from lablink_core.config.loading import _SECTIONS, LablinkConfig, _keys


def _default(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return "—" if value is None or value == "" else f"`{value}`"


def markdown_reference(config: LablinkConfig | None = None) -> str:
    """Every key with its default and meaning, one row each, in declaration order."""
    config = config or LablinkConfig()
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name in _SECTIONS:
        section = config.section(name)
        for key in _keys(section):
            doc = (section.param[key].doc or "").replace("|", "\\|")
            lines.append(f"| `{name}.{key}` | {_default(getattr(section, key))} | {doc} |")
    return "\n".join(lines) + "\n"
