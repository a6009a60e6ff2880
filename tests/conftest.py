"""Fixtures shared by every test folder live in tests/fixtures; this file only registers them."""

import pytest

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.aws",
    "tests.fixtures.server",
    "tests.fixtures.browser",
    "tests.fixtures.notebooks",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's session keeps an event loop on the main thread."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)
