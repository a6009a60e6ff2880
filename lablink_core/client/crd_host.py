"""Running Chrome Remote Desktop for real, as the agent's own (non-root) account.

What CRD needs in a container (learnt from the CRD-era LabLink image):
- ``XDG_RUNTIME_DIR`` (/run/user/<uid>) must exist, mode 0700 and owned by the account, or
  start-host aborts with SIGTRAP (exit 133) and logs nothing.
- start-host needs USER, LOGNAME and HOME of the real account and an empty DISPLAY; it reads
  the PIN from standard input, twice, one line each. The PIN is never an argument.
- Neither start-host nor the desktop it leads to may see the VM's credential, so both get a
  clean environment built from an allow-list, not a copy of ours minus a deny-list.
- Without systemd (/run/systemd/system absent) start-host registers the host (it writes
  ``host#<hash>.json`` under ~/.config/chrome-remote-desktop/) but cannot start the daemon:
  the runner starts it with ``chrome-remote-desktop --start --new-session``.
- The OAuth code works once. On a warm restart (the registration exists and was made with
  this very code) the runner starts the daemon again instead of running start-host.
- CRD runs as the desktop account (see lablink_core.client.accounts), never as root, which
  start-host refuses anyway; a root agent switches to that account with setpriv.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lablink_core.client.accounts import SETPRIV, AccountError, make_owned_dirs, run_as
from lablink_core.client.runners import CrdLaunch
from lablink_core.crd import START_HOST

log = logging.getLogger(__name__)

DAEMON: Final = "/opt/google/chrome-remote-desktop/chrome-remote-desktop"
SAFE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Passed to CRD as they are: locale, time zone, and CRD's own settings. Nothing else.
PASSED_VARIABLES: Final = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "TZ")
PASSED_PREFIXES: Final = ("CHROME_REMOTE_DESKTOP_",)
CODE_MARKER: Final = ".lablink-registered-code"
START_HOST_TIMEOUT: Final = 180.0
DAEMON_TIMEOUT: Final = 120.0


class CrdHostError(OSError):
    """CRD could not be started; the message says which step failed and why."""


@dataclass(frozen=True)
class CrdHostPaths:
    """Where CRD lives; tests point these at fakes. None: derived from the account."""

    start_host: str = START_HOST
    daemon: str = DAEMON
    config_dir: Path | None = None
    runtime_root: Path = Path("/run/user")
    systemd_marker: Path = Path("/run/systemd/system")
    setpriv: str = SETPRIV


def clean_environment(
    account: pwd.struct_passwd, runtime_dir: Path, inherited: Mapping[str, str]
) -> dict[str, str]:
    """The whole environment CRD gets: the account's identity and an allow-list."""
    env = {name: inherited[name] for name in PASSED_VARIABLES if name in inherited}
    env.update(
        (name, value) for name, value in inherited.items() if name.startswith(PASSED_PREFIXES)
    )
    env.setdefault("PATH", SAFE_PATH)
    env.update(
        USER=account.pw_name,
        LOGNAME=account.pw_name,
        HOME=account.pw_dir,
        SHELL=account.pw_shell or "/bin/sh",
        DISPLAY="",
        XDG_RUNTIME_DIR=str(runtime_dir),
    )
    return env


