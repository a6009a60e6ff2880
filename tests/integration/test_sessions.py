"""Idle reclaim, extensions and scheduled teardowns on real servers with local VMs: a VM
whose desktop is not connected is taken back after the idle timeout with its reason shown,
one whose desktop is connected is not, an extension postpones it; a daily teardown with two
allocator processes on one database runs once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.fixtures.server import RunningServer, make_server_database
from tests.integration.test_allocation import crd
from tests.support.local_fleet import fleet_operation, set_desktop, vms
from tests.support.waiting import wait_until

SESSION_ENV = {
    "LABLINK_FLEET_PROVIDER": "local",
    "LABLINK_FLEET_LOCAL_HEARTBEAT_SECONDS": "0.5",
    "LABLINK_SESSION_IDLE_MINUTES": "0.1",  # six seconds without a desktop connection
    "LABLINK_SESSION_EXTENSION_MINUTES": "0.25",
    "LABLINK_SESSION_EXTENSIONS": "1",
}


@pytest.fixture(scope="module")
def session_server(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """A server whose sessions end after six idle seconds, with three local VMs."""
    server = RunningServer(make_server_database(postgres_server_url, template_database))
    server.extra_env.update(SESSION_ENV)
    server.start()
    fleet_operation(server, "launch", count=3)
    wait_until(
        lambda: sum(vm["status"] == "available" for vm in vms(server).values()) == 3,
        timeout=60,
        message="three available VMs",
    )
    yield server
    fleet_operation(server, "destroy", force=True)
    server.stop()


def take(api: RunningServer, email: str) -> dict[str, Any]:
    reply = httpx.post(
        f"{api.url}/request_vm", json={"email": email, "crd_command": crd()}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def holder(api: RunningServer, hostname: str) -> str | None:
    email: str | None = vms(api)[hostname]["user_email"]
    return email


def reasons(api: RunningServer, hostname: str) -> list[str]:
    reply = httpx.get(f"{api.url}/api/vms/{hostname}/actions", auth=api.admin_auth(), timeout=10)
    return [f"{a['action']}: {a['reason']}" for a in reply.json()["actions"]]


def test_idle_vms_are_reclaimed_connected_ones_are_not_and_extensions_postpone(
    session_server: RunningServer,
) -> None:
    api = session_server
    idle, busy, extended = (take(api, f"{n}@example.org") for n in ("idle", "busy", "ext"))
    set_desktop(api, busy["hostname"], connected=True)
    set_desktop(api, idle["hostname"], connected=False)
    set_desktop(api, extended["hostname"], connected=False)
    wait_until(lambda: vms(api)[busy["hostname"]]["crd_active"], timeout=20)
    reply = httpx.post(
        f"{api.url}/extend_vm",
        json={"email": "ext@example.org", "seat_token": extended["seat_token"]},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["ends"]["kind"] == "idle"
    again = httpx.post(
        f"{api.url}/extend_vm",
        json={"email": "ext@example.org", "seat_token": extended["seat_token"]},
        timeout=30,
    )
    assert again.status_code == 400 and "cannot be extended" in again.json()["error"]["message"]

    wait_until(lambda: holder(api, idle["hostname"]) is None, timeout=30, message="reclaim")
    assert holder(api, extended["hostname"]) == "ext@example.org"  # the extension held it
    assert reasons(api, idle["hostname"])[0] == "release: idle 0.1 min"
    wait_until(lambda: holder(api, extended["hostname"]) is None, timeout=40)
    assert holder(api, busy["hostname"]) == "busy@example.org"  # connected: never idle


def _scheduled_destroys(database_url: str) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT id, state FROM lablink_fleet_operations "
                        "WHERE kind = 'destroy' AND actor = 'schedule'"
                    )
                )
            )
    finally:
        engine.dispose()


def test_a_daily_teardown_with_two_allocators_runs_once(
    postgres_server_url: str, template_database: str
) -> None:
    database = make_server_database(postgres_server_url, template_database)
    servers = [RunningServer(database), RunningServer(database)]
    for server in servers:
        server.extra_env.update({"LABLINK_FLEET_PROVIDER": "local"})
        server.start()
    try:
        fleet_operation(servers[0], "launch", count=1)
        at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).strftime("%H:%M:%S")
        engine = create_engine(database)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO lablink_schedules (kind, time_of_day, timezone, next_run_at) "
                    "VALUES ('daily', :t, 'UTC', now() + interval '4 seconds')"
                ),
                {"t": at},
            )
        wait_until(lambda: len(_scheduled_destroys(database)) >= 1, timeout=60)
        wait_until(lambda: _scheduled_destroys(database)[0].state == "succeeded", timeout=60)
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT next_run_at, last_outcome FROM lablink_schedules")
            ).one()
        engine.dispose()
        assert len(_scheduled_destroys(database)) == 1  # once, not once per process
        assert row.last_outcome == "succeeded"
        assert row.next_run_at - dt.datetime.now(dt.UTC) > dt.timedelta(hours=23)
        assert vms(servers[1]) == {}
    finally:
        for server in servers:
            server.stop()
