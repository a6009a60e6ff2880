"""The admin pages in a real browser against `lablink serve` with the local fleet: the live
table follows an assignment without a reload, VMs are launched and destroyed through the
pages behind confirmations, AWS keys are stored without being shown. Screenshots of each
page go to artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import create_engine, text

from lablink_core.fleet.operations import fleet_lock
from tests.browser.test_researcher import EMAIL, fill, register_free, vms
from tests.fixtures.server import RunningServer, local_fleet_server
from tests.integration.test_allocation import crd
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def allocator_server(
    postgres_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """This module's server: the local fleet, and a data folder (AWS keys) of its own."""
    data_dir = tmp_path_factory.mktemp("lablink-admin-data")
    yield from local_fleet_server(postgres_server_url, template_database, data_dir)


def row(page: Page, hostname: str) -> Locator:
    return page.get_by_role("row").filter(has_text=hostname)


def local_vms(api: RunningServer) -> list[str]:
    return sorted(str(v["hostname"]) for v in vms(api) if v["provider"] == "local")


def test_an_open_admin_table_sees_an_assignment_without_reloading(
    admin_page: Page, browser: Browser, api: RunningServer, screenshots_dir: Path
) -> None:
    register_free(api, "vm-a", "vm-b")
    admin_page.goto(f"{api.url}/admin/instances")
    expect(row(admin_page, "vm-a")).to_contain_text("available")
    expect(row(admin_page, "vm-b")).to_contain_text("available")

    researcher = browser.new_context().new_page()
    researcher.goto(f"{api.url}/")
    fill(researcher, EMAIL, crd("4/first"))
    clicked = time.monotonic()
    researcher.get_by_role("button", name="Request a VM").click()
    expect(admin_page.get_by_role("row").filter(has_text=EMAIL)).to_have_count(1, timeout=2500)
    print(
        f"the admin table showed the assignment {time.monotonic() - clicked:.2f} s after the click"
    )
    hostname = researcher.get_by_test_id("hostname").inner_text()
    expect(row(admin_page, hostname)).to_contain_text("assigned")
    researcher.context.close()

    with admin_page.expect_download() as download:
        admin_page.get_by_role("button", name="Export CSV").click()
    exported = Path(download.value.path()).read_text()
    assert exported.splitlines()[0].startswith("hostname,status,user_email")
    assert f"{hostname},assigned,{EMAIL}" in exported

    admin_page.goto(f"{api.url}/admin")
    expect(
        admin_page.get_by_text(re.compile(r"2\s*VMs:\s*1\s*free,\s*1\s*assigned"))
    ).to_be_visible()
    expect(admin_page.locator("canvas").first).to_be_visible()  # the plots

    # An admin takes the VM back, after a confirmation naming it and its holder.
    admin_page.goto(f"{api.url}/admin/instances")
    row(admin_page, hostname).get_by_role("checkbox").click()
    admin_page.get_by_role("button", name="Release selected").click()
    expect(admin_page.get_by_text(f"{hostname} ({EMAIL})")).to_be_visible()
    admin_page.get_by_role("button", name="Release 1").click()
    expect(row(admin_page, hostname)).not_to_contain_text(EMAIL)
    expect(row(admin_page, hostname)).to_contain_text("available")


def test_launch_two_local_vms_then_destroy_one_and_all_with_confirmations(
    admin_page: Page, api: RunningServer, screenshots_dir: Path
) -> None:
    page = admin_page
    page.goto(f"{api.url}/admin/create")
    count = page.get_by_label(re.compile(r"Number of instances"))
    count.fill("2")
    count.press("Enter")
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text(re.compile(r"Launch #\d+ finished: 2 VMs launched"))).to_be_visible(
        timeout=60_000
    )
    expect(page.get_by_text(re.compile(r"started lablink-vm-\d+")).first).to_be_visible()
    expect(page.get_by_role("gridcell", name="launch").first).to_be_visible()
    page.screenshot(path=screenshots_dir / "admin-create.png", full_page=True)

    # While another operation holds the fleet (any process), a launch is refused, saying so.
    engine = create_engine(api.database_url)
    with fleet_lock(engine):
        page.get_by_role("button", name="Launch").click()
        expect(
            page.get_by_text(re.compile(r"Another fleet operation|still running"))
        ).to_be_visible()
    engine.dispose()

    launched = local_vms(api)
    assert len(launched) == 2
    keep, victim = launched[1], launched[0]
    page.goto(f"{api.url}/admin/instances")
    for name in launched:
        expect(row(page, name)).to_contain_text("available", timeout=30_000)
    page.goto(f"{api.url}/admin")  # the start-up histogram now has the two launches
    expect(page.get_by_text(re.compile(r"2\s*VMs:\s*2\s*free"))).to_be_visible()
    page.screenshot(path=screenshots_dir / "admin-overview.png", full_page=True)
    page.goto(f"{api.url}/admin/instances")
    row(page, victim).get_by_role("checkbox").click()
    page.get_by_role("button", name="Destroy selected").click()
    expect(page.get_by_text(f"Destroy 1 VM: {victim}")).to_be_visible()
    page.screenshot(path=screenshots_dir / "admin-instances.png", full_page=True)
    page.get_by_role("button", name="Destroy 1 VM").click()
    expect(row(page, victim)).to_have_count(0, timeout=30_000)
    expect(row(page, keep)).to_have_count(1)
    assert local_vms(api) == [keep]

    page.get_by_role("button", name="Destroy all").click()
    expect(
        page.get_by_text(f"Destroy all 1 VMs of the fleet and its shared resources: {keep}")
    ).to_be_visible()
    page.get_by_role("button", name="Destroy all 1").click()
    expect(row(page, keep)).to_have_count(0, timeout=30_000)
    wait_until(lambda: local_vms(api) == [], message="every local VM destroyed")


