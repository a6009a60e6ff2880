"""The admin pages served in-process: 50 sessions come and go and leave nothing behind."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import panel as pn
import pytest
from bokeh.client import ClientSession, pull_session
from sqlalchemy import Engine

from dashboard.admin import pages as admin
from dashboard.live import LiveVMTable, close_live_table, live_table
from lablink_core.access import AccessPolicy
from lablink_core.allocation import Allocator
from lablink_core.config import LablinkConfig
from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.enrolment import VMEnrolment
from lablink_core.listener import NotificationListener
from lablink_core.localdb import free_port
from lablink_core.schedules import ScheduleStore
from lablink_core.settings import SettingsStore
from lablink_core.vm_actions import ActionLog
from lablink_core.vm_logs import VMLogStore
from lablink_core.vms import VMRegistry
from lablink_core.waitlist import Waitlist
from tests.integration.test_allocation import CRD
from tests.support.vms import bring_online
from tests.support.waiting import wait_until

PAGES = {
    "/admin": admin.overview_page,
    "/admin/instances": admin.instances_page,
    "/admin/create": admin.create_page,
    "/admin/set-aws-credentials": admin.credentials_page,
}


def make_runtime(engine: Engine, database_url: str, data_dir: Path) -> SimpleNamespace:
    """What the admin pages need from a Runtime, on the test's database, without a fleet."""
    config = LablinkConfig()
    config.app.data_dir = str(data_dir)
    credentials = VMCredentials.from_store(SecretStore(engine))
    services = SimpleNamespace(
        engine=engine,
        registry=VMRegistry(engine, config.db.table_name),
        allocator=Allocator(engine, config.db.table_name, credentials=credentials),
        enrolment=VMEnrolment(engine, config.db.table_name, credentials),
        actions=ActionLog(engine, config.db.table_name),
        logs=VMLogStore(engine, config.db.table_name),
        waitlist=Waitlist(engine, config.db.table_name),
        schedules=ScheduleStore(engine),
        access=AccessPolicy(config.access, SettingsStore(engine)),
    )
    listener = NotificationListener(database_url, config.db.message_channel)
    workers = ThreadPoolExecutor(2, thread_name_prefix="test-pages")
    return SimpleNamespace(
        config=config,
        services=services,
        listener=listener,
        fleet=None,
        admin=SimpleNamespace(user="admin"),
        executor=workers,
        admin_executor=workers,
    )


@pytest.fixture
def served(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[Any]:
    """The four admin pages on a threaded in-process server with the listener running."""
    runtime = make_runtime(engine, database_url, tmp_path)
    importlib.import_module("panel.models.tabulator")  # as build_runtime does, before sessions
    port = free_port()
    pages = {url: (lambda build=build: build(runtime)) for url, build in PAGES.items()}
    server = pn.serve(
        pages,
        port=port,
        address="127.0.0.1",
        websocket_origin=f"127.0.0.1:{port}",
        threaded=True,
        start=True,
        show=False,
        check_unused_sessions_milliseconds=100,
        unused_session_lifetime_milliseconds=100,
    )
    url = f"http://127.0.0.1:{port}"
    # Whatever fails below, the server's thread (not a daemon) and the listener must stop, or
    # the test process cannot exit.
    try:
        wait_until(lambda: _answers(url), timeout=30, message="the test server")
        future = asyncio.run_coroutine_threadsafe(runtime.listener.start(), server.asyncio_loop)
        future.result(timeout=30)
        yield SimpleNamespace(url=url, runtime=runtime, table=live_table(runtime))
    finally:
        close_live_table(runtime)
        asyncio.run_coroutine_threadsafe(runtime.listener.stop(), server.asyncio_loop).result(30)
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/admin/set-aws-credentials", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def watcher_counts(table: LiveVMTable, config: LablinkConfig) -> dict[str, int]:
    """Watchers on every object that all sessions share."""
    shared = {
        "table": table,
        "config": config,
        "db": config.db,
        "app": config.app,
        "machine": config.machine,
        "fleet": config.fleet,
    }
    counts = {
        name: sum(len(w) for by_param in obj.param.watchers.values() for w in by_param.values())
        for name, obj in shared.items()
    }
    counts["table subscribers"] = table.subscriber_count
    return counts


def open_sessions(url: str, paths: list[str]) -> list[ClientSession]:
    """Open a session per path, ten at a time (each client runs its own event loop)."""
    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(lambda path: pull_session(url=f"{url}{path}"), paths))


def close_sessions(sessions: list[ClientSession]) -> None:
    """Close client sessions from this thread; closing a websocket needs a current event loop,
    and an earlier test's ``asyncio.run`` may have left the main thread without one."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for session in sessions:
            session.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_fifty_admin_sessions_leave_no_watchers_behind(served: Any) -> None:
    runtime, table = served.runtime, served.table
    before = watcher_counts(table, runtime.config)
    listener_subscribers = runtime.listener.subscriber_count
    assert before["table subscribers"] == 0

    paths = ["/admin/instances"] * 35 + [p for p in PAGES if p != "/admin/instances"] * 5
    started = time.monotonic()
    sessions = open_sessions(served.url, paths)
    print(f"opened {len(sessions)} sessions in {time.monotonic() - started:.1f} s")
    # The instances pages and the overviews follow the live table (its counts and cost).
    assert table.subscriber_count == 35 + paths.count("/admin")

    # While they are open, a change reaches the shared snapshot through NOTIFY.
    bring_online(runtime.services.enrolment, runtime.services.registry, "vm-live-1")
    wait_until(lambda: "vm-live-1" in table.snapshot.index, message="the new VM in the snapshot")

    started = time.monotonic()
    close_sessions(sessions)
    wait_until(
        lambda: table.subscriber_count == 0, timeout=60, message="every session unsubscribed"
    )
    print(f"all sessions destroyed {time.monotonic() - started:.1f} s after closing")
    assert watcher_counts(table, runtime.config) == before
    assert runtime.listener.subscriber_count == listener_subscribers
    # No thread per session: the process's only LabLink thread is the table's reader.
    named = {t.name for t in threading.enumerate() if t.name.startswith("lablink")}
    assert named - {"lablink-password_0"} == {"lablink-live-table"}  # the login's bcrypt thread


def test_an_assignment_reaches_the_snapshot_within_a_second_or_two(served: Any) -> None:
    runtime, table = served.runtime, served.table
    bring_online(runtime.services.enrolment, runtime.services.registry, "vm-a")
    sessions = open_sessions(served.url, ["/admin/instances"] * 3)
    wait_until(lambda: "vm-a" in table.snapshot.index, message="vm-a listed")
    reads = table.reads
    started = time.monotonic()
    runtime.services.allocator.request_vm("ada@example.org", CRD)
    wait_until(
        lambda: table.snapshot.loc["vm-a", "user_email"] == "ada@example.org",
        timeout=5,
        message="the assignment in the snapshot",
    )
    latency = time.monotonic() - started
    print(f"assignment -> shared snapshot in {latency * 1000:.0f} ms (bench/dashboard.py)")
    assert table.reads <= reads + 2  # one NOTIFY-driven read (a periodic one may interleave)
    close_sessions(sessions)
