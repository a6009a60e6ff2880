"""One server process, assembled: core services, the NOTIFY listener, the waiting room.

Created by :func:`build_runtime` from the app factory (``lablink serve``) or the ``--setup``
script (``panel serve``); handlers and pages reach it through :func:`current`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dashboard.request_limits import RequestLimits
from lablink_core.admin import AdminAccount, load_admin_account
from lablink_core.async_claim import AsyncClaims
from lablink_core.async_db import AsyncStatements
from lablink_core.async_tasks import AsyncTasks
from lablink_core.config import AccessConfig, LablinkConfig
from lablink_core.errors import LablinkError
from lablink_core.fleet import Fleet, make_fleet, make_provider
from lablink_core.listener import NotificationListener, libpq_dsn
from lablink_core.liveness import vouch_forever, vouch_interval
from lablink_core.maintenance import Maintenance
from lablink_core.metrics import PrometheusMetrics
from lablink_core.services import Services, data_dir, open_services
from lablink_core.shared_buckets import SharedBuckets
from lablink_core.waiters import AssignmentWaiters
from lablink_core.waitlist_watch import Dispatcher, TicketWaiters
from lablink_core.workshop import build_maintenance

log = logging.getLogger(__name__)
# Loop connections opened at start: enough for the batches a mass wake-up reads at once.
LOOP_CONNECTIONS_WARM = 4


@dataclass
class Runtime:
    """Everything one server process shares between its requests and sessions."""

    config: LablinkConfig
    services: Services
    listener: NotificationListener
    waiters: AssignmentWaiters
    executor: ThreadPoolExecutor
    admin: AdminAccount
    started: asyncio.Event = field(default_factory=asyncio.Event)
    # Background loops of this process (vouching for waiting VMs, maintenance, ...).
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    maintenance: list[Maintenance] = field(default_factory=list)
    dispatcher: Dispatcher | None = None
    tickets: TicketWaiters | None = None
    # Health checks and admin reads get threads of their own, so a flood of VM
    # registrations cannot make a load balancer's health check time out.
    admin_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="lablink-admin")
    )
    # Built once the server knows its port (local VMs call back on it); None if the
    # configured provider cannot be built, with the reason in fleet_error for the pages.
    fleet: Fleet | None = None
    fleet_error: str | None = None
    # How fast one address or one email may ask for VMs (this process's buckets).
    limits: RequestLimits = field(default_factory=lambda: RequestLimits(AccessConfig()))
    # First claims on the event loop's own connections (None when db.loop_connections = 0).
    statements: AsyncStatements | None = None
    claims: AsyncClaims | None = None

    async def start(self) -> None:
        """Start listening and the loops of this process; call on the server's event loop."""
        await self.listener.start()
        if self.statements is not None:
            await self.statements.warm(LOOP_CONNECTIONS_WARM)
        services = self.services
        interval = vouch_interval(self.config.app.unresponsive_after_seconds)
        self.tasks.append(
            asyncio.get_running_loop().create_task(
                vouch_forever(self.waiters.vouched, services.registry.touch_waiting, interval)
            )
        )
        waitlist = services.waitlist
        self.dispatcher = Dispatcher(self.listener, waitlist.dispatch, waitlist.length)
        self.dispatcher.start()
        self.tickets = TicketWaiters(self.listener)
        self.maintenance = [loop.start() for loop in build_maintenance(services, self.fleet)]
        self.started.set()

    async def stop(self) -> None:
        for loop in self.maintenance:
            await asyncio.to_thread(loop.stop)
        self.maintenance = []
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.tickets is not None:
            self.tickets.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.waiters.close()
        await self.listener.stop()
        if self.statements is not None:
            self.statements.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.admin_executor.shutdown(wait=False, cancel_futures=True)

    def attach_fleet(self, allocator_url: str) -> None:
        """Build the fleet (a local provider stops VM processes that stopped servers left
        behind) and make the VM table agree with what the provider has."""
        try:
            provider = make_provider(
                self.config, self.services, allocator_url, data_dir(self.config)
            )
            self.fleet = make_fleet(self.config, self.services, provider)
            resumed = self.fleet.resume()
            if resumed:
                log.info("resumed %d local VMs: %s", len(resumed), ", ".join(resumed))
            self.fleet.reconcile()
        except Exception as error:
            # The API and researcher pages work without a fleet; the admin pages say why.
            self.fleet_error = str(error) if isinstance(error, LablinkError) else repr(error)
            log.exception("fleet unavailable")

    def stop_fleet(self) -> None:
        """Stop the VM processes this server started, so none outlives it."""
        if self.fleet is None:
            return
        try:
            self.fleet.close()
        except Exception:
            log.exception("could not stop the fleet's local VMs")
        self.fleet = None

    def close(self) -> None:
        self.stop_fleet()
        self.services.close()


def build_runtime(config: LablinkConfig, buckets: SharedBuckets | None = None) -> Runtime:
    """Open the database (starting a private one if needed) and wire the process together."""
    # Sessions opening at the same moment raced on Panel's lazy import of the Tabulator
    # model ("partially initialized module"): import it once, before any session.
    importlib.import_module("panel.models.tabulator")
    services = open_services(config, metrics=PrometheusMetrics())
    listener = NotificationListener(services.url, config.db.message_channel)
    admin = load_admin_account(
        services.engine, services.secrets, config.app.admin_user, config.app.admin_password
    )
    executor = ThreadPoolExecutor(max_workers=config.db.pool_size, thread_name_prefix="lablink-db")
    statements = None
    if config.db.loop_connections:
        statements = AsyncStatements(libpq_dsn(services.url), size=config.db.loop_connections)
    waiters = AssignmentWaiters(
        listener,
        services.registry.tasks,
        services.metrics,
        fetch_on_loop=AsyncTasks(services.registry, statements) if statements else None,
    )
    runtime = Runtime(config, services, listener, waiters, executor, admin)
    runtime.limits = RequestLimits(config.access, buckets)
    if statements is not None:
        runtime.statements = statements
        runtime.claims = AsyncClaims(services.allocator, statements)
    return runtime


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    """The process's runtime; a clear error if the server was started without one."""
    if _current is None:
        raise RuntimeError(
            "LabLink is not set up in this process: run `lablink serve`, or `panel serve` with "
            "--setup dashboard/setup_server.py"
        )
    return _current
