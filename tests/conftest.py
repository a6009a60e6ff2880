"""Fixtures shared by every test folder live in tests/fixtures; this file only registers them."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.aws",
    "tests.fixtures.server",
    "tests.fixtures.browser",
]
