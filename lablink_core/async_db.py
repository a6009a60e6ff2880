"""Single statements run on the asyncio event loop, through psycopg2's asynchronous mode.

The hot paths (a researcher's claim, fetching the tasks of woken VMs) are one statement
each. Run from a thread pool, every one of them pays two thread hops, the GIL handed back
and forth, and SQLAlchemy's execute path: more Python time than the statement itself takes
in PostgreSQL. Here the loop sends the statement, waits on the socket like any other, and
reads the rows. An asynchronous psycopg2 connection is always in autocommit, which is what a
single statement wants: PostgreSQL runs it as a transaction of its own.

A few connections are opened on demand and kept; a statement waits for a free one. One that
fails is closed, and a statement that met a dead connection (the database restarted) runs
again, once, on a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions
from sqlalchemy import TextClause
from sqlalchemy.dialects import postgresql

from lablink_core.errors import LablinkError

log = logging.getLogger(__name__)
_ALIVE = psycopg2.extensions.POLL_OK
_READ = psycopg2.extensions.POLL_READ
_WRITE = psycopg2.extensions.POLL_WRITE


class DatabaseUnavailable(LablinkError):
    """The database could not be reached or hung up; retrying shortly is the answer."""

    code = "database_unavailable"


class _AsyncConnection(Protocol):
    closed: int

    def fileno(self) -> int: ...

    def poll(self) -> int: ...

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


def pyformat(statement: TextClause) -> str:
    """A ``text()`` statement with ``:name`` parameters as psycopg2 takes it (``%(name)s``),
    so both paths run one SQL source."""
    dialect: Any = postgresql.psycopg2.dialect
    return str(statement.compile(dialect=dialect()))


class AsyncStatements:
    """Up to ``size`` asynchronous connections to one database, used one statement at a time."""

    def __init__(self, dsn: str, *, size: int = 4, application_name: str = "lablink") -> None:
        self._dsn = dsn
        self._size = size
        self._application_name = application_name
        self._idle: list[_AsyncConnection] = []
        self._opened = 0
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self.statements = 0

    @property
    def connections(self) -> int:
        """Connections open now (idle or running a statement)."""
        return self._opened

    async def fetch_all(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of one statement (``sql`` in psycopg2's ``%(name)s`` style)."""
        for attempt in (1, 2):
            try:
                async with self._connection() as connection:
                    return await self._run(connection, sql, params)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
                self.close()  # the others are as dead as this one was, if the server restarted
                if attempt == 2:
                    log.warning("database unavailable: %s", str(error).splitlines()[0])
                    raise DatabaseUnavailable(
                        "the database is unavailable; retry shortly"
                    ) from error
        raise AssertionError("unreachable")

    async def fetch_one(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def warm(self, count: int) -> None:
        """Open up to ``count`` connections now, so that the first statements (a thousand
        VMs woken at once) do not wait for connection setup. A failure is only logged: the
        statements open their own later."""
        opened: list[_AsyncConnection] = []
        try:
            while len(opened) < count and self._opened < self._size:
                opened.append(await self._checkout())
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            log.warning("could not open loop connections: %s", str(error).splitlines()[0])
        finally:
            for connection in opened:
                self._checkin(connection, healthy=True)

    def close(self) -> None:
        """Close the idle connections (busy ones are closed when their statement ends)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            self._opened -= 1
            with contextlib.suppress(Exception):
                connection.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_AsyncConnection]:
        connection = await self._checkout()
        healthy = False
        try:
            yield connection
            healthy = True
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            raise  # the connection itself failed: never reused
        except psycopg2.DatabaseError:
            # An error of the statement (a unique violation, say) leaves it usable.
            healthy = not connection.closed
            raise
        finally:
            self._checkin(connection, healthy)

    async def _checkout(self) -> _AsyncConnection:
        while True:
            if self._idle:
                return self._idle.pop()
            if self._opened < self._size:
                self._opened += 1
                try:
                    return await self._open()
                except BaseException:
                    self._opened -= 1
                    self._wake_one()
                    raise
            turn = asyncio.get_running_loop().create_future()
            self._queue.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                self._wake_one()  # a turn given to a caller that left goes to the next
                raise

    def _checkin(self, connection: _AsyncConnection, healthy: bool) -> None:
        if healthy and not connection.closed:
            self._idle.append(connection)
        else:
            self._opened -= 1
            with contextlib.suppress(Exception):
                connection.close()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def _open(self) -> _AsyncConnection:
        connection: _AsyncConnection = psycopg2.connect(
            self._dsn, async_=True, connect_timeout=5, application_name=self._application_name
        )
        try:
            await _settled(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    async def _run(
        self, connection: _AsyncConnection, sql: str, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            self.statements += 1  # sent, whatever their outcome
            await _settled(connection)
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()


async def _settled(connection: _AsyncConnection) -> None:
    """Drive ``connection`` until its current operation is done, waiting on its socket."""
    loop = asyncio.get_running_loop()
    while True:
        state = connection.poll()  # raises the statement's error, if it had one
        if state == _ALIVE:
            return
        ready = loop.create_future()
        descriptor = connection.fileno()
        if state == _READ:
            loop.add_reader(descriptor, _resolve, ready)
            remove = loop.remove_reader
        elif state == _WRITE:
            loop.add_writer(descriptor, _resolve, ready)
            remove = loop.remove_writer
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        try:
            await ready
        finally:
            remove(descriptor)


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
