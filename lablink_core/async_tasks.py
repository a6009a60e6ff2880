"""The tasks of woken VMs, read on the event loop (see :mod:`lablink_core.async_db`).

One statement assigning a thousand waiting VMs wakes them all at once; their tasks are read
in one query without a thread hop, so the first answers leave sooner."""

from __future__ import annotations

from collections.abc import Sequence

from lablink_core.async_db import AsyncStatements, pyformat
from lablink_core.vms import VMRegistry, VMTask, task_from_values


class AsyncTasks:
    """:meth:`VMRegistry.tasks`, through ``statements``."""

    def __init__(self, registry: VMRegistry, statements: AsyncStatements) -> None:
        self._sql = pyformat(registry.tasks_statement)
        self._statements = statements

    async def __call__(self, hostnames: Sequence[str]) -> dict[str, VMTask]:
        if not hostnames:
            return {}
        rows = await self._statements.fetch_all(self._sql, {"names": list(hostnames)})
        return {task.hostname: task for task in map(task_from_values, rows)}
