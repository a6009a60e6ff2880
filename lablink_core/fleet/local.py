"""The local provider: each VM is a ``lablink-client --dry-run`` process on this machine.

The VM agents are real: they long-poll the allocator, receive assignments and record the
CRD commands they would run. Every process is recorded in ``lablink_local_processes`` with
the server process that owns it, so a server that crashed leaves nothing running for long:
the next one stops its predecessor's processes (after checking, through /proc, that the pid
still belongs to that VM, since pids are recycled).

A server that stops stops its VM processes but keeps their rows; the next start resumes them
(:meth:`LocalProvider.resume`), each with a fresh credential and its assignment intact, so a
researcher's machine comes back with the server. A VM whose process is gone is never taken
for alive: it is not heard from, so it is not assignable, and an assigned one shows as
"assigned" (not "connected") until its new process reports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Engine, text

from lablink_core.fleet.base import LogCallback
from lablink_core.validation import validate_hostname

logger = logging.getLogger(__name__)

CLIENT_MODULE = "lablink_core.client"
# What a VM process inherits: enough to run Python, and nothing of the server's secrets
# (DATABASE_URL, the admin password) or proxies (the allocator is on 127.0.0.1).
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for its parent to collect it)."""
    stat = _read_proc(pid, "stat")
    if stat is None:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def is_vm_process(pid: int, hostname: str) -> bool:
    """Whether ``pid`` is still the agent of ``hostname`` (and not a recycled pid)."""
    cmdline = _read_proc(pid, "cmdline")
    if cmdline is None or not pid_alive(pid):
        return False
    argv = cmdline.split(b"\0")
    return CLIENT_MODULE.encode() in argv and hostname.encode() in argv


