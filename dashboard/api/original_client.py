"""The original LabLink client's reports, mapped onto the VM's row.

That client (CRD era) ignores the answers to these, so a wrong answer is silent: each is
answered 2xx when it was recorded. It authenticates with ``Authorization: Bearer
<API_TOKEN>``, which is the VM's credential. Its heartbeat names the VM ``vm_id``; the
other three say ``hostname``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from dashboard.api.machines import MachineHandler
from lablink_core.reports import (
    VMReport,
    parse_original_gpu_health,
    parse_original_heartbeat,
    parse_original_in_use,
    parse_original_vm_status,
)
from lablink_core.validation import validate_hostname

Parser = Callable[[Mapping[str, Any]], VMReport]


class OriginalReportHandler(MachineHandler):
    """One of the original client's report routes (the subclass names its parser)."""

    parser: ClassVar[Parser]
    hostname_field: ClassVar[str] = "hostname"

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = validate_hostname(fields.get(self.hostname_field))
        proof = self.proof(hostname)
        report = type(self).parser(fields)
        if not await self.run_sync(self.runtime.services.registry.report, hostname, proof, report):
            raise self.refusal(hostname)
        self.write_json({"status": "success", "ok": True})


class HeartbeatHandler(OriginalReportHandler):
    """POST /api/heartbeat: alive, with boot id, desktop connection and free disk."""

    parser = staticmethod(parse_original_heartbeat)
    hostname_field = "vm_id"


class InUseHandler(OriginalReportHandler):
    """POST /api/update_inuse_status: whether the lab's software is running."""

    parser = staticmethod(parse_original_in_use)


class GpuHealthHandler(OriginalReportHandler):
    """POST /api/gpu_health: Healthy, Unhealthy or N/A."""

    parser = staticmethod(parse_original_gpu_health)


class VMStatusReportHandler(OriginalReportHandler):
    """POST /api/vm-status: initializing, running, rebooting or error."""

    parser = staticmethod(parse_original_vm_status)
