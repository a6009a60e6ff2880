"""The dashboard as a designed product, under `lablink serve`: every page in one template
(screenshots in artifacts/screenshots/), no serious or critical accessibility violation
(axe-core), no request to any host but the allocator in a whole session (log in, launch,
request, release, destroy), each VM state in its colour with its reason, and the researcher
page on a phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text

from dashboard.look import TONES
from dashboard.states import STATE_MEANINGS, STATE_TONES
from tests.browser.test_admin import row
from tests.browser.test_researcher import EMAIL, fill, register_free
from tests.fixtures.browser import log_in
from tests.fixtures.server import RunningServer, local_fleet_server
from tests.integration.test_allocation import crd
from tests.support.pages import RequestLog, axe_violations

pytestmark = pytest.mark.browser

PAGES = {  # screenshot name -> (path, something the page shows once it is ready)
    "overview": ("/admin", "Free VMs"),
    "instances": ("/admin/instances", "What the states mean"),
    "create": ("/admin/create", "Number of instances"),
    "access": ("/admin/access", "Who may take a VM"),
    "credentials": ("/admin/set-aws-credentials", "AWS credentials:"),
}


@pytest.fixture(scope="module")
def allocator_server(
    postgres_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """This module's server: the local fleet and a data folder of its own."""
    data_dir = tmp_path_factory.mktemp("lablink-look-data")
    yield from local_fleet_server(postgres_server_url, template_database, data_dir)


def visit_every_page(
    page: Page, base_url: str, password: str, screenshots: Path, prefix: str
) -> dict[str, list[object]]:
    """Researcher page, login, then each admin page: a screenshot and axe's findings each."""
    found: dict[str, list[object]] = {}
    page.goto(f"{base_url}/")
    expect(page.get_by_role("button", name="Request a VM")).to_be_visible()
    found["researcher"] = shoot(page, screenshots / f"{prefix}-researcher.png")
    page.goto(f"{base_url}/login")
    found["login"] = shoot(page, screenshots / f"{prefix}-login.png")
    log_in(page, base_url, password=password)
    expect(page.get_by_text("Signed in as")).to_be_visible()
    for name, (path, ready) in PAGES.items():
        page.goto(base_url + path)
        expect(page.get_by_text(ready).first).to_be_visible()
        current = page.get_by_role("navigation", name="Admin pages").locator("[aria-current=page]")
        expect(current).to_have_count(1)
        found[name] = shoot(page, screenshots / f"{prefix}-{name}.png")
    return found


def shoot(page: Page, path: Path) -> list[object]:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=path, full_page=True)
    return list(axe_violations(page))


