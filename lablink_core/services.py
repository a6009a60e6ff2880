"""Assembling the core services from a configuration: the one place that opens things.

The server's app factory, the CLI and the notebooks call :func:`open_services`; nothing is
created at import time.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from lablink_core.access import AccessPolicy
from lablink_core.allocation import Allocator
from lablink_core.config import LablinkConfig, database_url, default_data_dir
from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.db import ensure_database, make_engine, upgrade
from lablink_core.enrolment import VMEnrolment
from lablink_core.localdb import LocalPostgres
from lablink_core.metrics import Metrics, PoolReading
from lablink_core.reclaim import SessionClock
from lablink_core.schedules import ScheduleStore
from lablink_core.settings import SettingsStore
from lablink_core.vm_actions import ActionLog
from lablink_core.vm_logs import VMLogStore
from lablink_core.vms import VMRegistry
from lablink_core.waitlist import Waitlist

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The core services of one process, sharing one engine."""

    config: LablinkConfig
    url: str
    engine: Engine
    allocator: Allocator
    registry: VMRegistry
    secrets: SecretStore
    credentials: VMCredentials
    enrolment: VMEnrolment
    actions: ActionLog
    waitlist: Waitlist
    schedules: ScheduleStore
    sessions: SessionClock
    logs: VMLogStore
    settings: SettingsStore
    access: AccessPolicy
    local_postgres: LocalPostgres | None = None
    metrics: Metrics = field(default_factory=Metrics)

    def pool_reading(self) -> PoolReading:
        """The database's view for a metrics scrape: VMs by status, the pool, the queue."""
        pool = self.allocator.pool_counts()
        return PoolReading(
            vms_by_status=self.registry.counts(),
            free=pool["free"],
            silent=pool["silent"],
            unhealthy=pool["unhealthy"],
            waitlist=self.waitlist.length(),
        )

    def close(self, *, stop_database: bool = True) -> None:
        """Dispose of the engine and stop the private database if this process started it."""
        self.engine.dispose()
        if stop_database and self.local_postgres is not None:
            self.local_postgres.stop()


def data_dir(config: LablinkConfig) -> Path:
    configured = config.app.data_dir
    return Path(configured) if configured else default_data_dir()


def resolve_database(config: LablinkConfig) -> tuple[str, LocalPostgres | None]:
    """The URL to use, starting a private PostgreSQL when none is configured."""
    url = database_url(config.db)
    if url is not None:
        return url, None
    server = LocalPostgres(data_dir(config) / "postgres")
    server.start()
    log.info("using the private PostgreSQL in %s (port %s)", server.data_dir, server.port)
    return server.url(config.db.dbname), server


def _connect(config: LablinkConfig, migrate: bool) -> tuple[str, Engine, LocalPostgres | None]:
    """The database's URL and engine (its schema brought up to date unless told not to),
    and the private cluster started for it, if any."""
    url, server = resolve_database(config)
    if server is not None:
        ensure_database(url)
    engine = make_engine(url, pool_size=config.db.pool_size)
    if migrate:
        upgrade(engine, config.db)
    return url, engine, server


def _session_clock(
    engine: Engine, config: LablinkConfig, allocator: Allocator, schedules: ScheduleStore
) -> SessionClock:
    """Sessions end by taking the VM back, and never run past the next scheduled teardown."""

    def teardown_at(now: dt.datetime) -> dt.datetime | None:
        upcoming = schedules.next_teardown(now)
        return None if upcoming is None else upcoming.at

    return SessionClock(
        engine,
        config.db.table_name,
        config.session,
        release=lambda hostname, reason: allocator.take_back(hostname, reason),
        teardown_at=teardown_at,
    )


def open_services(
    config: LablinkConfig, *, migrate: bool = True, metrics: Metrics | None = None
) -> Services:
    """Connect to (or start) the database, bring its schema up to date, build the services
    (recording into ``metrics`` when given: the server passes its Prometheus metrics)."""
    metrics = metrics or Metrics()
    url, engine, server = _connect(config, migrate)
    table = config.db.table_name
    store = SecretStore(engine)
    credentials = VMCredentials.from_store(store, config.app.secret_key)
    actions = ActionLog(engine, table)
    allocator = Allocator(
        engine,
        table,
        actions=actions,
        credentials=credentials,
        release_policy=config.app.release_policy,
        silence_seconds=config.app.unresponsive_after_seconds,
        metrics=metrics,
    )
    schedules = ScheduleStore(engine)
    settings = SettingsStore(engine)
    return Services(
        config=config,
        url=url,
        engine=engine,
        allocator=allocator,
        waitlist=Waitlist(
            engine,
            table,
            silence_seconds=config.app.unresponsive_after_seconds,
            expire_seconds=config.waitlist.expire_seconds,
            max_length=config.waitlist.max_length,
            metrics=metrics,
        ),
        schedules=schedules,
        logs=VMLogStore(engine, table),
        settings=settings,
        access=AccessPolicy(config.access, settings),
        sessions=_session_clock(engine, config, allocator, schedules),
        registry=VMRegistry(engine, table, busy_percent=config.session.gpu_busy_percent),
        secrets=store,
        credentials=credentials,
        enrolment=VMEnrolment(engine, table, credentials),
        actions=actions,
        local_postgres=server,
        metrics=metrics,
    )
