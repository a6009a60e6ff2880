"""The ``--auth-module`` of ``panel serve``: the same admin login as ``lablink serve``.

Bokeh reads these names from the file: ``get_user``, ``login_url``, ``LoginHandler``,
``logout_url`` and ``LogoutHandler``. The runtime is looked up per request, so this file may be
loaded before ``--setup`` has built it; until then every admin request is refused.
"""

from __future__ import annotations

from dashboard.auth import LablinkAuthProvider
from dashboard.runtime import current

_provider = LablinkAuthProvider(current)

get_user = _provider.get_user
login_url = _provider.login_url
LoginHandler = _provider.login_handler
logout_url = _provider.logout_url
LogoutHandler = _provider.logout_handler
