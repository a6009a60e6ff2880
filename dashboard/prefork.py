"""`lablink serve --processes N`: one listening socket, N forked server processes.

The parent prepares what the processes share and must exist once (the private PostgreSQL,
the schema, the admin login, the metrics folder), binds the port, then forks. Each child is
a whole LabLink server (its own engine, LISTEN connection and waiting room); PostgreSQL is
the only state they share. The kernel hands each new connection to one child, so a page's
HTTP request and its websocket may reach different children: Bokeh then creates the
session in the child that the websocket reached, from the signed-in request the token
carries, and logins live in the database, so nothing needs pinning.

The parent forwards SIGTERM/SIGINT to the children, restarts a child that dies on its own
(a crash should not halve a workshop's capacity), and stops the private database last.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from tornado.netutil import bind_sockets
from tornado.web import Application, OutputTransform

from lablink_core.config import LablinkConfig
from lablink_core.errors import InvalidInput
from lablink_core.metrics import MULTIPROCESS_DIR_ENV, forget_process
from lablink_core.shared_buckets import SharedBuckets

log = logging.getLogger(__name__)

PROCESS_HEADER = "X-LabLink-Process"
# A child that keeps dying is not helped by restarting it forever.
MAX_RESTARTS = 10


def process_count(value: str | int | None) -> int:
    """``--processes``: a positive number, or ``auto`` for one per core."""
    if value is None or value == "":
        return 1
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= 64:
        raise InvalidInput(f"--processes must be 1-64 or 'auto', not {value!r}")
    return count


def checked_port(port: int, address: str) -> int:
    """The port the children will listen on (port 0 resolved), bound once and closed again
    before the fork, so that a port in use fails here, with its error, not in N children."""
    sockets = listening_sockets(port, address)
    resolved = int(sockets[0].getsockname()[1])
    for sock in sockets:
        sock.close()
    return resolved


def listening_sockets(port: int, address: str) -> list[socket.socket]:
    """A child's own sockets on the shared port (SO_REUSEPORT, Linux): the kernel spreads
    new connections over the children by a hash of each connection. One socket accepted on
    by every child would go to whichever woke first: a burst of connections (a load
    balancer's few keep-alive ones) all landed on one process."""
    return bind_sockets(port, address or None, reuse_port=True)


@contextmanager
def bokeh_binds_these(sockets: list[socket.socket]) -> Any:
    """Make the Bokeh server about to be built listen on ``sockets`` instead of binding.

    Bokeh binds its own sockets in ``Server.__init__`` and offers no argument for given
    ones (its multi-process mode forks inside the constructor, before our app could be
    assembled per process), so its module-level ``bind_sockets`` is swapped for the call.
    """
    import bokeh.server.server as bokeh_server

    port = sockets[0].getsockname()[1]
    original = bokeh_server.bind_sockets
    bokeh_server.bind_sockets = lambda address, wanted: (sockets, port)
    try:
        yield
    finally:
        bokeh_server.bind_sockets = original


class ProcessHeader(OutputTransform):
    """Names the child that answered: for load-balancer checks and the multi-process tests."""

    index = 0

    def transform_first_chunk(self, status_code: int, headers: Any, chunk: bytes, finishing: bool):  # type: ignore[no-untyped-def]
        headers[PROCESS_HEADER] = str(self.index)
        return status_code, headers, chunk


def label_responses(application: Application, index: int) -> None:
    ProcessHeader.index = index
    application.transforms.append(ProcessHeader)


@dataclass
class Children:
    """The forked server processes, by pid, and how to start one again."""

    start_child: Callable[[int], int]
    # How the parent pauses before a restart (tests pass one that does not sleep).
    pause: Callable[[float], None] = time.sleep
    by_pid: dict[int, int] = field(default_factory=dict)
    stopping: bool = False
    restarts: int = 0

    def start(self, count: int) -> None:
        for index in range(count):
            self.by_pid[self.start_child(index)] = index

    def signal_all(self, signum: int) -> None:
        for pid in list(self.by_pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    def supervise(self) -> int:
        """Wait for the children; restart one that died unasked. Returns the exit status."""
        status = 0
        while self.by_pid:
            try:
                pid, code = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = self.by_pid.pop(pid, None)
            if index is None:
                continue
            forget_process(pid)
            exit_code = os.waitstatus_to_exitcode(code)
            if self.stopping:
                status = status or max(exit_code, 0)
                continue
            status = self._restart(index, pid, exit_code) or status
        return status

    def _restart(self, index: int, pid: int, exit_code: int) -> int:
        if self.restarts >= MAX_RESTARTS:
            log.error("process %d keeps dying (%d restarts): stopping", index, self.restarts)
            self.stopping = True
            self.signal_all(signal.SIGTERM)
            return 1
        log.warning("process %d (pid %d) exited with %d: starting it again", index, pid, exit_code)
        self.restarts += 1
        self.pause(min(self.restarts, 5) * 0.2)  # a crash loop stays cheap
        self.by_pid[self.start_child(index)] = index
        return 0


def fresh_metrics_dir() -> str:
    """An empty folder for the children's metrics, named in the environment before any
    child imports ``prometheus_client`` (it picks its storage from it at import)."""
    path = tempfile.mkdtemp(prefix="lablink-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = path
    return path


def remove_metrics_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROCESS_DIR_ENV) == path:
        del os.environ[MULTIPROCESS_DIR_ENV]


def fork_child(run: Callable[[int], int], index: int) -> int:
    """Fork; the child runs ``run(index)`` and never returns into the parent's code."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = run(index)
    except BaseException:
        log.exception("process %d failed", index)
    finally:
        logging.shutdown()
        # os._exit: the parent's exit handlers (and its private database) are not the
        # child's to run.
        os._exit(code)


def share_private_database(config: LablinkConfig) -> Callable[[], None]:
    """Start the private PostgreSQL once, in the parent, and point the children's config
    at it; returns how to stop it (a no-op for a configured database)."""
    from lablink_core.config.loading import database_url
    from lablink_core.services import ensure_database, resolve_database

    if database_url(config.db) is not None:
        return lambda: None
    url, server = resolve_database(config)
    ensure_database(url)
    config.db.url = url
    assert server is not None
    return server.stop


def prepare_database(config: LablinkConfig) -> tuple[str, str | None]:
    """Migrate once and make sure the admin login exists, before any child starts (each
    would otherwise race to generate its own password); returns the admin user and a
    password generated now, if any."""
    from lablink_core.admin import load_admin_account
    from lablink_core.services import open_services

    services = open_services(config)
    try:
        admin = load_admin_account(
            services.engine, services.secrets, config.app.admin_user, config.app.admin_password
        )
        return admin.user, admin.generated_password
    finally:
        services.close(stop_database=False)


def run_child(
    config: LablinkConfig, host: str, port: int, index: int, buckets: SharedBuckets
) -> int:
    """One forked server process, serving on its own sockets until told to stop; its rate
    limits take from ``buckets``, which all the processes share."""
    from dashboard.server import create_server, run_server

    sockets = listening_sockets(port, host)
    server, runtime = create_server(
        config, port=port, address=host, sockets=sockets, process_index=index, buckets=buckets
    )
    log.info("process %d (pid %d) serving", index, os.getpid())
    log.info("process %d: %s", index, run_server(server, runtime))
    return 0
