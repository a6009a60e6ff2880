"""The NOTIFY trigger, the shared listener and the waiting room, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence

import psycopg2
from sqlalchemy import Engine, text

from lablink_core.allocation import Allocator
from lablink_core.config import DatabaseConfig
from lablink_core.credentials import SecretStore, VMCredentials, token_hash
from lablink_core.db import ensure_database, make_engine, upgrade
from lablink_core.enrolment import VMEnrolment
from lablink_core.listener import Notification, NotificationListener, _connect, libpq_dsn
from lablink_core.localdb import LocalPostgres
from lablink_core.vms import VMRegistry, VMTask
from lablink_core.waiters import AssignmentWaiters
from tests.integration.test_allocation import crd
from tests.support.vms import bring_online, poll
from tests.support.waiting import async_wait_until, run_async, wait_until


def test_trigger_payload_is_small_and_skips_heartbeats(
    database_url: str,
    engine: Engine,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    allocator: Allocator,
) -> None:
    listen = psycopg2.connect(libpq_dsn(database_url))
    listen.autocommit = True
    listen.cursor().execute("LISTEN vm_updates")
    credential = bring_online(enrolment, registry, "vm-a")  # created booting, then available
    seat = allocator.request_vm("ada@example.org", crd())
    poll(registry, "vm-a", credential)  # a poll is only a heartbeat: no notification
    with engine.begin() as connection:  # delivered after all of the above
        connection.execute(text("SELECT pg_notify('vm_updates', 'sentinel')"))

    def arrived_through_sentinel() -> bool:
        listen.poll()
        return any(n.payload == "sentinel" for n in listen.notifies)

    wait_until(arrived_through_sentinel, message="the sentinel notification")
    payloads = [json.loads(n.payload) for n in listen.notifies if n.payload != "sentinel"]
    listen.close()
    assert payloads == [
        {"hostname": "vm-a", "what": "created", "generation": 0},
        {"hostname": "vm-a", "what": "status", "generation": 0},
        {"hostname": "vm-a", "what": "assigned", "generation": seat.generation},
    ]


async def _wait_for(
    waiters: AssignmentWaiters, registry: VMRegistry, enrolment: VMEnrolment, hostname: str
) -> VMTask | None:
    credential = await asyncio.to_thread(enrolment.enrol, hostname)
    async with waiters.waiting(hostname, after_generation=0) as waiter:
        current = await asyncio.to_thread(registry.register, hostname, token_hash(credential))
        assert current is not None
        if current.generation > 0:
            return current
        return await waiter.wait(timeout=30)


def test_two_hundred_waiters_each_woken_exactly_once(
    database_url: str,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    allocator: Allocator,
    db_config: DatabaseConfig,
) -> None:
    names = [f"vm-{i:03d}" for i in range(200)]

    async def scenario() -> tuple[list[VMTask | None], int]:
        listener = NotificationListener(database_url, db_config.message_channel)
        await listener.start()
        waiters = AssignmentWaiters(listener, registry.tasks)
        pending = [asyncio.create_task(_wait_for(waiters, registry, enrolment, n)) for n in names]
        await async_wait_until(lambda: waiters.count == 200, message="200 waiters")
        await asyncio.to_thread(
            lambda: [allocator.request_vm(f"u{i}@example.org", crd()) for i in range(200)]
        )
        results = await asyncio.gather(*pending)
        await asyncio.sleep(0)  # let any stray duplicate wakeup run before counting
        wakeups = waiters.wakeups
        waiters.close()
        await listener.stop()
        return results, wakeups

    results, wakeups = run_async(scenario())
    assert all(r is not None and r.assigned for r in results)
    assert sorted(r.hostname for r in results if r) == names
    assert wakeups == 200


class AssignmentCounter:
    """A second subscriber of the listener: counts the assignments it has heard of."""

    def __init__(self) -> None:
        self.heard = 0

    def on_notifications(self, notifications: list[Notification]) -> None:
        self.heard += sum(n.what == "assigned" for n in notifications)

    def on_resync(self) -> None:
        pass


def test_wake_ups_heard_during_a_fetch_share_the_next_fetch(
    database_url: str,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    allocator: Allocator,
    db_config: DatabaseConfig,
) -> None:
    """One fetch at a time: 39 assignments committed one by one while the first VM's task is
    being read are read afterwards in one query, not one each (nor one per socket read)."""
    names = [f"vm-{i:02d}" for i in range(40)]
    fetched: list[list[str]] = []

    async def scenario() -> tuple[list[VMTask | None], str]:
        listener = NotificationListener(database_url, db_config.message_channel)
        await listener.start()
        counter, gate = AssignmentCounter(), asyncio.Event()
        listener.subscribe(counter)

        async def slow_fetch(hostnames: Sequence[str]) -> dict[str, VMTask]:
            fetched.append(list(hostnames))
            await gate.wait()
            return await asyncio.to_thread(registry.tasks, hostnames)

        waiters = AssignmentWaiters(listener, registry.tasks, fetch_on_loop=slow_fetch)
        pending = [asyncio.create_task(_wait_for(waiters, registry, enrolment, n)) for n in names]
        await async_wait_until(lambda: waiters.count == 40, message="40 waiters")
        seat = await asyncio.to_thread(allocator.request_vm, "first@example.org", crd())
        await async_wait_until(lambda: len(fetched) == 1, message="the first fetch")
        for index in range(1, 40):
            await asyncio.to_thread(allocator.request_vm, f"u{index}@example.org", crd())
        await async_wait_until(lambda: counter.heard == 40, message="40 assignments heard")
        gate.set()
        results = await asyncio.gather(*pending)
        waiters.close()
        await listener.stop()
        return results, seat.hostname

    results, first = run_async(scenario())
    assert all(r is not None and r.assigned for r in results)
    assert fetched == [[first], sorted(set(names) - {first})]


def test_waiter_whose_vm_was_already_assigned_returns_at_once(
    database_url: str,
    registry: VMRegistry,
    enrolment: VMEnrolment,
    allocator: Allocator,
    db_config: DatabaseConfig,
) -> None:
    bring_online(enrolment, registry, "vm-early")
    seat = allocator.request_vm("ada@example.org", crd())

    async def scenario() -> VMTask | None:
        listener = NotificationListener(database_url, db_config.message_channel)
        await listener.start()
        waiters = AssignmentWaiters(listener, registry.tasks)
        result = await asyncio.wait_for(
            _wait_for(waiters, registry, enrolment, "vm-early"), timeout=5
        )
        await listener.stop()
        return result

    result = run_async(scenario())
    assert result is not None and result.pin == seat.pin and result.crd is not None


def test_waiter_is_removed_when_its_request_goes_away(
    database_url: str, registry: VMRegistry, enrolment: VMEnrolment, db_config: DatabaseConfig
) -> None:
    async def scenario() -> int:
        listener = NotificationListener(database_url, db_config.message_channel)
        await listener.start()
        waiters = AssignmentWaiters(listener, registry.tasks)
        task = asyncio.create_task(_wait_for(waiters, registry, enrolment, "vm-gone"))
        await async_wait_until(lambda: waiters.count == 1, message="one waiter")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listener.stop()
        return waiters.count

    assert run_async(scenario()) == 0


def _gated_connect(gate: threading.Event) -> Callable[[str, str], object]:
    calls = {"n": 0}

    def connect(dsn: str, channel: str) -> object:
        calls["n"] += 1
        if calls["n"] > 1:  # reconnects wait until the test has made its assignment
            gate.wait(timeout=30)
        return _connect(dsn, channel)

    return connect


def test_listener_survives_a_server_restart_and_delivers_what_it_missed(
    private_postgres: LocalPostgres, db_config: DatabaseConfig
) -> None:
    url = private_postgres.url("lablink")
    ensure_database(url)
    engine: Engine = make_engine(url, pool_size=2)
    upgrade(engine, db_config)
    credentials = VMCredentials.from_store(SecretStore(engine))
    registry = VMRegistry(engine, "vms")
    allocator = Allocator(engine, "vms", credentials=credentials)
    enrolment = VMEnrolment(engine, "vms", credentials)
    gate = threading.Event()

    async def scenario() -> tuple[VMTask | None, float, int]:
        listener = NotificationListener(url, "vm_updates", connect=_gated_connect(gate))  # type: ignore[arg-type]
        await listener.start()
        waiters = AssignmentWaiters(listener, registry.tasks)
        waiting = asyncio.create_task(_wait_for(waiters, registry, enrolment, "vm-r"))
        await async_wait_until(lambda: waiters.count == 1, message="the waiter")
        await asyncio.to_thread(private_postgres.stop)
        await async_wait_until(lambda: not listener.connected, timeout=10, message="loss noticed")
        await asyncio.to_thread(private_postgres.start)
        await asyncio.to_thread(allocator.request_vm, "ada@example.org", crd())  # NOTIFY lost
        loop = asyncio.get_running_loop()
        started = loop.time()
        gate.set()
        await listener.wait_connected(timeout=10)
        reconnect_seconds = loop.time() - started
        result = await asyncio.wait_for(waiting, timeout=10)
        await listener.stop()
        return result, reconnect_seconds, listener.reconnects

    try:
        result, reconnect_seconds, reconnects = run_async(scenario())
    finally:
        engine.dispose()
    assert result is not None and result.assigned
    assert reconnects == 1
    assert reconnect_seconds < 5
