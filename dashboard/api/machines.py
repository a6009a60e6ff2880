"""What VMs call: POST /vm_startup (register, then long-poll) and POST /api/vm/status."""

from __future__ import annotations

import asyncio
from typing import Any

from dashboard.api.base import ApiHandler
from lablink_core.errors import InvalidInput, Unauthorized
from lablink_core.validation import validate_hostname
from lablink_core.vms import VMStatusReport, VMTask


class MachineHandler(ApiHandler):
    """A handler whose caller is a VM, authenticated by its own bearer credential."""

    def authenticated_hostname(self, fields: dict[str, Any]) -> str:
        hostname = validate_hostname(fields.get("hostname"))
        if not self.runtime.services.credentials.verify(hostname, self.bearer_token()):
            self.set_header("WWW-Authenticate", 'Bearer realm="lablink-vm"')
            raise Unauthorized(f"missing or wrong credential for VM {hostname}")
        return hostname


def _generation(fields: dict[str, Any]) -> int:
    value = fields.get("generation", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput("generation must be a non-negative integer", field="generation")
    return value


class VMStartupHandler(MachineHandler):
    """Registers the VM, then holds the request until it has something new to run.

    The wait is an asyncio future in the process's waiting room: no thread and no database
    connection per VM. The waiter subscribes before the current state is read.
    """

    _wait: asyncio.Future[VMTask | None] | None = None

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = self.authenticated_hostname(fields)
        seen = _generation(fields)
        runtime = self.runtime
        async with runtime.waiters.waiting(hostname, seen) as waiter:
            task: VMTask | None = await self.run_sync(runtime.services.registry.register, hostname)
            if task is None or task.generation <= seen:
                self._wait = asyncio.ensure_future(waiter.wait(runtime.config.app.vm_wait_seconds))
                try:
                    task = await self._wait
                except asyncio.CancelledError:
                    return  # the VM hung up; leaving the block drops its waiter
        if task is None:
            self.set_status(204)
            self.finish()
            return
        self.write_json(task.as_json())

    def on_connection_close(self) -> None:
        if self._wait is not None:
            self._wait.cancel()


class VMStatusHandler(MachineHandler):
    """A VM reports its status, in-use flag and GPU health; doubles as its heartbeat."""

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = self.authenticated_hostname(fields)
        report = VMStatusReport.parse(fields)
        await self.run_sync(self.runtime.services.registry.report, hostname, report)
        self.write_json({"ok": True})
