"""What VMs call: POST /vm_startup (register, then long-poll), POST /api/vm/status, and
POST /api/vm/enroll (a one-time enrolment token for the VM's credential).

Both LabLink clients poll /vm_startup. Ours sends the generation it last acted on and takes
any newer task, assigned or released. The original (CRD-era) client sends only its hostname,
waits up to seven days, and exits for good on a 200 without ``"status": "success"``: it is
held until it has an assignment (``app.original_client_wait_seconds``), then told 204, and
never answered 200 without one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dashboard.api.base import ApiHandler
from lablink_core.credentials import VMCredentials
from lablink_core.errors import InvalidInput, Unauthorized
from lablink_core.reports import parse_status_report
from lablink_core.validation import validate_hostname
from lablink_core.vm_logs import parse_lines
from lablink_core.vms import VMTask

log = logging.getLogger(__name__)


class MachineHandler(ApiHandler):
    """A handler whose caller is a VM, authenticated by its own bearer credential: the
    database statement that serves the call also checks it."""

    def proof(self, hostname: str) -> str:
        """The hash the statement matches; refused at once if it cannot be a credential."""
        proof = VMCredentials.proof(self.bearer_token())
        if proof is None:
            raise self.refusal(hostname)
        return proof

    def refusal(self, hostname: str) -> Unauthorized:
        self.set_header("WWW-Authenticate", 'Bearer realm="lablink-vm"')
        return Unauthorized(f"unknown VM {hostname}, or a wrong or revoked credential")


def _generation(fields: dict[str, Any]) -> int:
    value = fields.get("generation", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput("generation must be a non-negative integer", field="generation")
    return value


def _is_news(task: VMTask, seen: int, original: bool) -> bool:
    return task.assigned if original else task.generation > seen


class VMStartupHandler(MachineHandler):
    """Registers the VM, then holds the request until it has something new to run.

    The wait is an asyncio future in the process's waiting room: no thread and no database
    connection per VM. The waiter subscribes before the current state is read.
    """

    _wait: asyncio.Future[VMTask | None] | None = None  # the waiter's own future
    _hostname: str | None = None

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = validate_hostname(fields.get("hostname"))
        proof = self.proof(hostname)
        original = "generation" not in fields
        seen = 0 if original else _generation(fields)
        self._hostname = hostname
        task = await self._poll(hostname, proof, seen, original)
        if task is None:
            self.set_status(204)
            self.finish()
            return
        reply = None if task.revoked else task.reply(proof, self.runtime.services.credentials)
        if reply is None:  # revoked, or rotated and acknowledged meanwhile
            raise self.refusal(hostname)
        self.write_json(reply)

    async def _poll(self, hostname: str, proof: str, seen: int, original: bool) -> VMTask | None:
        runtime = self.runtime
        app = runtime.config.app
        hold = app.original_client_wait_seconds if original else app.vm_wait_seconds
        deadline = asyncio.get_running_loop().time() + hold
        kind = "original" if original else "lablink"
        after, first = seen, True
        while True:
            async with runtime.waiters.waiting(hostname, after, vouch=not original) as waiter:
                if first:
                    task = await self.run_sync(
                        runtime.services.registry.register, hostname, proof, kind
                    )
                    if task is None:
                        raise self.refusal(hostname)
                    first = False
                else:
                    task = (await self.run_sync(runtime.services.registry.tasks, [hostname])).get(
                        hostname
                    )
                if task is None or task.revoked or _is_news(task, seen, original):
                    return task
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return None
                self._wait = waiter.future
                try:
                    woken = await waiter.wait(remaining)
                except asyncio.CancelledError:
                    return None  # the VM hung up; leaving the block drops its waiter
            if woken is None:
                return None
            if woken.revoked or _is_news(woken, seen, original):
                return woken
            after = woken.generation  # a release the original client need not hear of

    def on_connection_close(self) -> None:
        if self._wait is not None and not self._wait.done():
            self._wait.cancel()
            if self._hostname is not None:
                # Not waiting any more: the claim should prefer VMs that still are.
                runtime = self.runtime
                runtime.executor.submit(runtime.services.registry.stop_waiting, self._hostname)


class VMStatusHandler(MachineHandler):
    """A VM reports its status, in-use flag, GPU health and activity; its heartbeat too."""

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = validate_hostname(fields.get("hostname"))
        proof = self.proof(hostname)
        report = parse_status_report(fields)
        if not await self.run_sync(self.runtime.services.registry.report, hostname, proof, report):
            raise self.refusal(hostname)
        self.write_json({"ok": True})


class VMLogsHandler(MachineHandler):
    """A VM sends lines of its own log or boot output (kept redacted, for its admin)."""

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = validate_hostname(fields.get("hostname"))
        proof = self.proof(hostname)
        source, lines = parse_lines(fields)
        logs = self.runtime.services.logs
        credential = self.bearer_token() or ""
        if not await self.run_sync(logs.append, hostname, proof, credential, source, lines):
            raise self.refusal(hostname)
        self.write_json({"ok": True, "kept": len(lines)})


class VMEnrollHandler(ApiHandler):
    """A new VM's first call: its one-time enrolment token (from user_data) for a credential."""

    async def post(self) -> None:
        fields = self.body_fields()
        hostname = validate_hostname(fields.get("hostname"))
        enrolment = self.runtime.services.enrolment
        credential = await self.run_sync(
            enrolment.exchange, hostname, fields.get("enrolment_token")
        )
        self.write_json({"hostname": hostname, "credential": credential})
