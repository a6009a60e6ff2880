"""A workshop's day in real browsers: researchers wait in the queue and watch their place move
up as VMs are freed, until the page shows their VM; a researcher with a VM is told when a
scheduled teardown will take it, and warned 15 and 5 minutes before."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import create_engine, text

from tests.browser.test_researcher import fill, request_vm
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd

pytestmark = pytest.mark.browser


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Three more browsers, each with its own storage and cookies."""
    made = [browser.new_context() for _ in range(3)]
    yield made
    for context in made:
        context.close()


def join_queue(page: Page, api: RunningServer, email: str, code: str) -> None:
    page.goto(f"{api.url}/")
    fill(page, email, crd(code))
    page.get_by_role("button", name="Request a VM").click()
    page.get_by_role("button", name="Wait in the queue").click()


def test_queued_pages_move_up_and_get_their_vm(
    polling_vms: Callable[[int], list[str]],
    contexts: list[BrowserContext],
    api: RunningServer,
    screenshots_dir: object,
) -> None:
    polling_vms(2)
    held = [
        httpx.post(
            f"{api.url}/request_vm",
            json={"email": f"h{i}@example.org", "crd_command": crd(f"4/0Held{i}")},
            timeout=30,
        ).json()
        for i in range(2)
    ]
    pages = [context.new_page() for context in contexts]
    for i, page in enumerate(pages):
        join_queue(page, api, f"w{i}@example.org", f"4/0Wait{i}")
        expect(page.get_by_test_id("position")).to_have_text(str(i + 1))
    pages[2].screenshot(path=f"{screenshots_dir}/researcher-queue.png", full_page=True)
    for i, seat in enumerate(held):
        release = {"email": f"h{i}@example.org", "seat_token": seat["seat_token"]}
        assert httpx.post(f"{api.url}/release_vm", json=release, timeout=30).status_code == 200
        expect(pages[i].get_by_test_id("hostname")).to_have_text(seat["hostname"], timeout=15000)
        expect(pages[i].get_by_test_id("pin")).to_have_text(re.compile(r"^\d{6}$"))
        expect(pages[2].get_by_test_id("position")).to_have_text(str(2 - i), timeout=15000)
    expect(pages[2].get_by_role("button", name="Leave the queue")).to_be_visible()


def schedule_teardown(api: RunningServer, minutes: float | None) -> None:
    """The one teardown scheduled, ``minutes`` from now (None: none at all)."""
    engine = create_engine(api.database_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM lablink_schedules"))
        if minutes is not None:
            connection.execute(
                text(
                    "INSERT INTO lablink_schedules (kind, run_at, next_run_at) "
                    "VALUES ('once', :at, :at)"
                ),
                {"at": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)},
            )
    engine.dispose()


def test_a_teardown_is_announced_and_warned_of(
    polling_vms: Callable[[int], list[str]], page: Page, api: RunningServer
) -> None:
    polling_vms(1)
    try:
        schedule_teardown(api, 40)
        request_vm(page, api)
        note = page.get_by_text(re.compile(r"This VM will be reclaimed at \d\d:\d\d UTC"))
        expect(note).to_contain_text("scheduled teardown", timeout=15000)
        expect(page.get_by_text("Scheduled teardown in less than")).to_have_count(0)
        schedule_teardown(api, 14)
        warning = page.get_by_text("Scheduled teardown in less than 15 minutes: save your work.")
        expect(warning).to_be_visible(timeout=15000)
        schedule_teardown(api, 4)
        warning = page.get_by_text("Scheduled teardown in less than 5 minutes: save your work.")
        expect(warning).to_be_visible(timeout=15000)
        expect(page.get_by_role("button", name="Give me more time")).to_have_count(0)
    finally:
        schedule_teardown(api, None)
