"""The admin login in a real browser: every admin page sends a stranger to Panel's login page,
a wrong password is refused, the right one gets in, and logging out locks the pages again."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures.browser import log_in
from tests.fixtures.server import RunningServer

pytestmark = pytest.mark.browser

ADMIN_PAGES = ["/admin", "/admin/instances", "/admin/create", "/admin/set-aws-credentials"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_a_stranger_is_sent_to_login(
    page: Page, api: RunningServer, path: str, screenshots_dir: Path
) -> None:
    page.goto(f"{api.url}{path}")
    expect(page).to_have_url(f"{api.url}/login?next={quote(path, safe='')}")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    if path == "/admin":
        page.screenshot(path=screenshots_dir / "login.png", full_page=True)


def test_the_public_page_needs_no_login(page: Page, api: RunningServer) -> None:
    for path in ("/", "/?from=mail"):
        page.goto(f"{api.url}{path}")
        expect(page.get_by_role("button", name="Request a VM")).to_be_visible()
        expect(page).to_have_url(f"{api.url}{path}")


def test_a_wrong_password_is_refused(page: Page, api: RunningServer, screenshots_dir: Path) -> None:
    log_in(page, api.url, password="not-the-password", next_url="/admin")
    expect(page.get_by_text("Wrong user name or password.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login\?error="))
    page.screenshot(path=screenshots_dir / "login-refused.png", full_page=True)
    page.goto(f"{api.url}/admin")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_the_right_password_gets_in_and_logout_locks_again(
    page: Page, api: RunningServer, screenshots_dir: Path
) -> None:
    page.goto(f"{api.url}/admin/instances")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(api.admin_auth()[1])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{api.url}/admin/instances")
    expect(page.get_by_text("Signed in as")).to_be_visible()
    page.screenshot(path=screenshots_dir / "admin-after-login.png", full_page=True)
    for path in ADMIN_PAGES:
        page.goto(f"{api.url}{path}")
        expect(page).to_have_url(f"{api.url}{path}")
        expect(page.get_by_role("link", name="Log out")).to_be_visible()
    page.get_by_role("link", name="Log out").click()
    expect(page).to_have_url(f"{api.url}/logout")
    page.goto(f"{api.url}/admin")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_the_login_cookie_opens_the_admin_api(admin_page: Page, api: RunningServer) -> None:
    listing = admin_page.request.get(f"{api.url}/api/vms")
    assert listing.status == 200 and listing.json()["count"] == 0
    release = f"{api.url}/api/vms/vm-x/release"
    same_site = admin_page.request.post(release, headers={"Origin": api.url})
    assert same_site.status == 404  # let in; there is just no such VM
    for headers in ({"Origin": "https://evil.example"}, {}):
        assert admin_page.request.post(release, headers=headers).status == 401
    stranger = admin_page.context.browser
    assert stranger is not None
    assert_api_refuses_without_login(stranger, api)


def assert_api_refuses_without_login(browser: Browser, api: RunningServer) -> None:
    context = browser.new_context()
    try:
        assert context.request.get(f"{api.url}/api/vms").status == 401
        assert context.request.get(f"{api.url}/api/server").status == 401
    finally:
        context.close()


REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const what = `${event.violatedDirective} ${event.blockedURI}`;
  console.error(`Content Security Policy violation: ${what}`);
});
"""


def test_every_page_works_under_the_content_security_policy(
    browser: Browser, api: RunningServer
) -> None:
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.add_init_script(REPORT_CSP_VIOLATIONS)
    try:
        page.goto(f"{api.url}/")
        expect(page.get_by_role("button", name="Request a VM")).to_be_visible()
        log_in(page, api.url)
        expect(page).to_have_url(f"{api.url}/admin")
        for path in ADMIN_PAGES:
            page.goto(f"{api.url}{path}")
            expect(page.get_by_role("link", name="Log out")).to_be_visible()
        page.get_by_role("link", name="Log out").click()
        expect(page).to_have_url(f"{api.url}/logout")
        csp = page.request.get(f"{api.url}/").headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
    finally:
        context.close()
    assert violations == []
