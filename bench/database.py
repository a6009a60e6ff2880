"""The benchmarks' PostgreSQL: a private server (or LABLINK_BENCH_DATABASE_URL's) and
throw-away databases copied from one migrated template.

`database_server()` is re-entrant: `python -m bench` opens it once around every benchmark, and
a benchmark run alone opens (and removes) its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from lablink_core.config import DatabaseConfig
from lablink_core.db import make_engine, upgrade
from lablink_core.localdb import LocalPostgres

DB_CONFIG = DatabaseConfig()
TABLE = DB_CONFIG.table_name


@dataclass
class DatabaseServer:
    """One PostgreSQL server and the databases the benchmarks made on it."""

    admin_url: str
    local: LocalPostgres | None = None
    template: str | None = None
    created: list[str] = field(default_factory=list)

    def admin_engine(self) -> Engine:
        return create_engine(
            make_url(self.admin_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
        )

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def _execute(self, statement: str) -> None:
        engine = self.admin_engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()

    def new_database(self) -> str:
        """A fresh database holding the migrated schema; returns its URL."""
        if self.template is None:
            self.template = f"lablink_bench_tpl_{uuid.uuid4().hex[:8]}"
            self._execute(f"CREATE DATABASE {self.template}")
            self.created.append(self.template)
            engine = make_engine(self.url(self.template), pool_size=1)
            try:
                upgrade(engine, DB_CONFIG)
            finally:
                engine.dispose()
        name = f"lablink_bench_{uuid.uuid4().hex[:10]}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        self.created.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name in self.created:
            self.created.remove(name)
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def version(self) -> str:
        engine = self.admin_engine()
        try:
            with engine.connect() as connection:
                return str(connection.execute(text("SHOW server_version")).scalar_one())
        finally:
            engine.dispose()

    def settings(self) -> dict[str, str]:
        """The server settings that shape commit-heavy throughput, for the report."""
        names = ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
        engine = self.admin_engine()
        try:
            with engine.connect() as connection:
                return {n: str(connection.execute(text(f"SHOW {n}")).scalar_one()) for n in names}
        finally:
            engine.dispose()

    def postmaster_pid(self) -> int | None:
        """The server's main process id, when it runs on this machine as our private server."""
        if self.local is None:
            return None
        pid_file = self.local.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pid_file.read_text().splitlines()[0])
        return None

    def close(self) -> None:
        for name in list(reversed(self.created)):
            with contextlib.suppress(Exception):
                self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.created.clear()
        if self.local is not None:
            self.local.remove()
            shutil.rmtree(self.local.data_dir.parent, ignore_errors=True)


_active: DatabaseServer | None = None


def _start() -> DatabaseServer:
    given = os.environ.get("LABLINK_BENCH_DATABASE_URL")
    if given:
        url = make_url(given).set(drivername="postgresql+psycopg2")
        return DatabaseServer(url.render_as_string(hide_password=False))
    folder = Path(tempfile.mkdtemp(prefix="lablink-bench-", dir="/tmp"))
    local = LocalPostgres(folder / "pgdata")
    return DatabaseServer(local.start(), local=local)


@contextlib.contextmanager
def database_server() -> Iterator[DatabaseServer]:
    """The active server, or a new one for the duration of the block."""
    global _active
    if _active is not None:
        yield _active
        return
    _active = server = _start()
    try:
        yield server
    finally:
        _active = None
        server.close()


@contextlib.contextmanager
def scratch_database(server: DatabaseServer) -> Iterator[str]:
    """A throw-away migrated database for one benchmark step; dropped afterwards."""
    url = server.new_database()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            server.drop(url)
