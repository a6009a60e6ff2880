"""A served process freezes its startup heap once it is ready (see dashboard.heap)."""

from __future__ import annotations

import re

from tests.fixtures.server import RunningServer
from tests.support.waiting import wait_until


def test_lablink_serve_freezes_its_startup_heap(api: RunningServer) -> None:
    pattern = re.compile(r"(\d+) startup objects left out of full collections")
    wait_until(lambda: pattern.search(api.log()) is not None, message="the heap frozen")
    found = pattern.search(api.log())
    assert found is not None
    # Panel, Bokeh and SQLAlchemy alone are well over a hundred thousand objects.
    assert int(found.group(1)) > 100_000
