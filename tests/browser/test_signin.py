"""Researcher sign-in in a real browser: /signin goes to the (local) OpenID Connect provider
and comes back to / with the signed, HttpOnly lablink_researcher cookie holding the verified
email; the page says who is signed in, takes the email from the sign-in (not the form) and
hands that person a VM."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from dashboard.signin import RESEARCHER_COOKIE, signed_in_email
from tests.fixtures.server import RunningServer, available_count
from tests.integration import test_security_signin as signin
from tests.integration.test_allocation import crd
from tests.support.oidc_provider import OidcProvider
from tests.support.vm_simulator import SimulatedFleet
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
# The provider and the server in signin mode, shared with the HTTP tests of the same flow.
provider = signin.provider
signin_server = signin.signin_server


def test_the_redirect_flow_ends_back_on_the_page_signed_in(
    browser: Browser, signin_server: RunningServer, provider: OidcProvider
) -> None:
    provider.user_email = "grace@uni.example"
    context = browser.new_context()
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(f"{signin_server.url}/signin?next=/")
        expect(page).to_have_url(f"{signin_server.url}/")
        expect(page.get_by_role("button", name="Request a VM")).to_be_visible()
        assert any(url.startswith(f"{provider.issuer}/authorize?") for url in requested)
        assert any(url.startswith(f"{signin_server.url}/signin/callback?") for url in requested)
        cookies = {c["name"]: c for c in context.cookies(signin_server.url)}
        researcher = cookies[RESEARCHER_COOKIE]
        assert researcher["httpOnly"] and researcher["sameSite"] == "Lax"
        email = signed_in_email(
            {RESEARCHER_COOKIE: researcher["value"].strip('"')}.get,
            signin.cookie_secret(signin_server),
        )
        assert email == "grace@uni.example"
        assert page.evaluate("document.cookie").find(RESEARCHER_COOKIE) == -1  # not for scripts
        expect(page.get_by_text("Signed in as grace@uni.example")).to_be_visible()
        expect(page.get_by_label("Email")).to_be_disabled()
        vms = SimulatedFleet(signin_server.url, {"vm-sso": signin_server.credential("vm-sso")})
        vms.start()
        try:
            wait_until(lambda: available_count(signin_server) == 1, timeout=30)
            page.get_by_label("Chrome Remote Desktop command").fill(crd("4/0SignedIn"))
            page.get_by_role("button", name="Request a VM").click()
            expect(page.get_by_test_id("hostname")).to_have_text("vm-sso")
            wait_until(lambda: vms.tasks.get("vm-sso", {}).get("code") == "4/0SignedIn")
        finally:
            vms.stop()
        page.goto(f"{signin_server.url}/signout")
        expect(page).to_have_url(f"{signin_server.url}/")
        assert RESEARCHER_COOKIE not in {c["name"] for c in context.cookies(signin_server.url)}
        expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    finally:
        context.close()
