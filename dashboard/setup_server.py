"""The ``--setup`` script of ``panel serve``: assemble this process before it serves.

Loads the configuration (``LABLINK_CONFIG`` and the environment), builds and installs the
runtime, sets the cookie secret and the global authorize callback, and starts the NOTIFY
listener on the server's event loop. Use it with ``--auth-module dashboard/auth_module.py``
(the admin login) and ``--plugins dashboard.plugin`` (the HTTP API)::

    panel serve dashboard/apps/*.py --index home --plugins dashboard.plugin \\
        --setup dashboard/setup_server.py --auth-module dashboard/auth_module.py --port 5000

The cookie secret comes from ``app.secret_key`` or the database, as with ``lablink serve``; a
``--cookie-secret`` given on the command line (needed with ``--num-procs``) is left alone.

This script runs before ``panel serve`` builds its server, and has no other way to reach it,
so it wraps Bokeh's ``Server.__init__`` once: the server it builds gets the same hardening as
``lablink serve`` (security headers, the websocket origin allowlist, body-size limits, and
TLS from ``app.ssl_certfile``/``app.ssl_keyfile`` unless ``--ssl-certfile`` is given). With
``--num-procs`` this script runs after the server started: the auth provider's Origin check
(same-origin only) and the API's own headers still apply, but not the rest.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
from typing import Any

import panel as pn
from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from dashboard.auth import cookie_secret_for, guard_autoload_scripts, make_authorize
from dashboard.body_limit import refuse_large_bodies
from dashboard.heap import freeze_startup_heap
from dashboard.runtime import Runtime, build_runtime, current, install
from dashboard.security_headers import allowed_origins, harden_application
from dashboard.server import body_limits, local_url, tls_files
from lablink_core.config import LablinkConfig, load_config

PANEL_DEFAULT_PORT = 5006


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


def harden_servers(config: LablinkConfig) -> None:
    """Make every Bokeh server built from now on in this process hardened like ours."""
    original = Server.__init__
    if getattr(original, "lablink_hardened", False):
        return

    @functools.wraps(original)
    def init(server: Server, *args: Any, **kwargs: Any) -> None:
        limits = body_limits(config.app.max_body_bytes)
        kwargs["http_server_kwargs"] = {**limits, **(kwargs.get("http_server_kwargs") or {})}
        tls = tls_files(config.app)
        if tls and not kwargs.get("ssl_certfile"):
            kwargs.update(ssl_certfile=tls[0], ssl_keyfile=tls[1])
        original(server, *args, **kwargs)
        https = bool(kwargs.get("ssl_certfile"))
        origins = allowed_origins(
            [*config.app.allowed_origins, *_extra_origins(server, https)],
            config.app.public_url,
            server.port or config.app.port,
            https=https,
        )
        harden_application(server._tornado, origins)
        guard_autoload_scripts(server._tornado)
        refuse_large_bodies(server._tornado, config.app.max_body_bytes)

    init.lablink_hardened = True  # type: ignore[attr-defined]
    Server.__init__ = init  # type: ignore[method-assign]


def _extra_origins(server: Server, https: bool) -> list[str]:
    """``--allow-websocket-origin HOST:PORT`` entries, as origins."""
    scheme = "https" if https else "http"
    hosts = server._tornado.websocket_origins
    return [f"{scheme}://{host}" for host in hosts if host and "*" not in host]


def _option_value(name: str, default: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` on panel serve's command line."""
    args = sys.argv
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def served_url() -> str:
    """How local VM processes reach this ``panel serve`` (its --address and --port)."""
    port = int(_option_value("--port", str(PANEL_DEFAULT_PORT)))
    https = "--ssl-certfile" in _options()
    return local_url(_option_value("--address", ""), port, "https" if https else "http")


def announce(runtime: Runtime) -> None:
    """What ``lablink serve`` prints at start: the admin user, and a generated password once."""
    print(f"LabLink admin pages: /admin (user {runtime.admin.user})", flush=True)
    if runtime.admin.generated_password:
        print(
            "  generated admin password (shown once, stored hashed): "
            f"{runtime.admin.generated_password}",
            flush=True,
        )


async def start_serving(runtime: Runtime) -> None:
    """Start the listener and the loops, then freeze what startup built (see dashboard.heap)."""
    await runtime.start()
    freeze_startup_heap()


def setup() -> None:
    check_auth_options()
    config = load_config(os.environ.get("LABLINK_CONFIG"))
    harden_servers(config)
    runtime = build_runtime(config)
    install(runtime)
    # The same fleet as `lablink serve`: local VMs call back on this server's own port.
    runtime.attach_fleet(served_url())
    announce(runtime)
    pn.config.authorize_callback = make_authorize(current)
    if not _cookie_secret_given():
        pn.config.cookie_secret = cookie_secret_for(runtime)
    IOLoop.current().add_callback(start_serving, runtime)
    atexit.register(runtime.close)


setup()
