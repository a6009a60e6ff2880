"""The Fleet: launch, scale, remove and destroy client VMs, one operation at a time.

The fleet manages the VM rows whose ``provider`` is its provider's name (VMs that called in
on their own are "manual" and left alone). Every operation holds the database-wide fleet
lock, is recorded in ``lablink_fleet_operations``, and ends with the VM table agreeing with
``provider.instances()``. A provider failure ends the operation "failed" and is raised as
:class:`FleetOperationFailed`, whose ``progress.error`` is the reason the dashboard shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from lablink_core.errors import InvalidInput, LablinkError, OperationInProgress
from lablink_core.fleet.base import (
    FleetOperationFailed,
    FleetOperationHandle,
    FleetProgress,
    FleetProvider,
    ProgressCallback,
    ResumingProvider,
    is_assigned,
)
from lablink_core.fleet.operations import (
    OperationStore,
    ProgressRecorder,
    fleet_lock,
    lock_is_held,
)
from lablink_core.fleet.plans import FleetPlanner, Plan
from lablink_core.fleet.table import FleetTable
from lablink_core.metrics import Metrics
from lablink_core.validation import validate_hostname
from lablink_core.vms import VMRegistry

log = logging.getLogger(__name__)
STOPPED_MESSAGE = "the VM's process stopped with the server; it starts again with it"


def _count(value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("the VM count must be a whole number", field="count")
    if not minimum <= value <= maximum:
        raise InvalidInput(f"the VM count must be between {minimum} and {maximum}", field="count")
    return value


def _reason(error: BaseException) -> str:
    if isinstance(error, LablinkError):
        return error.message
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Fleet:
    """The one interface the admin pages, notebooks and tests use."""

    def __init__(
        self,
        engine: Engine,
        registry: VMRegistry,
        provider: FleetProvider,
        *,
        name_prefix: str = "lablink-vm",
        max_instances: int = 500,
        metrics: Metrics | None = None,
    ) -> None:
        self.provider = provider
        self._metrics = metrics or Metrics()
        self.name_prefix = name_prefix
        self.max_instances = max_instances
        self._engine = engine
        self._registry = registry
        # VMRegistry keeps its table name private; the fleet's SQL needs the same table.
        self._table = FleetTable(engine, registry.table_name, name_prefix)
        self._plans = FleetPlanner(
            registry,
            self._table,
            provider,
            name_prefix=name_prefix,
            max_instances=max_instances,
        )
        self._store = OperationStore(engine)

    # Operations -----------------------------------------------------------------------

    def launch(self, count: int, *, on_progress: ProgressCallback | None = None) -> FleetProgress:
        """Add ``count`` new VMs (rows "booting" before the provider creates them)."""
        count = _count(count, 1, self.max_instances)
        return self._run("launch", None, lambda: self._plans.launch(count), on_progress)

    def scale_to(
        self, count: int, *, force: bool = False, on_progress: ProgressCallback | None = None
    ) -> FleetProgress:
        """Grow with new names, or shrink by removing VMs :func:`choose_removals` picks."""
        count = _count(count, 0, self.max_instances)
        return self._run("scale", count, lambda: self._plans.scale(count, force), on_progress)

    def remove(
        self,
        hostnames: Sequence[str],
        *,
        force: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> FleetProgress:
        """Remove these VMs; assigned ones only with ``force``."""
        names = list(dict.fromkeys(validate_hostname(h) for h in hostnames))
        if not names:
            raise InvalidInput("name at least one VM to remove", field="hostnames")
        return self._run("remove", None, lambda: self._plans.remove(names, force), on_progress)

    def destroy_all(
        self,
        *,
        force: bool = False,
        on_progress: ProgressCallback | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> FleetProgress:
        """Every VM of the provider and its shared resources; refused while VMs are
        assigned unless ``force``. ``reason`` and ``actor`` are recorded with it."""
        plan = lambda: self._plans.destroy(force)  # noqa: E731
        return self._run("destroy", 0, plan, on_progress, reason=reason, actor=actor)

    def start(
        self, operation: Callable[..., FleetProgress], *args: Any, **kwargs: Any
    ) -> FleetOperationHandle:
        """Run one of the operations above in a background thread.

        Returns once the operation is recorded; a refusal (OperationInProgress, InvalidInput)
        is raised here, in the caller's thread.
        """
        handle = FleetOperationHandle()
        callback: ProgressCallback | None = kwargs.pop("on_progress", None)

        def on_progress(progress: FleetProgress) -> None:
            handle.update(progress)
            if callback is not None:
                callback(progress)

        def work() -> None:
            try:
                handle.succeed(operation(*args, on_progress=on_progress, **kwargs))
            except BaseException as error:
                handle.fail(error)

        name = getattr(operation, "__name__", "operation")
        threading.Thread(target=work, name=f"lablink-fleet-{name}", daemon=True).start()
        handle.wait_begun()
        if handle.progress is None and handle.error is not None:
            raise handle.error
        return handle

    # Reading --------------------------------------------------------------------------

    def operations(self, limit: int = 20) -> list[dict[str, Any]]:
        """Recorded operations, newest first, as every session and process sees them."""
        return self._store.list(limit)

    def running_operation(self) -> dict[str, Any] | None:
        """The operation running now, or None. A 'running' row whose process died is not."""
        running = self._store.running()
        if running is None or not lock_is_held(self._engine):
            return None
        return running

    def vms(self) -> list[dict[str, Any]]:
        """The VM rows this fleet manages."""
        return self._plans.vms()

    def reconcile(self) -> bool:
        """Make the VM table agree with the provider now. False if an operation is running."""
        try:
            with fleet_lock(self._engine):
                self._store.fail_interrupted()
                self._reconcile()
        except OperationInProgress:
            return False
        return True

    def heal(
        self,
        hostname: str,
        action: str,
        *,
        reason: str,
        actor: str = "healer",
        on_progress: ProgressCallback | None = None,
    ) -> FleetProgress:
        """Reboot or replace one VM, recorded as a "heal" operation with its reason."""
        name = validate_hostname(hostname)
        plan = lambda: self._plans.heal(name, action, reason)  # noqa: E731
        return self._run("heal", None, plan, on_progress, reason=reason, actor=actor)

    @property
    def provider_name(self) -> str:
        """The provider's name, as the VM rows it launches record it ("local", "aws")."""
        return str(self.provider.name)

    def present(self) -> set[str] | None:
        """The VMs whose machine exists, where the provider can tell cheaply (local
        processes); None otherwise (asking Terraform's state each pass costs too much)."""
        if isinstance(self.provider, ResumingProvider):
            return self.provider.instances()
        return None

    def resume(self) -> list[str]:
        """At start: VMs whose processes stopped with the last server start again (local
        provider), keeping their rows and assignments. Returns the hostnames resumed."""
        provider = self.provider
        if not isinstance(provider, ResumingProvider):
            return []
        # Processes of one `--processes` server start together: each waits its turn.
        with fleet_lock(self._engine, wait_seconds=60.0):
            missing = sorted({vm["hostname"] for vm in self.vms()} - provider.instances())
            self._table.mark_stopped(missing, STOPPED_MESSAGE)
            provider.resume(missing, lambda line, done: log.info("%s", line))
            return missing

    def close(self) -> None:
        """Stop what this process owns (local VM processes). Their rows stay, marked as
        stopped, for :meth:`resume` at the next start."""
        stopped = self.provider.close()
        try:
            self._table.mark_stopped(stopped, STOPPED_MESSAGE)
        except Exception:
            log.exception("could not mark the stopped local VMs in the VM table")

    # Running an operation ------------------------------------------------------------

    def _run(
        self,
        kind: str,
        target: int | None,
        make_plan: Callable[[], Plan],
        on_progress: ProgressCallback | None,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> FleetProgress:
        with fleet_lock(self._engine):
            self._store.fail_interrupted()
            plan = make_plan()
            planned = plan.planned
            operation_id = self._store.begin(
                kind,
                self.provider.name,
                target=target,
                planned=planned,
                reason=reason,
                actor=actor,
            )
            first = FleetProgress(operation_id, kind, "running", planned, 0, plan.summary)
            recorder = ProgressRecorder(self._store, first, on_progress)
            recorder.log(plan.summary, 0)
            began = time.monotonic()
            try:
                plan.run(recorder.log)
                self._reconcile()
            except Exception as error:
                self._metrics.fleet_operation(kind, "failed", time.monotonic() - began)
                raise self._failed(recorder, plan, error) from error
            self._metrics.fleet_operation(kind, "succeeded", time.monotonic() - began)
            return recorder.finish("succeeded")

    def _failed(
        self, recorder: ProgressRecorder, plan: Plan, error: Exception
    ) -> FleetOperationFailed:
        reason = _reason(error)
        log.warning("fleet operation #%s failed: %s", recorder.progress.operation_id, reason)
        try:
            self._table.unretire(plan.retired)
            self._reconcile()
        except Exception as second:
            reason += f" (and the VM table could not be checked afterwards: {_reason(second)})"
        final = recorder.finish("failed", reason)
        return FleetOperationFailed(f"Fleet operation failed: {reason}", final)

    def _reconcile(self) -> None:
        """Rows for VMs the provider lacks go (unless assigned); VMs without rows get one."""
        have = self.provider.instances()
        rows = self.vms()
        gone = [vm["hostname"] for vm in rows if vm["hostname"] not in have and not is_assigned(vm)]
        self._registry.remove(gone)
        known = {vm["hostname"] for vm in rows}
        self._registry.add_booting(sorted(have - known), provider=self.provider.name)
