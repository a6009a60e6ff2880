"""One LISTEN connection per process, read on the asyncio event loop.

Any number of callers can follow VM changes through it without a database connection each.
When the connection drops (the server restarted), it reconnects with backoff and tells every
subscriber to re-read what it cares about, because NOTIFYs sent while away are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import make_url

from lablink_core.models import checked_identifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    """One change, as a trigger announced it: to a VM row (hostname, generation), or to the
    waitlist (``what == "waitlist"``, with the entry's id and state)."""

    hostname: str
    what: str  # created | assigned | released | status | credential | deleted | waitlist
    generation: int
    ticket: int | None = None
    state: str | None = None


class Subscriber(Protocol):
    def on_notifications(self, notifications: list[Notification]) -> None: ...

    def on_resync(self) -> None: ...


class _Connection(Protocol):
    notifies: list[Any]

    def fileno(self) -> int: ...

    def poll(self) -> int: ...

    def close(self) -> None: ...


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy URL as psycopg2 wants it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def parse_payload(payload: str) -> Notification | None:
    try:
        data = json.loads(payload)
        if data["what"] == "waitlist":
            return Notification("", "waitlist", 0, int(data["ticket"]), str(data["state"]))
        return Notification(str(data["hostname"]), str(data["what"]), int(data["generation"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed notification payload")
        return None


def _connect(dsn: str, channel: str) -> _Connection:
    connection = psycopg2.connect(
        dsn,
        connect_timeout=3,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=2,
        application_name="lablink-listener",
    )
    connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    with connection.cursor() as cursor:
        cursor.execute(f"LISTEN {channel}")
    conn: _Connection = connection
    return conn


class NotificationListener:
    """Follows ``channel`` and fans notifications out to subscribers, on one event loop."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        connect: Callable[[str, str], _Connection] = _connect,
        max_backoff: float = 1.0,
    ) -> None:
        self._dsn = libpq_dsn(url)
        self._channel = checked_identifier(channel)
        self._connect = connect
        self._max_backoff = max_backoff
        self._subscribers: list[Subscriber] = []
        self._connection: _Connection | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Start delivering to ``subscriber``; returns the function that stops it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        """Connect (retrying until it works) and begin reading, on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = self._loop.create_task(self._keep_connected(first=True))
        await self._connected.wait()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._drop_connection()

    async def _keep_connected(self, *, first: bool) -> None:
        backoff = 0.05
        assert self._loop is not None
        while not self._stopping:
            try:
                connection = await asyncio.to_thread(self._connect, self._dsn, self._channel)
            except psycopg2.Error as error:
                log.warning("listener cannot connect (%s); retrying", str(error).strip())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self._connection = connection
            # Kept so the reader is removed by the number it was added with: after a failure
            # fileno() may raise, and a stale reader on a reused descriptor would steal
            # another socket's events.
            self._fd = connection.fileno()
            self._loop.add_reader(self._fd, self._on_readable)
            self._connected.set()
            if not first:
                self.reconnects += 1
                log.info("listener reconnected; asking subscribers to re-read")
                self._broadcast_resync()
            return

    def _on_readable(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            connection.poll()
        except (psycopg2.Error, OSError):
            log.warning("listener lost its connection; reconnecting")
            self._lost()
            return
        if not connection.notifies:
            return
        pending = list(connection.notifies)
        connection.notifies.clear()
        batch = [n for n in (parse_payload(item.payload) for item in pending) if n is not None]
        for subscriber in list(self._subscribers):
            self._deliver(functools.partial(subscriber.on_notifications, batch))

    def _lost(self) -> None:
        self._drop_connection()
        if not self._stopping and self._loop is not None:
            self._task = self._loop.create_task(self._keep_connected(first=False))

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._connected.clear()
        if connection is None:
            return
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        with contextlib.suppress(psycopg2.Error):
            connection.close()

    def _broadcast_resync(self) -> None:
        for subscriber in list(self._subscribers):
            self._deliver(subscriber.on_resync)

    @staticmethod
    def _deliver(call: Callable[[], None]) -> None:
        # One faulty subscriber must not stop the others or the listener.
        try:
            call()
        except Exception:
            log.exception("a notification subscriber failed")