def test_aws_keys_are_stored_and_never_shown(
    admin_page: Page, api: RunningServer, screenshots_dir: Path
) -> None:
    page = admin_page
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    page.goto(f"{api.url}/admin/set-aws-credentials")
    expect(page.get_by_text("AWS credentials: not set")).to_be_visible()
    page.get_by_label("Access key id").fill("AKIAIOSFODNN7EXAMPLE")
    page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Save credentials").click()
    expect(page.get_by_text("AWS credentials: set, key id ending MPLE")).to_be_visible()
    expect(page.get_by_label("Secret access key")).to_have_value("")
    expect(page.get_by_label("Access key id")).to_have_value("")
    assert secret not in page.locator("body").inner_text()
    page.screenshot(path=screenshots_dir / "admin-credentials.png", full_page=True)
    page.reload()
    expect(page.get_by_text("AWS credentials: set, key id ending MPLE")).to_be_visible()
    reply = httpx.get(f"{api.url}/admin/set-aws-credentials", timeout=10)
    assert secret not in reply.text


def fill_table(api: RunningServer, count: int) -> None:
    """``count`` manual VMs (bench-00001 oldest), every seventh reporting markup as health."""
    engine = create_engine(api.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO vms (hostname, status, provider, registered_at, ready_at,
                                 last_heard_at, created_at, health)
                SELECT 'bench-' || lpad(i::text, 5, '0'), 'available', 'manual', now(), now(),
                       now(), now() - i * interval '1 second',
                       CASE WHEN i % 7 = 0 THEN '<img src=x onerror=alert(1)>' ELSE 'ok' END
                FROM generate_series(1, :n) AS i
                """
            ),
            {"n": count},
        )
    engine.dispose()


def timed(action: Callable[[], object], done: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    done()
    return (time.monotonic() - started) * 1000


def test_five_thousand_rows_sort_page_and_filter_quickly(
    admin_page: Page, api: RunningServer
) -> None:
    page = admin_page
    fill_table(api, 5000)
    started = time.monotonic()
    page.goto(f"{api.url}/admin/instances")
    expect(page.get_by_text(re.compile(r"^5000 VMs, 0 assigned"))).to_be_visible(timeout=15_000)
    expect(row(page, "bench-05000")).to_have_count(1)
    times = {"load": (time.monotonic() - started) * 1000}
    first_row = page.get_by_role("row").nth(1)
    times["sort"] = timed(
        lambda: page.get_by_text("Hostname", exact=True).click(),
        lambda: expect(first_row).to_contain_text("bench-00001"),
    )
    times["next page"] = timed(
        lambda: page.get_by_role("button", name="Next Page").click(),
        lambda: expect(first_row).to_contain_text("bench-00051"),
    )
    box = page.get_by_placeholder("hostname")
    box.fill("bench-042")  # Tabulator filters on key presses, not on a filled value
    box.press("0")
    expect(first_row).to_contain_text("bench-04200")
    times["filter"] = timed(  # includes Tabulator's 300 ms typing debounce
        lambda: box.press("7"), lambda: expect(first_row).to_contain_text("bench-04207")
    )
    print("5,000-row table, ms:", {k: round(v) for k, v in times.items()})
    assert max(times["sort"], times["next page"], times["filter"]) < 3000
    # A VM's self-reported text is shown as text, never as markup.
    expect(page.get_by_role("gridcell", name="<img src=x onerror=alert(1)>").first).to_be_attached()
    assert page.locator("img[src='x']").count() == 0
