"""The fleet for scripts (admin only): GET /api/fleet, and POST /api/fleet/launch, /scale and
/destroy, which answer with the operation's progress as JSON lines (one object per line, the
last one ``{"event": "finished", ...}``) as it happens. POST /api/vms/{host}/heal reboots or
replaces one VM. The same one-at-a-time lock and recorded history as the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from dashboard.api.admin import AdminApiHandler
from lablink_core.errors import InvalidInput, LablinkError
from lablink_core.fleet import Fleet, FleetOperationHandle, FleetProgress


def _progress_json(progress: FleetProgress, event: str) -> dict[str, Any]:
    return {"event": event, **dataclasses.asdict(progress), "fraction": progress.fraction}


def _count(fields: dict[str, Any]) -> int:
    value = fields.get("count")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("count must be a whole number", field="count")
    return value


def _force(fields: dict[str, Any]) -> bool:
    value = fields.get("force", False)
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


class FleetApiHandler(AdminApiHandler):
    """Base: the server's fleet, or a clear 409 when it has none."""

    def fleet(self) -> Fleet:
        fleet = self.runtime.fleet
        if fleet is None:
            reason = self.runtime.fleet_error or "no fleet provider is configured"
            raise LablinkError(f"This server has no fleet ({reason}).")
        return fleet

    async def stream(self, start: Callable[[Fleet], FleetOperationHandle]) -> None:
        """Start an operation and write its progress as JSON lines until it ends."""
        fleet = self.fleet()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[FleetProgress] = asyncio.Queue()

        def on_progress(progress: FleetProgress) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, progress)

        handle = await self.run_sync(start, fleet, on_progress)
        self.set_header("Content-Type", "application/x-ndjson; charset=utf-8")
        while True:
            progress = await queue.get()
            if progress.finished:
                break
            self.write(json.dumps(_progress_json(progress, "progress"), default=str) + "\n")
            await self.flush()
        await asyncio.to_thread(lambda: _settle(handle))
        self.finish(json.dumps(_progress_json(progress, "finished"), default=str) + "\n")


def _settle(handle: FleetOperationHandle) -> None:
    # A failure is in the final progress already (state "failed", error).
    with contextlib.suppress(LablinkError):
        handle.result(timeout=5)


class FleetStatusHandler(FleetApiHandler):
    async def get(self) -> None:
        fleet = self.fleet()

        def read() -> dict[str, Any]:
            vms = fleet.vms()
            return {
                "provider": fleet.provider.name,
                "vms": len(vms),
                "assigned": sum(1 for vm in vms if vm["user_email"]),
                "running_operation": fleet.running_operation(),
                "operations": fleet.operations(10),
            }

        self.write_json(await self.run_sync(read))


class FleetLaunchHandler(FleetApiHandler):
    async def post(self) -> None:
        count = _count(self.body_fields())
        await self.stream(lambda f, cb: f.start(f.launch, count, on_progress=cb))


class FleetScaleHandler(FleetApiHandler):
    async def post(self) -> None:
        fields = self.body_fields()
        count, force = _count(fields), _force(fields)
        await self.stream(lambda f, cb: f.start(f.scale_to, count, force=force, on_progress=cb))


class FleetDestroyHandler(FleetApiHandler):
    async def post(self) -> None:
        force = _force(self.body_fields())
        await self.stream(
            lambda f, cb: f.start(
                f.destroy_all, force=force, on_progress=cb, reason="admin API", actor="admin"
            )
        )


class VMHealHandler(FleetApiHandler):
    """Reboot or replace one VM now (what the healer would do)."""

    async def post(self, hostname: str) -> None:
        action = self.body_fields().get("action", "reboot")
        if action not in ("reboot", "replace"):
            raise InvalidInput("action must be reboot or replace", field="action")
        await self.stream(
            lambda f, cb: f.start(
                f.heal, hostname, action, reason="asked by an admin", actor="admin", on_progress=cb
            )
        )
