"""The frame around every page: Panel's Bootstrap template with LabLink's header, navigation
and look. Admin pages get the navigation as tabs above the page and the signed-in admin with
the logout link in the header; the researcher page is the header and one narrow column, which
also fits a phone.

Everything the template shows comes from the allocator itself: the logo and favicon are
inline SVG, the type is the system's (see :mod:`dashboard.look`), and Panel serves its own
scripts and styles (``resources="server"``).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

import panel as pn

from dashboard.a11y import AccessibilityRepairs
from dashboard.look import HEADER, HEADER_CSS, NAV_CSS, PAGE_CSS, PRIMARY

LOGO_SVG = f"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="7" fill="{PRIMARY}"/>
<rect x="6" y="7" width="20" height="14" rx="2" fill="none" stroke="#fff" stroke-width="2.2"/>
<path d="M12 26h8M16 21v5" stroke="#fff" stroke-width="2.2" stroke-linecap="round"/>
<circle cx="16" cy="14" r="2.6" fill="#fff"/>
</svg>"""


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


LOGO = svg_data_uri(LOGO_SVG)
LOGO_CSS = f"""
#header .app-header::before {{ content: ""; display: inline-block; width: 36px; height: 36px;
  margin-right: 12px; background: url("{LOGO}") center / contain no-repeat; }}
#header .app-header {{ display: flex; align-items: center; }}
"""
# Panel guesses the favicon's type from how its URL ends; a data URL's fragment is ignored.
FAVICON = LOGO + "#favicon.svg"


def _template(title: str, site_url: str, **params: Any) -> pn.template.BootstrapTemplate:
    # The logo is drawn by the stylesheet (PAGE_CSS), not as the template's <img>, which has
    # no text alternative; the title beside it names the page.
    template = pn.template.BootstrapTemplate(
        title=title,
        favicon=FAVICON,
        site_url=site_url,
        header_background=HEADER,
        header_color="#ffffff",
        meta_viewport="width=device-width, initial-scale=1",
        **params,
    )
    template.config.raw_css.append(PAGE_CSS + LOGO_CSS)
    template.main.append(AccessibilityRepairs(height=0, width=0, margin=0))
    return template


def nav_html(links: Sequence[tuple[str, str]], current: str) -> str:
    """The admin pages as a list of links; the current one is marked for screen readers."""
    items = []
    for label, url in links:
        here = ' aria-current="page"' if url == current else ""
        items.append(f'<li><a href="{html.escape(url)}"{here}>{html.escape(label)}</a></li>')
    return f'<nav aria-label="Admin pages"><ul>{"".join(items)}</ul></nav>'


def who_html(user: str, logout_url: str) -> str:
    return (
        f'<div class="ll-who">Signed in as <b>{html.escape(user)}</b>'
        f'<a href="{html.escape(logout_url)}">Log out</a></div>'
    )


def admin_template(
    title: str,
    *,
    links: Sequence[tuple[str, str]],
    current: str,
    user: str,
    logout_url: str,
    main: Sequence[Any],
) -> pn.template.BootstrapTemplate:
    """An admin page: the navigation (tabs above the page), who is signed in, and ``main``."""
    template = _template(title, "/admin")
    nav = pn.pane.HTML(nav_html(links, current), stylesheets=[NAV_CSS], sizing_mode="stretch_width")
    template.main.append(nav)
    template.header.append(pn.pane.HTML(who_html(user, logout_url), stylesheets=[HEADER_CSS]))
    for part in main:
        template.main.append(part)
    return template


def public_template(title: str, main: Sequence[Any]) -> pn.template.BootstrapTemplate:
    """The researcher page: the header and one column no wider than a form needs."""
    template = _template(title, "/", main_max_width="780px")
    for part in main:
        template.main.append(part)
    return template
