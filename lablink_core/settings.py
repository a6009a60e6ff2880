"""Settings an admin changes on the dashboard, kept in ``lablink_settings`` so that every
process (and every restart) sees them; each overrides the configuration's value. Reads are
cached for a couple of seconds per process: a request must not cost a settings query."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from lablink_core.db import reconnecting


class SettingsStore:
    """Named JSON values, shared by every process through the database."""

    def __init__(
        self, engine: Engine, *, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, Any]] | None = None

    @reconnecting
    def all(self) -> dict[str, Any]:
        """Every stored setting (cached for ``ttl`` seconds)."""
        with self._lock:
            cached = self._cache
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        with self._engine.connect() as connection:
            rows = connection.execute(text("SELECT name, value FROM lablink_settings")).all()
        values = {str(row.name): row.value for row in rows}
        with self._lock:
            self._cache = (self._clock(), values)
        return values

    def cached(self) -> dict[str, Any] | None:
        """The settings if the cache is fresh, else None: never a database read, so an
        event loop may call it."""
        with self._lock:
            cached = self._cache
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        return None

    def get(self, name: str, default: Any = None) -> Any:
        return self.all().get(name, default)

    @reconnecting
    def set(self, name: str, value: Any, *, by: str | None = None) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO lablink_settings (name, value, updated_by, updated_at) "
                    "VALUES (:name, CAST(:value AS jsonb), :by, now()) ON CONFLICT (name) DO "
                    "UPDATE SET value = EXCLUDED.value, updated_by = :by, updated_at = now()"
                ),
                {"name": name, "value": json.dumps(value), "by": by},
            )
        with self._lock:
            self._cache = None
