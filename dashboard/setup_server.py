"""The ``--setup`` script of ``panel serve``: assemble this process before it serves.

Loads the configuration (``LABLINK_CONFIG`` and the environment), builds and installs the
runtime, sets the cookie secret and the global authorize callback, and starts the NOTIFY
listener on the server's event loop. Use it with ``--auth-module dashboard/auth_module.py``
(the admin login) and ``--plugins dashboard.plugin`` (the HTTP API)::

    panel serve dashboard/apps/*.py --index home --plugins dashboard.plugin \\
        --setup dashboard/setup_server.py --auth-module dashboard/auth_module.py --port 5000

The cookie secret comes from ``app.secret_key`` or the database, as with ``lablink serve``; a
``--cookie-secret`` given on the command line (needed with ``--num-procs``) is left alone.
"""

from __future__ import annotations

import atexit
import os
import sys

import panel as pn
from tornado.ioloop import IOLoop

from dashboard.auth import cookie_secret_for, make_authorize
from dashboard.runtime import build_runtime, current, install
from lablink_core.config import load_config


def _options() -> set[str]:
    return {arg.split("=", 1)[0] for arg in sys.argv if arg.startswith("--")}


def _cookie_secret_given() -> bool:
    return "--cookie-secret" in _options() or bool(pn.config.cookie_secret)


def check_auth_options() -> None:
    """Refuse to serve admin pages open or behind Panel's plain-text password check."""
    if "--basic-auth" in _options() or pn.config.basic_auth:
        raise SystemExit(
            "LabLink: do not use --basic-auth (it compares plain-text passwords); use "
            "--auth-module dashboard/auth_module.py, which checks the admin's bcrypt hash"
        )
    if "--auth-module" not in _options() and not os.environ.get("BOKEH_AUTH_MODULE"):
        raise SystemExit(
            "LabLink: --auth-module dashboard/auth_module.py is required; without it the "
            "admin pages' websockets would be open"
        )


def setup() -> None:
    check_auth_options()
    runtime = build_runtime(load_config(os.environ.get("LABLINK_CONFIG")))
    install(runtime)
    pn.config.authorize_callback = make_authorize(current)
    if not _cookie_secret_given():
        pn.config.cookie_secret = cookie_secret_for(runtime)
    IOLoop.current().add_callback(runtime.start)
    atexit.register(runtime.close)


setup()
