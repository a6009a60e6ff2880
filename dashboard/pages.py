"""The Panel pages, by URL. Each page is built per session, so every session gets its own
objects. ``lablink serve`` serves :func:`build_pages`; ``panel serve`` runs one small file per
page in ``dashboard/apps/`` that calls :func:`serve_page`.

Who may open what is decided in :mod:`dashboard.auth`: ``/`` is public, ``/admin...`` needs the
admin login.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn

from dashboard.admin import pages as admin
from dashboard.api.researcher import SEAT_COOKIE
from dashboard.auth import LOGOUT_ENDPOINT
from dashboard.layout import admin_template, public_template
from dashboard.public_state import public_state
from dashboard.researcher.services import ResearcherServices
from dashboard.researcher.state import RequestState
from dashboard.researcher.view import RequestView
from dashboard.runtime import Runtime, current
from dashboard.signin import signed_in_email

PageBuilder = Callable[[Runtime], Any]
TOO_MANY_PAGES = "# LabLink\n\nToo many pages are open on this server right now. Try again soon."

ADMIN_PAGES: dict[str, tuple[str, PageBuilder]] = {
    "/admin": ("Overview", admin.overview_page),
    "/admin/instances": ("Instances", admin.instances_page),
    "/admin/create": ("Create instances", admin.create_page),
    "/admin/access": ("Access and schedules", admin.access_page),
    "/admin/set-aws-credentials": ("AWS credentials", admin.credentials_page),
}
TITLES = {"/": "LabLink", **{url: f"LabLink: {title}" for url, (title, _) in ADMIN_PAGES.items()}}


def researcher_page(runtime: Runtime) -> Any:
    """``/``: request a VM (or a place in the queue), see it, renew, extend or release it."""
    services = runtime.services
    public = public_state(runtime)
    if public.subscriber_count >= runtime.config.app.max_public_sessions:
        return pn.pane.Markdown(TOO_MANY_PAGES)
    researcher = ResearcherServices(
        services.allocator,
        services.waitlist if runtime.config.waitlist.enabled else None,
        services.sessions,
        services.actions,
        services.access,
        runtime.config.session.warning_minutes,
        limit=lambda email: runtime.limits.check(_session_address(), email),
        metrics=services.metrics,
    )
    state = RequestState(researcher, runtime.executor)
    state.signed_in = signed_in_email(pn.state.cookies.get, pn.config.cookie_secret)
    view = RequestView(state=state)
    mode = services.access.rule().mode
    view.show_event_code(mode == "code")
    view.show_signin(mode == "signin", state.signed_in)
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        view.attach(public, pn.state.cookies.get(SEAT_COOKIE))
    return view


NAV_LINKS = [(title, url) for url, (title, _) in ADMIN_PAGES.items()]


def _session_address() -> str:
    """The address of the browser this session serves (as its HTTP request came)."""
    context = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
    request = getattr(context, "request", None)
    return str(getattr(request, "remote_ip", "") or "unknown")


def page(url: str, runtime: Runtime) -> Any:
    """The page served at ``url`` for one session, in the LabLink template."""
    if url == "/":
        return public_template(TITLES[url], [researcher_page(runtime)])
    _, build = ADMIN_PAGES[url]
    return admin_template(
        TITLES[url],
        links=NAV_LINKS,
        current=url,
        user=runtime.admin.user,
        logout_url=LOGOUT_ENDPOINT,
        main=[build(runtime)],
    )


def build_pages(runtime: Callable[[], Runtime]) -> dict[str, Callable[[], Any]]:
    """URL -> page function, for ``pn.serve``; ``runtime`` is looked up per session."""
    return {url: _page_function(url, runtime) for url in TITLES}


def _page_function(url: str, runtime: Callable[[], Runtime]) -> Callable[[], Any]:
    # A plain function: pn.serve takes a functools.partial for a static object.
    def build() -> Any:
        return page(url, runtime())

    return build


def app_route(url: str) -> str:
    """Where ``panel serve`` serves the page of ``url``: one file per page in
    ``dashboard/apps/``, named by the URL (``/admin/create`` -> ``/admin_create``)."""
    if url == "/":
        return url
    return "/" + url.strip("/").replace("/", "_").replace("-", "_")


def serve_page(url: str) -> None:
    """Mark the page at ``url`` servable: what each ``dashboard/apps/*.py`` file does."""
    page(url, current()).servable(title=TITLES[url])
