"""The ``--plugins`` module of ``panel serve``: the HTTP API next to the pages.

``panel serve`` names a page after its file (``dashboard/apps/admin_create.py`` is served at
``/admin_create``), so the admin URLs of ``lablink serve`` (``/admin/create``) are redirected
to those. Nothing is created here but route tuples; the runtime is looked up per request.
"""

from __future__ import annotations

import re
from typing import Any

from tornado.web import RedirectHandler

from dashboard.api.routes import api_routes
from dashboard.pages import ADMIN_PAGES, app_route
from dashboard.runtime import current
from dashboard.signin import signin_routes

ROUTES: list[tuple[str, type, dict[str, Any]]] = [
    *api_routes(current),
    *signin_routes(current),
    *[
        (re.escape(url), RedirectHandler, {"url": app_route(url), "permanent": False})
        for url in ADMIN_PAGES
        if app_route(url) != url
    ],
]
