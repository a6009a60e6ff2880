"""Terraform's machine-readable UI (`-json`) as typed events, running counts and errors.

Pure functions and data only: no processes, no I/O (the collector is handed lines).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_LEVELS = {"error": "error", "warn": "warn", "warning": "warn"}
REDACTED = "***"


@dataclass(frozen=True)
class TerraformEvent:
    """One line of terraform's output.

    `kind` is terraform's "type" ("apply_start", "apply_complete", "planned_change",
    "change_summary", "diagnostic", "outputs", ...) or "log" for a line that is not JSON.
    `action` is the hook's or change's action ("create", "delete", "update", ...) when any;
    `detail` is a diagnostic's detail text (empty otherwise).
    """

    kind: str
    message: str
    resource: str | None
    level: str
    action: str | None = None
    detail: str = ""


@dataclass
class TerraformProgress:
    """Running counts of one terraform run, updated from its events."""

    planned: int = 0
    created: int = 0
    updated: int = 0
    destroyed: int = 0
    failed: int = 0

    def update(self, event: TerraformEvent) -> None:
        """Count `event` if it starts, ends or fails a change to one resource."""
        if event.kind == "planned_change":
            self.planned += 1
        elif event.kind == "apply_errored":
            self.failed += 1
        elif event.kind == "apply_complete":
            if event.action in ("create", "replace"):
                self.created += 1
            if event.action in ("delete", "replace"):
                self.destroyed += 1
            if event.action == "update":
                self.updated += 1


class TerraformError(Exception):
    """A terraform command failed.

    The message is the summaries of terraform's error diagnostics (or the last lines of
    its output when it printed none); `log` holds the whole output, secrets redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        log: str = "",
        diagnostics: Sequence[TerraformEvent] = (),
        returncode: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.log = log
        self.diagnostics = tuple(diagnostics)
        self.returncode = returncode

    def __str__(self) -> str:
        return self.message


class TerraformCancelled(TerraformError):
    """The run was stopped by `cancel()`; terraform exited cleanly and kept its state."""


class Redactor:
    """Replaces every known secret value in a text with "***"."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        values = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text


def _resource_of(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The resource address and action an event is about, if any."""
    for key in ("hook", "change"):
        part = record.get(key)
        if isinstance(part, dict):
            resource = part.get("resource")
            addr = resource.get("addr") if isinstance(resource, dict) else None
            action = part.get("action")
            return (
                addr if isinstance(addr, str) else None,
                action if isinstance(action, str) else None,
            )
    diagnostic = record.get("diagnostic")
    if isinstance(diagnostic, dict) and isinstance(diagnostic.get("address"), str):
        return diagnostic["address"], None
    return None, None


def _level_of(record: Mapping[str, Any]) -> str:
    diagnostic = record.get("diagnostic")
    if isinstance(diagnostic, dict) and isinstance(diagnostic.get("severity"), str):
        return _LEVELS.get(diagnostic["severity"], "info")
    level = record.get("@level")
    return _LEVELS.get(level, "info") if isinstance(level, str) else "info"


def parse_line(line: str) -> TerraformEvent | None:
    """Turn one output line into an event; None for a blank line."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return TerraformEvent(kind="log", message=text, resource=None, level="info")
    resource, action = _resource_of(record)
    diagnostic = record.get("diagnostic")
    detail = diagnostic.get("detail") if isinstance(diagnostic, dict) else None
    return TerraformEvent(
        kind=str(record.get("type", "log")),
        message=str(record.get("@message", "")),
        resource=resource,
        level=_level_of(record),
        action=action,
        detail=detail if isinstance(detail, str) else "",
    )


def error_message(events: Sequence[TerraformEvent], log_lines: Sequence[str]) -> str:
    """What went wrong, for a person: one line per distinct error diagnostic (its summary,
    and the first paragraph of its detail when it has one), else the output's tail."""
    summaries: list[str] = []
    for event in events:
        if event.kind == "diagnostic" and event.level == "error":
            summary = event.message.removeprefix("Error: ")
            detail = " ".join(event.detail.strip().split("\n\n")[0].split())
            if detail:
                summary = f"{summary}: {detail}"
            if summary not in summaries:
                summaries.append(summary)
    if summaries:
        return "\n".join(summaries)
    tail = [line for line in log_lines if line.strip()][-5:]
    return "\n".join(tail) or "terraform failed without printing an error"


EventCallback = Callable[[TerraformEvent, TerraformProgress], None]


class OutputCollector:
    """The line handler of one command: redacts, parses, counts, keeps the log, notifies."""

    def __init__(self, redact: Redactor, on_event: EventCallback | None) -> None:
        self.redact = redact
        self.on_event = on_event
        self.progress = TerraformProgress()
        self.diagnostics: list[TerraformEvent] = []
        self.lines: list[str] = []
        self.callback_failed = False

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def __call__(self, raw: str) -> None:
        line = self.redact(raw)
        self.lines.append(line)
        event = parse_line(line)
        if event is None:
            return
        if event.kind == "diagnostic":
            self.diagnostics.append(event)
        self.progress.update(event)
        if self.on_event is None:
            return
        try:
            self.on_event(event, self.progress)
        except Exception:  # a broken callback must not abort terraform half-way
            if not self.callback_failed:
                log.exception("terraform event callback failed (on a %s event)", event.kind)
            self.callback_failed = True
