"""Researcher sign-in in a real browser: /signin goes to the (local) OpenID Connect provider
and comes back to / with the signed, HttpOnly lablink_researcher cookie holding the verified
email. (The page's "Signed in as ..." line is the researcher page's, not asserted here.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from dashboard.signin import RESEARCHER_COOKIE, signed_in_email
from tests.fixtures.server import RunningServer
from tests.integration import test_security_signin as signin
from tests.support.oidc_provider import OidcProvider

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
        page.goto(f"{signin_server.url}/signout")
        expect(page).to_have_url(f"{signin_server.url}/")
        assert RESEARCHER_COOKIE not in {c["name"] for c in context.cookies(signin_server.url)}
    finally:
        context.close()
