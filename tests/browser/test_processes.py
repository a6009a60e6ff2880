"""Pages in a real browser against `lablink serve --processes 2`.

The kernel gives each connection to either process, so a page's HTTP request and its
websocket may land on different ones. Every page here is opened in a fresh browser
context (fresh connections) until each process has served pages, and each page must work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from dashboard.prefork import PROCESS_HEADER
from tests.browser.test_researcher import fill, register_free
from tests.fixtures.browser import log_in
from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import crd

pytestmark = pytest.mark.browser

# Two processes answer each new connection about evenly: six pages miss one of them with a
# chance of 1 in 32; the loops go on (up to a bound) until both have served.
MAX_PAGES = 12


@pytest.fixture(scope="module")
def two_processes(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """`lablink serve --processes 2` on a database of its own."""
    server = RunningServer(
        make_server_database(postgres_server_url, template_database), processes=2
    ).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def test_researcher_pages_work_whichever_process_serves_them(
    browser: Browser, two_processes: RunningServer
) -> None:
    served: set[str] = set()
    for i in range(MAX_PAGES):
        register_free(two_processes, f"vm-r{i}")
        context = browser.new_context()
        try:
            page = context.new_page()
            response = page.goto(f"{two_processes.url}/")
            assert response is not None
            served.add(response.headers[PROCESS_HEADER.lower()])
            fill(page, f"user{i}@example.org", crd(f"4/code-{i}"))
            page.get_by_role("button", name="Request a VM").click()
            expect(page.get_by_test_id("pin")).to_have_text(re.compile(r"^\d{6}$"))
            expect(page.get_by_test_id("hostname")).to_have_text(f"vm-r{i}")
        finally:
            context.close()
        if served == {"0", "1"} and i >= 3:
            break
    assert served == {"0", "1"}


def test_an_admin_login_holds_on_both_processes(
    browser: Browser, two_processes: RunningServer
) -> None:
    register_free(two_processes, "vm-admin")
    served: set[str] = set()
    context = browser.new_context()
    try:
        page = context.new_page()
        log_in(page, two_processes.url)
        expect(page).to_have_url(f"{two_processes.url}/admin")
        cookies = context.cookies()
        for _ in range(MAX_PAGES):
            # A context of its own (new connections) with the same login cookie.
            fresh = browser.new_context()
            try:
                fresh.add_cookies(cookies)  # type: ignore[arg-type]
                admin = fresh.new_page()
                response = admin.goto(f"{two_processes.url}/admin/instances")
                assert response is not None
                served.add(response.headers[PROCESS_HEADER.lower()])
                expect(admin).to_have_url(f"{two_processes.url}/admin/instances")
                expect(admin.get_by_text("vm-admin").first).to_be_visible()
            finally:
                fresh.close()
            if served == {"0", "1"}:
                break
    finally:
        context.close()
    assert served == {"0", "1"}
