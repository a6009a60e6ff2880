"""The API's URL table, for `pn.serve(extra_patterns=...)` and the `--plugins` module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboard.api.admin import (
    AdminReleaseHandler,
    HealthHandler,
    ServerInfoHandler,
    VMActionsHandler,
    VMHandler,
    VMListHandler,
    VMLogsTailHandler,
)
from dashboard.api.client_bundle import ClientBundleHandler
from dashboard.api.fleet import (
    FleetDestroyHandler,
    FleetLaunchHandler,
    FleetScaleHandler,
    FleetStatusHandler,
    VMHealHandler,
)
from dashboard.api.machines import (
    VMEnrollHandler,
    VMLogsHandler,
    VMStartupHandler,
    VMStatusHandler,
)
from dashboard.api.metrics import MetricsHandler
from dashboard.api.original_client import (
    GpuHealthHandler,
    HeartbeatHandler,
    InUseHandler,
    VMStatusReportHandler,
)
from dashboard.api.researcher import ExtendVMHandler, ReleaseVMHandler, RequestVMHandler
from dashboard.api.waitlist import TicketHandler, WaitlistHandler
from dashboard.runtime import Runtime

_HOSTNAME = r"([a-z0-9][a-z0-9.-]{0,252})"


def api_routes(runtime: Callable[[], Runtime]) -> list[tuple[str, type, dict[str, Any]]]:
    """Route tuples; ``runtime`` is called per request, so routes can exist before it does."""
    handlers: list[tuple[str, type]] = [
        (r"/request_vm", RequestVMHandler),
        (r"/api/request_vm", RequestVMHandler),  # where the original client's form posts
        (r"/release_vm", ReleaseVMHandler),
        (r"/extend_vm", ExtendVMHandler),
        (r"/api/waitlist/([A-Za-z0-9_-]{1,128})", TicketHandler),
        (r"/api/waitlist", WaitlistHandler),
        (r"/vm_startup", VMStartupHandler),
        (r"/api/vm/status", VMStatusHandler),
        (r"/api/vm/enroll", VMEnrollHandler),
        (r"/api/vm/logs", VMLogsHandler),
        (r"/api/heartbeat", HeartbeatHandler),
        (r"/api/update_inuse_status", InUseHandler),
        (r"/api/gpu_health", GpuHealthHandler),
        (r"/api/vm-status", VMStatusReportHandler),
        (r"/api/health", HealthHandler),
        (r"/api/vms", VMListHandler),
        (rf"/api/vms/{_HOSTNAME}", VMHandler),
        (rf"/api/vms/{_HOSTNAME}/release", AdminReleaseHandler),
        (rf"/api/vms/{_HOSTNAME}/logs", VMLogsTailHandler),
        (rf"/api/vms/{_HOSTNAME}/actions", VMActionsHandler),
        (rf"/api/vms/{_HOSTNAME}/heal", VMHealHandler),
        (r"/api/fleet", FleetStatusHandler),
        (r"/api/fleet/launch", FleetLaunchHandler),
        (r"/api/fleet/scale", FleetScaleHandler),
        (r"/api/fleet/destroy", FleetDestroyHandler),
        (r"/api/server", ServerInfoHandler),
        (r"/metrics", MetricsHandler),
        (r"/client/lablink-client\.pyz", ClientBundleHandler),
    ]
    return [(pattern, handler, {"runtime": runtime}) for pattern, handler in handlers]
