"""The API's URL table, for `pn.serve(extra_patterns=...)` and the `--plugins` module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboard.api.admin import (
    AdminReleaseHandler,
    HealthHandler,
    ServerInfoHandler,
    VMListHandler,
)
from dashboard.api.client_bundle import ClientBundleHandler
from dashboard.api.machines import VMStartupHandler, VMStatusHandler
from dashboard.api.researcher import ReleaseVMHandler, RequestVMHandler
from dashboard.runtime import Runtime

_HOSTNAME = r"([a-z0-9][a-z0-9.-]{0,252})"


def api_routes(runtime: Callable[[], Runtime]) -> list[tuple[str, type, dict[str, Any]]]:
    """Route tuples; ``runtime`` is called per request, so routes can exist before it does."""
    handlers: list[tuple[str, type]] = [
        (r"/request_vm", RequestVMHandler),
        (r"/release_vm", ReleaseVMHandler),
        (r"/vm_startup", VMStartupHandler),
        (r"/api/vm/status", VMStatusHandler),
        (r"/api/health", HealthHandler),
        (r"/api/vms", VMListHandler),
        (rf"/api/vms/{_HOSTNAME}/release", AdminReleaseHandler),
        (r"/api/server", ServerInfoHandler),
        (r"/client/lablink-client\.pyz", ClientBundleHandler),
    ]
    return [(pattern, handler, {"runtime": runtime}) for pattern, handler in handlers]
