"""Pages in a real browser against `lablink serve --processes 2`.

The kernel gives each connection to either process, so a page's HTTP request and its
websocket may land on different ones. Every page here is opened in a fresh browser
context (fresh connections) until each process has served pages, and each page must work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.prefork import PROCESS_HEADER
from tests.browser.test_researcher import fill, register_free
from tests.fixtures.browser import log_in
from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import crd

pytestmark = pytest.mark.browser

# Which process takes a new connection is the kernel's choice (roughly even for connections
# that arrive one at a time): the loops go on, up to a bound, until what they need was seen.
MAX_PAGES = 16


@pytest.fixture(scope="module")
def two_processes(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """`lablink serve --processes 2` on a database of its own."""
    server = RunningServer(
        make_server_database(postgres_server_url, template_database), processes=2
    ).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def websocket_processes(page: Page) -> list[str]:
    """The process named in each websocket handshake's answer (101) that ``page`` gets,
    read through the browser's DevTools protocol (Playwright shows no handshake headers)."""
    seen: list[str] = []
    devtools = page.context.new_cdp_session(page)
    devtools.send("Network.enable")

    def handshake(event: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in event["response"]["headers"].items()}
        seen.append(headers.get(PROCESS_HEADER.lower(), "?"))

    devtools.on("Network.webSocketHandshakeResponseReceived", handshake)
    return seen


def test_researcher_pages_work_whichever_process_serves_them(
    browser: Browser, two_processes: RunningServer
) -> None:
    """Until each process has served a page and one page had its HTTP request answered by
    one process and its websocket by the other (the session is made where the websocket
    lands), each page must work."""
    served: set[str] = set()
    split = 0
    for i in range(MAX_PAGES):
        register_free(two_processes, f"vm-r{i}")
        context = browser.new_context()
        try:
            page = context.new_page()
            sockets = websocket_processes(page)
            response = page.goto(f"{two_processes.url}/")
            assert response is not None
            process = response.headers[PROCESS_HEADER.lower()]
            served.add(process)
            fill(page, f"user{i}@example.org", crd(f"4/code-{i}"))
            page.get_by_role("button", name="Request a VM").click()
            expect(page.get_by_test_id("pin")).to_have_text(re.compile(r"^\d{6}$"))
            expect(page.get_by_test_id("hostname")).to_have_text(f"vm-r{i}")
            assert sockets and set(sockets) <= {"0", "1"}, sockets
            split += sockets[0] != process
        finally:
            context.close()
        if served == {"0", "1"} and split and i >= 3:
            break
    assert served == {"0", "1"}
    assert split, "no page had its HTTP request and its websocket on different processes"


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
