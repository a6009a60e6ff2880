"""Fleet operations in the database: the one-at-a-time lock and the operation history.

The lock is a PostgreSQL session advisory lock held on a dedicated connection for the whole
operation: it excludes other threads, other sessions and other server processes alike, and
the server drops it by itself if the process holding it dies. The history lives in
``lablink_fleet_operations`` so every admin session of every process sees the same thing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, text

from lablink_core.errors import OperationInProgress
from lablink_core.fleet.base import FleetProgress, ProgressCallback

# Advisory locks are per database, so one constant key serves every VM table in it. It is
# below 2**31 so that pg_locks shows it as classid 0, objid KEY.
FLEET_LOCK_KEY = 1_281_969_742
LOG_CAP = 200_000
ERROR_CAP = 4_000
TRIMMED_MARK = "[earlier lines trimmed]\n"
INTERRUPTED = "interrupted: the server process running it stopped before it finished"

_SELECT = (
    "SELECT id, kind, provider, state, target, planned, done, log, error, started_at, ended_at, "
    "reason, actor FROM lablink_fleet_operations "
)


@contextmanager
def fleet_lock(engine: Engine, *, wait_seconds: float = 0.0) -> Iterator[Connection]:
    """Hold the fleet lock for the block, or raise OperationInProgress naming the holder
    (after trying for ``wait_seconds``: processes starting together take turns)."""
    connection = engine.connect()
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": FLEET_LOCK_KEY}
            ).scalar_one()
            # Commit so no transaction stays open for the operation's length; the lock
            # belongs to the session and outlives the transaction.
            connection.commit()
            if taken or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    except BaseException:
        connection.close()
        raise
    if not taken:
        connection.close()
        raise OperationInProgress(_busy_message(OperationStore(engine).running()))
    try:
        yield connection
    finally:
        _unlock(connection)


def _unlock(connection: Connection) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": FLEET_LOCK_KEY})
        connection.commit()
    except Exception:
        # A broken connection must not go back to the pool still holding the lock.
        connection.invalidate()
    finally:
        connection.close()


def _busy_message(running: dict[str, Any] | None) -> str:
    if running is None:
        return "Another fleet operation is starting; wait for it to finish, then try again."
    started = running["started_at"].strftime("%H:%M:%S UTC")
    return (
        f"Fleet operation #{running['id']} ({describe(running)}, started {started}) is "
        "still running; wait for it to finish, then try again."
    )


def describe(operation: dict[str, Any]) -> str:
    """'launch of 3 VMs on local' and the like, for messages."""
    target = operation.get("target")
    what = operation["kind"]
    if what == "scale" and target is not None:
        return f"scale to {target} VMs on {operation['provider']}"
    count = operation.get("planned") or 0
    return f"{what} of {count} VM{'s' if count != 1 else ''} on {operation['provider']}"


class OperationStore:
    """Reads and writes ``lablink_fleet_operations``; each method is its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def begin(
        self,
        kind: str,
        provider: str,
        *,
        target: int | None,
        planned: int,
        reason: str | None = None,
        actor: str | None = None,
    ) -> int:
        with self._engine.begin() as connection:
            value = connection.execute(
                text(
                    "INSERT INTO lablink_fleet_operations "
                    "(kind, provider, target, planned, reason, actor) "
                    "VALUES (:kind, :provider, :target, :planned, :reason, :actor) RETURNING id"
                ),
                {
                    "kind": kind,
                    "provider": provider,
                    "target": target,
                    "planned": planned,
                    "reason": reason,
                    "actor": actor,
                },
            ).scalar_one()
        return int(value)

    def update(self, operation_id: int, *, done: int, lines: str) -> None:
        """Set ``done`` and append ``lines`` to the log, keeping its last LOG_CAP characters."""
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    """
                    UPDATE lablink_fleet_operations SET done = :done,
                        log = CASE WHEN length(log) + length(:lines) > :cap
                                   THEN :mark || right(log || :lines, :cap)
                                   ELSE log || :lines END
                    WHERE id = :id
                    """
                ),
                {
                    "id": operation_id,
                    "done": done,
                    "lines": lines,
                    "cap": LOG_CAP,
                    "mark": TRIMMED_MARK,
                },
            )

    def finish(self, operation_id: int, state: str, error: str | None = None) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE lablink_fleet_operations SET state = :state, error = :error, "
                    "ended_at = now() WHERE id = :id"
                ),
                {"id": operation_id, "state": state, "error": _capped(error)},
            )

    def fail_interrupted(self) -> int:
        """Mark 'running' rows failed. Call only while holding the lock: none can be live."""
        with self._engine.begin() as connection:
            result = connection.execute(
                text(
                    "UPDATE lablink_fleet_operations SET state = 'failed', error = :error, "
                    "ended_at = now() WHERE state = 'running'"
                ),
                {"error": INTERRUPTED},
            )
        return int(result.rowcount)

    def list(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest operations, newest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(_SELECT + "ORDER BY id DESC LIMIT :n"),
                {"n": max(1, limit)},
            ).all()
        return [dict(row._mapping) for row in rows]

    def get(self, operation_id: int) -> dict[str, Any] | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                text(_SELECT + "WHERE id = :id"),
                {"id": operation_id},
            ).first()
        return dict(row._mapping) if row is not None else None

    def running(self) -> dict[str, Any] | None:
        """The operation in progress, if its row says so (see :func:`lock_is_held`)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                text(_SELECT + "WHERE state = 'running' ORDER BY id DESC LIMIT 1")
            ).first()
        return dict(row._mapping) if row is not None else None


def lock_is_held(engine: Engine) -> bool:
    """Whether some session holds the fleet lock now (a 'running' row without it is stale)."""
    with engine.connect() as connection:
        value = connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) "
                "AND classid = 0 AND objid = :key AND objsubid = 1)"
            ),
            {"key": FLEET_LOCK_KEY},
        ).scalar_one()
    return bool(value)


def _capped(message: str | None) -> str | None:
    if message is None or len(message) <= ERROR_CAP:
        return message
    return message[: ERROR_CAP - 1] + "…"


class ProgressRecorder:
    """Turns a provider's ``log(line, done)`` calls into progress callbacks and coalesced
    database writes (at most one every ``interval`` seconds, plus one at the end)."""

    def __init__(
        self,
        store: OperationStore,
        progress: FleetProgress,
        on_progress: ProgressCallback | None,
        *,
        interval: float = 0.3,
    ) -> None:
        self._store = store
        self._progress = progress
        self._on_progress = on_progress
        self._interval = interval
        self._pending: list[str] = []
        self._last_write = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def progress(self) -> FleetProgress:
        return self._progress

    def log(self, line: str, done: int) -> None:
        """Record one line of progress (thread-safe)."""
        with self._lock:
            self._progress = replace(self._progress, done=max(done, 0), message=line)
            self._pending.append(line.rstrip("\n") + "\n")
            if time.monotonic() - self._last_write >= self._interval:
                self._flush_locked()
            elif self._timer is None:
                # A quiet provider must not leave its last line unwritten for long.
                self._timer = threading.Timer(self._interval, self.flush)
                self._timer.daemon = True
                self._timer.start()
            snapshot = self._progress
        self._notify(snapshot)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        lines, self._pending = "".join(self._pending), []
        self._store.update(self._progress.operation_id, done=self._progress.done, lines=lines)
        self._last_write = time.monotonic()

    def finish(self, state: str, error: str | None = None) -> FleetProgress:
        """Write the remaining lines and the final state; tell the callback; return it."""
        message = self._progress.message if error is None else f"failed: {error}"
        with self._lock:
            self._flush_locked()
            self._progress = replace(self._progress, state=state, error=error, message=message)
            snapshot = self._progress
        self._store.finish(snapshot.operation_id, state, error)
        self._notify(snapshot)
        return snapshot

    def _notify(self, progress: FleetProgress) -> None:
        if self._on_progress is not None:
            self._on_progress(progress)
