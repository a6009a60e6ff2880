"""The overview's line about who may take a VM: the event code to announce, or the list."""

from __future__ import annotations

from dashboard.admin.access import access_summary
from lablink_core.access import AccessRule


def test_the_event_code_to_announce_is_on_the_overview() -> None:
    line = access_summary(AccessRule("code", "<b>SLEAP</b>", ()))
    assert "The event code to announce: &lt;b&gt;SLEAP&lt;/b&gt;" in line


def test_an_allowlist_says_how_many_are_on_it_and_open_says_open() -> None:
    assert "(2 on the list)" in access_summary(AccessRule("allowlist", None, ("a@x.org", "@y.org")))
    assert "Open: anyone with the page" in access_summary(AccessRule("open", None, ()))
