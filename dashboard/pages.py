"""The Panel pages, by URL. Each page is a function so every session gets its own objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn

from dashboard.runtime import Runtime


def build_pages(runtime: Callable[[], Runtime]) -> dict[str, Callable[[], Any]]:
    def home() -> Any:
        free = runtime().services.allocator.free_count()
        return pn.Column(pn.pane.Markdown(f"# LabLink\n\n{free} VMs free."))

    return {"/": home}
