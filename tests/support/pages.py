"""Helpers for looking at pages as a person (and a screen reader) would: an accessibility
check with axe-core (vendored, injected into the page), and a recorder of every request a
page makes, to show it asks no host but the allocator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Page, Request

AXE = Path(__file__).resolve().parents[1] / "browser" / "vendor" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (shadow roots
    included), each with its rule, impact, help and the first few offending elements."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    results = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
        }
        for v in results
        if v.get("impact") in BLOCKING
    ]


@dataclass
class RequestLog:
    """Every request the pages of a browser context made, by URL."""

    allowed_origin: str
    urls: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.urls.append(request.url)

    def foreign(self) -> list[str]:
        """Requests to anything but the allocator (blob: and data: URLs are the page's own)."""
        allowed = urlsplit(self.allowed_origin)
        found = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("blob", "data"):
                continue
            if (parts.scheme, parts.netloc) != (allowed.scheme, allowed.netloc):
                found.append(url)
        return found