def test_every_page_is_in_the_template_and_passes_axe(
    browser: Browser, api: RunningServer, screenshots_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    requests = RequestLog(api.url)
    context.on("request", requests.record)
    found = visit_every_page(
        context.new_page(), api.url, api.admin_auth()[1], screenshots_dir, "lablink-serve"
    )
    context.close()
    assert {name: v for name, v in found.items() if v} == {}
    assert requests.foreign() == []


def test_a_whole_session_asks_no_host_but_the_allocator(
    browser: Browser, api: RunningServer, screenshots_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    requests = RequestLog(api.url)
    context.on("request", requests.record)
    admin, researcher = context.new_page(), context.new_page()
    log_in(admin, api.url, password=api.admin_auth()[1])
    launch_local_vms(admin, api.url, 2, screenshot=screenshots_dir / "look-create.png")
    researcher.goto(f"{api.url}/")
    fill(researcher, EMAIL, crd("4/0AbWholeSession"))
    researcher.get_by_role("button", name="Request a VM").click()
    expect(researcher.get_by_test_id("pin")).to_have_text(re.compile(r"^\d{6}$"))
    researcher.screenshot(path=screenshots_dir / "look-researcher-assigned.png", full_page=True)
    admin.goto(f"{api.url}/admin")
    expect(admin.get_by_role("group", name="Assigned")).to_contain_text("1", timeout=15_000)
    admin.screenshot(path=screenshots_dir / "look-overview.png", full_page=True)
    hostname = researcher.get_by_test_id("hostname").inner_text()
    admin.goto(f"{api.url}/admin/instances")
    row(admin, hostname).get_by_text("Details").click()
    expect(admin.get_by_role("heading", name=hostname)).to_be_visible()
    expect(row(admin, hostname)).to_contain_text(EMAIL)
    admin.screenshot(path=screenshots_dir / "look-instances.png", full_page=True)
    researcher.get_by_role("button", name="Release this VM").click()
    researcher.get_by_role("button", name="Yes, release it").click()
    expect(researcher.get_by_text("was released")).to_be_visible()
    destroy_all(admin, api.url, screenshots_dir / "look-destroy-all.png")
    context.close()
    assert requests.foreign() == []


def launch_local_vms(page: Page, base_url: str, count: int, screenshot: Path | None = None) -> None:
    """Launch ``count`` local VMs on the create page and wait until the table has them."""
    page.goto(f"{base_url}/admin/create")
    expect(
        page.get_by_text("Local fleet: processes on this machine, no cloud charges.")
    ).to_be_visible()
    expect(page.get_by_label("AMI id")).to_be_hidden()  # AWS-only fields are hidden
    field = page.get_by_label(re.compile(r"Number of instances"))
    field.fill(str(count))
    field.press("Enter")
    page.get_by_role("button", name="Launch").click()
    done = re.compile(rf"Launch #\d+ finished: {count} VMs launched")
    expect(page.get_by_text(done)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Another fleet operation")).to_have_count(0)
    if screenshot is not None:
        page.screenshot(path=screenshot, full_page=True)
    page.goto(f"{base_url}/admin/instances")
    rows = page.get_by_role("row").filter(has_text="lablink-vm-")
    expect(rows.filter(has_text="available")).to_have_count(count, timeout=30_000)


def destroy_all(page: Page, base_url: str, screenshot: Path) -> None:
    """Open a VM's details, then destroy the whole fleet behind its confirmation."""
    page.goto(f"{base_url}/admin/instances")
    first = page.get_by_role("row").filter(has_text="lablink-vm-").first
    first.get_by_text("Details").click()
    expect(page.get_by_role("button", name="Revoke credential")).to_be_visible()
    page.get_by_role("button", name="Destroy all").click()
    expect(page.get_by_text(re.compile(r"Destroy all \d+ VMs of the fleet"))).to_be_visible()
    page.screenshot(path=screenshot, full_page=True)
    page.get_by_role("button", name=re.compile(r"^Destroy all \d+$")).click()
    expect(page.get_by_role("row").filter(has_text="lablink-vm-")).to_have_count(0, timeout=60_000)


STATE_ROWS = [  # hostname, status, email, extra columns, the reason the page must show
    ("s-available", "available", None, {}, ""),
    ("s-assigned", "assigned", "a@example.org", {}, ""),
    ("s-connected", "connected", "c@example.org", {}, ""),
    ("s-booting", "booting", None, {"heard": None}, ""),
    ("s-error", "error", None, {"reason": "GPU check failed: Xid 79"}, "Xid 79"),
    ("s-unresponsive", "available", None, {"heard": "2 hours"}, "not heard from for 2 h"),
    ("s-unhealthy", "available", None, {"health_state": "unhealthy"}, "its GPU reports"),
    ("s-rebooting", "available", None, {"healing": "rebooting", "reason": "no heartbeat"}, ""),
    ("s-replacing", "available", None, {"healing": "replacing", "reason": "boot timed out"}, ""),
    ("s-recycling", "recycling", None, {}, ""),
    ("s-revoked", "available", None, {"revoked": True}, "credential was revoked"),
]


def insert_state_rows(api: RunningServer) -> None:
    engine = create_engine(api.database_url)
    with engine.begin() as connection:
        for name, status, email, extra, _ in STATE_ROWS:
            heard = extra.get("heard", "1 second")
            connection.execute(
                text(
                    "INSERT INTO vms (hostname, status, user_email, provider, last_heard_at, "
                    "health_state, healing, status_reason, credential_hash) VALUES (:h, :s, :e, "
                    "'manual', now() - CAST(:heard AS interval), :hs, :heal, :why, :cred)"
                ),
                {
                    "h": name,
                    "s": status,
                    "e": email,
                    "heard": heard,
                    "hs": extra.get("health_state", "healthy"),
                    "heal": extra.get("healing"),
                    "why": extra.get("reason"),
                    "cred": None if extra.get("revoked") else "a-hash",
                },
            )
    engine.dispose()


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_each_state_shows_its_colour_and_reason(admin_page: Page, api: RunningServer) -> None:
    insert_state_rows(api)
    page = admin_page
    page.goto(f"{api.url}/admin/instances")
    expect(page.get_by_role("columnheader", name="Unresponsive")).to_have_count(0)
    for name, _, _, extra, reason in STATE_ROWS:
        state = name.removeprefix("s-")
        badge = row(page, name).locator("[tabulator-field=status] .ll-badge")
        expect(badge).to_have_text(state)
        tone = TONES[STATE_TONES[state]]
        expect(badge).to_have_css("background-color", rgb(tone.background))
        hover = (
            re.escape(reason) if reason else re.escape(extra.get("reason") or STATE_MEANINGS[state])
        )
        expect(badge).to_have_attribute("title", re.compile(hover))
        if extra.get("reason"):
            expect(row(page, name)).to_contain_text(extra["reason"])  # the Why column
    # Red means trouble only, and a free VM's Desktop cell says nothing (no red cross).
    red = rgb(TONES["trouble"].background)
    for name in ("s-available", "s-assigned", "s-booting", "s-recycling"):
        expect(row(page, name).locator("[tabulator-field=status] .ll-badge")).not_to_have_css(
            "background-color", red
        )
    desktop = row(page, "s-available").locator("[tabulator-field=in_use]")
    expect(desktop).to_have_text("")
    expect(row(page, "s-unresponsive").locator("[tabulator-field=hostname]")).to_have_css(
        "background-color", "rgb(253, 241, 242)"
    )


def test_the_researcher_page_fits_a_phone(
    browser: Browser, api: RunningServer, screenshots_dir: Path
) -> None:
    register_free(api, "vm-phone")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page = context.new_page()
    page.goto(f"{api.url}/")
    expect(page.get_by_role("button", name="Request a VM")).to_be_visible()
    assert page.evaluate("window.innerWidth") == 390  # laid out for the phone, not zoomed out
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    fill(page, EMAIL, crd("4/0AbPhone"))
    page.get_by_role("button", name="Request a VM").click()
    expect(page.get_by_test_id("hostname")).to_have_text("vm-phone")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert axe_violations(page) == []
    page.screenshot(path=screenshots_dir / "researcher-phone.png", full_page=True)
    page.get_by_role("button", name="Release this VM").click()
    page.get_by_role("button", name="Yes, release it").click()
    expect(page.get_by_text("vm-phone was released")).to_be_visible()
    context.close()
