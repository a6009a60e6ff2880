"""Statements on the event loop (psycopg2's asynchronous mode) and the claim that runs there,
against real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import psycopg2.errors
import pytest
from sqlalchemy import Engine, text

from lablink_core.allocation import Allocator
from lablink_core.async_claim import AsyncClaims
from lablink_core.async_db import AsyncStatements, DatabaseUnavailable, pyformat
from lablink_core.async_tasks import AsyncTasks
from lablink_core.errors import InvalidInput, NoVMAvailable, SeatTaken
from lablink_core.listener import libpq_dsn
from lablink_core.localdb import free_port
from lablink_core.vms import VMRegistry
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd

APP_NAME = "lablink-loop-test"


def loop_connections(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": APP_NAME},
            ).scalar_one()
        )


def test_pyformat_keeps_the_sql_and_names_its_parameters() -> None:
    assert (
        pyformat(text("SELECT :a, '100%' WHERE x = :b")) == "SELECT %(a)s, '100%%' WHERE x = %(b)s"
    )


def test_statements_share_at_most_size_connections(database_url: str, engine: Engine) -> None:
    statements = AsyncStatements(libpq_dsn(database_url), size=2, application_name=APP_NAME)

    async def scenario() -> tuple[list[object], int]:
        sleeps = [statements.fetch_one("SELECT pg_sleep(0.05), %(i)s", {"i": i}) for i in range(6)]
        rows = await asyncio.gather(*sleeps)
        opened = await asyncio.to_thread(loop_connections, engine)
        statements.close()
        return [row[1] for row in rows if row is not None], opened

    values, opened = asyncio.run(scenario())
    assert values == list(range(6))
    assert opened == 2 and statements.connections == 0
    assert statements.statements == 6


def test_a_failed_statement_raises_and_leaves_the_connection_usable(database_url: str) -> None:
    statements = AsyncStatements(libpq_dsn(database_url), size=1)

    async def scenario() -> tuple[object, int]:
        with pytest.raises(psycopg2.errors.DivisionByZero):
            await statements.fetch_one("SELECT 1 / %(zero)s", {"zero": 0})
        row = await statements.fetch_one("SELECT 41 + 1", {})
        opened = statements.connections
        statements.close()
        return row, opened

    assert asyncio.run(scenario()) == ((42,), 1)


def test_connections_killed_by_the_server_are_replaced_once(
    database_url: str, engine: Engine
) -> None:
    """What a database restart does to idle pooled connections: the next statement meets a
    dead one, and runs again on a new one instead of failing."""
    statements = AsyncStatements(libpq_dsn(database_url), size=2, application_name=APP_NAME)

    async def scenario() -> object:
        await statements.warm(2)
        with engine.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :n"
                ),
                {"n": APP_NAME},
            )
        row = await statements.fetch_one("SELECT 7", {})
        statements.close()
        return row

    assert asyncio.run(scenario()) == (7,)


def test_an_unreachable_database_is_a_retryable_refusal() -> None:
    statements = AsyncStatements(f"postgresql://nobody@127.0.0.1:{free_port()}/none", size=1)

    async def scenario() -> None:
        await statements.warm(1)  # only logged
        await statements.fetch_one("SELECT 1", {})

    with pytest.raises(DatabaseUnavailable):
        asyncio.run(scenario())
    assert statements.connections == 0


def test_concurrent_claims_on_the_loop_never_share_a_vm(
    database_url: str,
    allocator: Allocator,
    free_vms: Callable[..., list[str]],
) -> None:
    names = free_vms(20)
    statements = AsyncStatements(libpq_dsn(database_url), size=8)
    claims = AsyncClaims(allocator, statements)

    async def one(i: int) -> str | None:
        try:
            return (await claims.request_vm(f"r{i}@example.org", crd(f"4/code-{i}"))).hostname
        except NoVMAvailable:
            return None

    async def scenario() -> list[str | None]:
        got = await asyncio.gather(*(one(i) for i in range(50)))
        statements.close()
        return list(got)

    got = asyncio.run(scenario())
    taken = [name for name in got if name is not None]
    assert sorted(taken) == sorted(names)  # each VM once, to one researcher
    for i, name in enumerate(got):
        if name is not None:
            assert allocator.holder_of(f"r{i}@example.org") == name


def test_an_email_gets_one_vm_and_bad_input_is_refused_before_the_database(
    database_url: str,
    allocator: Allocator,
    free_vms: Callable[..., list[str]],
) -> None:
    free_vms(3)
    statements = AsyncStatements(libpq_dsn(database_url), size=2)
    claims = AsyncClaims(allocator, statements)

    async def scenario() -> None:
        first = await claims.request_vm("Ada@Example.org", crd())
        assert first.email == "ada@example.org" and len(first.pin) == 6
        with pytest.raises(SeatTaken):
            await claims.request_vm("ada@example.org", crd())
        twice = await asyncio.gather(
            claims.request_vm("bob@example.org", crd()),
            claims.request_vm("bob@example.org", crd()),
            return_exceptions=True,
        )
        assert sorted(type(outcome).__name__ for outcome in twice) == ["Assignment", "SeatTaken"]
        done = statements.statements
        with pytest.raises(InvalidInput):
            await claims.request_vm("ada@example.org", "rm -rf /")
        assert statements.statements == done
        statements.close()

    asyncio.run(scenario())
    assert allocator.pool_counts()["free"] == 1


def test_woken_vms_tasks_read_on_the_loop_match_the_thread_path(
    database_url: str,
    allocator: Allocator,
    registry: VMRegistry,
    free_vms: Callable[..., list[str]],
) -> None:
    names = free_vms(3)
    allocator.request_vm("ada@example.org", crd("4/ada"))
    statements = AsyncStatements(libpq_dsn(database_url), size=1)
    tasks = AsyncTasks(registry, statements)

    async def scenario() -> object:
        found = await tasks([*names, "vm-gone"])
        assert await tasks([]) == {}
        statements.close()
        return found

    assert asyncio.run(scenario()) == registry.tasks(names)


@pytest.mark.parametrize("loop_connections", ["8", "0"])
def test_request_vm_assigns_on_either_path(
    database_url: str, free_vms: Callable[..., list[str]], loop_connections: str
) -> None:
    """The default claims on the event loop; ``db.loop_connections: 0`` on the request pool.
    A renewal (the seat token) takes the pool's transaction on both."""
    free_vms(2)
    server = RunningServer(
        database_url, extra_env={"LABLINK_DB_LOOP_CONNECTIONS": loop_connections}
    ).start()
    try:
        asked = {"email": "ada@example.org", "crd_command": crd("4/first")}
        first = httpx.post(f"{server.url}/request_vm", json=asked, timeout=30)
        assert first.status_code == 200, first.text
        seat = first.json()
        again = httpx.post(f"{server.url}/request_vm", json=asked, timeout=30)
        assert again.status_code == 409  # no seat token: the email already holds a VM
        renewal = {**asked, "crd_command": crd("4/second"), "seat_token": seat["seat_token"]}
        renewed = httpx.post(f"{server.url}/request_vm", json=renewal, timeout=30)
        assert renewed.status_code == 200 and renewed.json()["renewed"] is True
        assert renewed.json()["hostname"] == seat["hostname"]
        on_loop = int(str(server.info()["loop_statements"]))
        # The first request reads the access rule, so it takes the pool; the 409 is the loop's.
        assert (on_loop >= 1) if loop_connections != "0" else (on_loop == 0)
    finally:
        server.stop()