class LocalProvider:
    """VMs as processes of this machine, for trying LabLink out and for tests."""

    name = "local"

    def __init__(
        self,
        engine: Engine,
        allocator_url: str,
        issue_credential: Callable[[str], str],
        *,
        record_dir: Path,
        python: str = sys.executable,
        stop_timeout: float = 10.0,
        heartbeat_seconds: float = 15.0,
    ) -> None:
        self.allocator_url = allocator_url.rstrip("/")
        self.record_dir = Path(record_dir)
        self.python = python
        self.stop_timeout = stop_timeout
        self.heartbeat_seconds = heartbeat_seconds
        self._engine = engine
        # Called for every process started: a fresh credential each time, so a stopped
        # process's credential (left in /proc or a core file) is dead for its successor.
        self._issue_credential = issue_credential
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._closed = False
        # The record files hold CRD PINs: owner-only.
        self.record_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.reap_orphans()

    def record_path(self, hostname: str) -> Path:
        """The JSON-lines file where the VM records the CRD commands it would run."""
        return self.record_dir / f"{validate_hostname(hostname)}.jsonl"

    def log_path(self, hostname: str) -> Path:
        return self.record_dir / f"{validate_hostname(hostname)}.log"

    # FleetProvider -------------------------------------------------------------------

    def create(self, hostnames: Sequence[str], log: LogCallback) -> None:
        for done, hostname in enumerate(hostnames, start=1):
            process = self._spawn(hostname)
            log(f"started {hostname} (pid {process.pid})", done)

    def delete(self, hostnames: Sequence[str], log: LogCallback) -> None:
        self._stop(self._rows("hostname = ANY(:names)", names=list(hostnames)), log)

    def delete_all(self, log: LogCallback) -> None:
        self._stop(self._rows("true"), log)

    def instances(self) -> set[str]:
        return {name for name, pid in self._rows("true") if self._alive(name, pid)}

    def close(self) -> list[str]:
        """Stop every VM process this server process owns, and those whose owner is gone
        (started by `lablink fleet` from a shell, say); returns their hostnames. Their rows
        stay: the next server start resumes them."""
        with self._lock:
            self._closed = True
        mine = self._rows("owner_pid = :me", me=os.getpid())
        self._stop(mine, None)
        return sorted({name for name, _ in mine} | set(self.reap_orphans()))

    def resume(self, hostnames: Sequence[str], log: LogCallback) -> None:
        """Start again the VMs among these whose process is not running."""
        running = self.instances()
        missing = [h for h in hostnames if h not in running]
        for done, hostname in enumerate(missing, start=1):
            process = self._spawn(hostname)
            log(f"resumed {hostname} (pid {process.pid})", done)

    def reboot(self, hostname: str, log: LogCallback) -> None:
        """Stop the VM's process (if it still runs) and start a new one."""
        self._stop(self._rows("hostname = :h", h=hostname), None)
        process = self._spawn(hostname)
        log(f"restarted {hostname} (pid {process.pid})", 1)

    def replace(self, hostname: str, log: LogCallback) -> None:
        """A local VM has nothing to replace but its process: the same as a reboot."""
        self.reboot(hostname, log)

    def reap_orphans(self) -> list[str]:
        """Stop the processes of owners that are gone; returns their hostnames."""
        orphans = []
        owners: dict[int, bool] = {}
        for hostname, pid, owner in self._rows_with_owner():
            if owner not in owners:
                owners[owner] = owner == os.getpid() or pid_alive(owner)
            if not owners[owner]:
                orphans.append((hostname, pid))
        if orphans:
            logger.info("stopping %d local VM processes left by stopped servers", len(orphans))
        self._stop(orphans, None)
        return [hostname for hostname, _ in orphans]

    # Processes -----------------------------------------------------------------------

    def _spawn(self, hostname: str) -> subprocess.Popen[bytes]:
        name = validate_hostname(hostname)
        argv = [self.python, "-m", CLIENT_MODULE, "--allocator-url", self.allocator_url]
        argv += ["--hostname", name, "--dry-run", "--record", str(self.record_path(name))]
        argv += ["--heartbeat-seconds", str(self.heartbeat_seconds)]
        env = {key: os.environ[key] for key in _PASSED_ENV if key in os.environ}
        # Each process gets a fresh credential: the one its predecessor saved is dead.
        self.record_path(name).with_name(f"{name}.jsonl.credential").unlink(missing_ok=True)
        # The credential goes in the environment: argv is readable by every local user.
        env.update(LABLINK_VM_CREDENTIAL=self._issue_credential(name), PYTHONUNBUFFERED="1")
        with self._lock:
            if self._closed:
                raise RuntimeError("the local provider is closed; it starts no more VMs")
            with self.log_path(name).open("ab") as output:
                process = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._children[name] = process
        self._record(name, process.pid)
        return process

    def _alive(self, hostname: str, pid: int) -> bool:
        child = self._children.get(hostname)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return is_vm_process(pid, hostname)

    def _signal(self, hostname: str, pid: int, signum: signal.Signals) -> None:
        if not self._alive(hostname, pid):
            return
        # Each VM leads its own session, so its group holds anything it started too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)

    def _stop(self, entries: list[tuple[str, int]], log: LogCallback | None) -> None:
        """SIGTERM, then SIGKILL whatever is left at the deadline; forget the rows."""
        for hostname, pid in entries:
            self._signal(hostname, pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for done, (hostname, pid) in enumerate(entries, start=1):
            if not self._wait_gone(hostname, pid, deadline):
                logger.warning("%s (pid %s) ignored SIGTERM; killing it", hostname, pid)
                self._signal(hostname, pid, signal.SIGKILL)
                self._wait_gone(hostname, pid, time.monotonic() + 5.0)
            self._children.pop(hostname, None)
            if log is not None:
                log(f"stopped {hostname} (pid {pid})", done)
        self._forget([hostname for hostname, _ in entries])

    def _wait_gone(self, hostname: str, pid: int, deadline: float) -> bool:
        child = self._children.get(hostname)
        if child is not None and child.pid == pid:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
            return True
        while self._alive(hostname, pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)  # not our child: no way to wait for it but to look again
        return True

    # lablink_local_processes --------------------------------------------------------

    def _record(self, hostname: str, pid: int) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO lablink_local_processes (hostname, pid, owner_pid) "
                    "VALUES (:hostname, :pid, :owner) ON CONFLICT (hostname) DO UPDATE "
                    "SET pid = EXCLUDED.pid, owner_pid = EXCLUDED.owner_pid, started_at = now()"
                ),
                {"hostname": hostname, "pid": pid, "owner": os.getpid()},
            )

    def _rows(self, where: str, **params: object) -> list[tuple[str, int]]:
        return [(hostname, pid) for hostname, pid, _ in self._rows_with_owner(where, **params)]

    def _rows_with_owner(self, where: str = "true", **params: object) -> list[tuple[str, int, int]]:
        statement = text(
            "SELECT hostname, pid, owner_pid FROM lablink_local_processes "  # noqa: S608
            f"WHERE {where} ORDER BY hostname"
        )
        with self._engine.connect() as connection:
            rows = connection.execute(statement, params).all()
        return [(str(row.hostname), int(row.pid), int(row.owner_pid)) for row in rows]

    def _forget(self, hostnames: list[str]) -> None:
        if not hostnames:
            return
        with self._engine.begin() as connection:
            connection.execute(
                text("DELETE FROM lablink_local_processes WHERE hostname = ANY(:names)"),
                {"names": hostnames},
            )
