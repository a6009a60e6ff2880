"""The private PostgreSQL trusts nobody: another local OS user reaching its port without the
password is refused, the password file is the server user's alone, the server process is not
in root's group, and a cluster made with `trust` by an older version is closed at its next
start."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from lablink_core.localdb import PASSWORD_FILE, SERVER_USER, LocalPostgres, _allow_traversal

AS_ROOT = os.geteuid() == 0


def psql_as_nobody(
    server: LocalPostgres, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``psql`` run as the OS user nobody (as root), or as this user otherwise."""
    env = {"PATH": os.environ.get("PATH", ""), "PGCONNECT_TIMEOUT": "5"}
    if password is not None:
        env["PGPASSWORD"] = password
    command = [str(server.bin_dir / "psql"), "-w", "-h", "127.0.0.1", "-p", str(server.port)]
    command += ["-U", "postgres", "-d", "postgres", "-c", "SELECT rolname FROM pg_roles LIMIT 1"]
    prefix = ["runuser", "-u", "nobody", "--"] if AS_ROOT else []
    return subprocess.run(
        [*prefix, *command], env=env, capture_output=True, text=True, timeout=30, cwd="/"
    )


def test_a_connection_without_the_password_is_refused(private_postgres: LocalPostgres) -> None:
    stranger = psql_as_nobody(private_postgres)
    assert stranger.returncode != 0
    assert "password" in stranger.stderr
    guess = psql_as_nobody(private_postgres, "postgres")
    assert guess.returncode != 0 and "password authentication failed" in guess.stderr
    # The allocator, holding the password, gets in.
    engine = create_engine(private_postgres.url())
    with engine.connect() as connection:
        assert connection.execute(text("SELECT current_user")).scalar() == "postgres"
    engine.dispose()


def test_the_password_file_is_the_server_users_alone(private_postgres: LocalPostgres) -> None:
    info = (private_postgres.data_dir / PASSWORD_FILE).stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(private_postgres.data_dir.stat().st_mode) == 0o700
    if AS_ROOT:
        assert info.st_uid == pwd.getpwnam(SERVER_USER).pw_uid
        readable = subprocess.run(
            ["runuser", "-u", "nobody", "--", "cat", str(private_postgres.password_file)],
            capture_output=True,
            text=True,
        )
        assert readable.returncode != 0
    hba = (private_postgres.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and line[0] != "#"]
    assert rules and all(rule[0] == "host" and rule[-1] == "scram-sha-256" for rule in rules)


@pytest.mark.skipif(not AS_ROOT, reason="only as root does the server run as another user")
def test_the_server_process_is_not_in_roots_group(private_postgres: LocalPostgres) -> None:
    pid = (private_postgres.data_dir / "postmaster.pid").read_text().split()[0]
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    uid, gid, groups = status["Uid"].split(), status["Gid"].split(), status["Groups"].split()
    account = pwd.getpwnam(SERVER_USER)
    assert set(uid) == {str(account.pw_uid)}
    assert set(gid) == {str(account.pw_gid)} and account.pw_gid != 0
    assert "0" not in groups


def test_a_trust_cluster_from_an_older_version_is_closed() -> None:
    folder = Path(tempfile.mkdtemp(prefix="lablink-old-")) / "pgdata"
    server = LocalPostgres(folder)
    try:
        folder.mkdir(mode=0o700)
        if AS_ROOT:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(folder, account.pw_uid, account.pw_gid)
            _allow_traversal(folder.parent)  # the server user must reach its data folder
        # What the older version did: trust on every connection.
        server._pg("initdb", "-D", str(folder), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        assert not server.password_file.exists()
        server.start()
        assert server.password_file.exists()
        assert psql_as_nobody(server).returncode != 0
        engine = create_engine(server.url())
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
    finally:
        server.remove()
        shutil.rmtree(folder.parent, ignore_errors=True)