def ensure_runtime_dir(root: Path, account: pwd.struct_passwd) -> Path:
    """/run/user/<uid>, created 0700 and owned by the account when missing."""
    path = root / str(account.pw_uid)
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        stat = path.stat()
        if stat.st_uid != account.pw_uid:
            os.chown(path, account.pw_uid, account.pw_gid)
        if stat.st_mode & 0o777 != 0o700:
            path.chmod(0o700)
    except OSError as error:
        raise CrdHostError(
            f"cannot prepare XDG_RUNTIME_DIR {path} for {account.pw_name}: {error.strerror} "
            "(the image's entrypoint normally creates it as root)"
        ) from error
    return path


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SubprocessCrdRunner:
    """Registers the CRD host with start-host and runs its daemon."""

    def __init__(
        self,
        paths: CrdHostPaths | None = None,
        *,
        output: Callable[[list[str]], None] | None = None,
        environ: Mapping[str, str] | None = None,
        account: pwd.struct_passwd | None = None,
    ) -> None:
        self.paths = paths or CrdHostPaths()
        self._output = output
        self._environ = environ if environ is not None else os.environ
        self._account = account
        self._active = False

    @property
    def running(self) -> bool:
        return self._active

    @property
    def account(self) -> pwd.struct_passwd:
        return self._account or pwd.getpwuid(os.getuid())

    @property
    def config_dir(self) -> Path:
        default = Path(self.account.pw_dir) / ".config" / "chrome-remote-desktop"
        return self.paths.config_dir or default

    def registrations(self) -> list[Path]:
        return sorted(self.config_dir.glob("host#*.json"))

    def start(self, launch: CrdLaunch) -> None:
        env = self._environment()
        marker = self.config_dir / CODE_MARKER
        warm = bool(self.registrations()) and _read(marker) == _code_digest(launch.code)
        under_systemd = self.paths.systemd_marker.is_dir()
        if warm:
            log.info("the host is registered with this code already: restarting its daemon")
            if under_systemd:
                self._active = True  # systemd restarts its own service
                return
            self._daemon(env, "--stop", check=False)
        else:
            self._daemon(env, "--stop", check=False)
            self._register(launch, env)
            marker.write_text(_code_digest(launch.code) + "\n", encoding="ascii")
        if not under_systemd:
            self._daemon(env, "--start", "--new-session", check=True)
        self._active = True

    def stop(self, *, forget: bool = False) -> None:
        try:
            if self._active or forget:
                self._daemon(self._environment(), "--stop", check=False)
        except CrdHostError as error:
            log.warning("could not stop the CRD daemon: %s", error)
        self._active = False
        if forget:
            for path in [*self.registrations(), self.config_dir / CODE_MARKER]:
                path.unlink(missing_ok=True)

    def _environment(self) -> dict[str, str]:
        account = self.account
        if account.pw_uid == 0:
            raise CrdHostError("CRD refuses to run as root: set LABLINK_DESKTOP_USER")
        runtime = ensure_runtime_dir(self.paths.runtime_root, account)
        return clean_environment(account, runtime, self._environ)

    def _register(self, launch: CrdLaunch, env: dict[str, str]) -> None:
        make_owned_dirs(self.config_dir, self.account)
        began = time.time()
        pin_twice = f"{launch.pin}\n{launch.pin}\n"
        code = self._run(launch.argv(self.paths.start_host), env, pin_twice, START_HOST_TIMEOUT)
        fresh = [p for p in self.registrations() if p.stat().st_mtime >= began - 1]
        if not fresh:
            raise CrdHostError(f"start-host registered no host (exit {code}); see the crd log")
        if code != 0:
            # Expected without systemd: registered, but it could not start the daemon.
            log.info("start-host registered the host and exited %d", code)

    def _daemon(self, env: dict[str, str], *options: str, check: bool) -> None:
        code = self._run([self.paths.daemon, *options], env, None, DAEMON_TIMEOUT)
        if check and code != 0:
            raise CrdHostError(f"chrome-remote-desktop {' '.join(options)} exited {code}")

    def _run(
        self, argv: Sequence[str], env: dict[str, str], stdin: str | None, timeout: float
    ) -> int:
        """Run one CRD command; its output goes to the crd log. Returns the exit status.

        Output goes through a file, not a pipe: the daemon's children may keep a pipe open
        long after the command itself has returned.
        """
        name = os.path.basename(argv[0])
        try:
            prefix = run_as(self.account, self.paths.setpriv)
        except AccountError as error:
            raise CrdHostError(str(error)) from error
        with tempfile.TemporaryFile() as output:
            try:
                done = subprocess.run(
                    [*prefix, *argv],
                    input=stdin.encode() if stdin is not None else None,
                    stdin=None if stdin is not None else subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=env["HOME"] if os.path.isdir(env["HOME"]) else None,
                    timeout=timeout,
                    start_new_session=True,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise CrdHostError(f"{name} did not finish within {timeout:.0f} s") from error
            except OSError as error:
                raise CrdHostError(f"cannot run {argv[0]}: {error.strerror}") from error
            finally:
                output.seek(0)
                self._emit(name, output.read())
        return done.returncode

    def _emit(self, name: str, raw: bytes) -> None:
        lines = [f"{name}: {line}" for line in raw.decode(errors="replace").splitlines()]
        if lines and self._output is not None:
            self._output(lines)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
