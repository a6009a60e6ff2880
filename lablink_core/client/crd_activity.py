"""Whether a remote desktop client is connected to this VM right now (``crd_active``).

The signal is the CRD host's own log. For every client session the host process writes
``Client connected: <jid>`` when it accepts the session and ``Client disconnected: <jid>;
error = ...`` when the session ends (HOST_LOG lines of Chromium's remoting host, on its
stderr). Without systemd, as in our image, CRD's user-session wrapper sends the daemon's and
the host's output to ``/tmp/chrome_remote_desktop_<date>_<time>_XXXXXX``, one file per daemon
start, and newer versions point ``/tmp/chrome_remote_desktop.latest`` at the current one.
So: the clients are the jids connected and not yet disconnected in the newest log, and
nobody is connected when no host process runs (a host that died logs no disconnect).

Rejected alternatives: ``chrome-remote-desktop --get-status`` only says whether the daemon
runs; the host's syslog events need a syslog daemon, which a container lacks; utmp records
need the host's ``--enable-utempter`` flag and libutempter; counting the host's sockets
cannot tell WebRTC sessions from signalling traffic.

Caveats, documented rather than hidden: a session is logged as connected before the PIN is
checked, so a wrong-PIN attempt shows as connected for a moment; under systemd the log goes
to the journal instead, so no log file means "unknown" (None), never "not connected".
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

CRD_LOG_DIR: Final = Path("/tmp")  # noqa: S108 (CRD's own fixed location, only read)
LATEST_LINK: Final = "chrome_remote_desktop.latest"
LOG_PREFIX: Final = "chrome_remote_desktop_"
HOST_PROCESS: Final = "chrome-remote-desktop-host"
_CONNECTED: Final = re.compile(r"Client connected: ([^;\s]+)")
_DISCONNECTED: Final = re.compile(r"Client disconnected: ([^;\s]+)")


def latest_crd_log(directory: Path = CRD_LOG_DIR, uid: int | None = None) -> Path | None:
    """The log of the current (newest) CRD daemon of this user, or None."""
    uid = os.getuid() if uid is None else uid
    link = directory / LATEST_LINK
    if link.exists():
        return link
    newest: tuple[float, Path] | None = None
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        if not entry.name.startswith(LOG_PREFIX):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.st_uid == uid and (newest is None or stat.st_mtime > newest[0]):
            newest = (stat.st_mtime, Path(entry.path))
    return newest[1] if newest else None


def host_process_running(proc: Path = Path("/proc"), uid: int | None = None) -> bool:
    """Whether this user runs a CRD host process (the one that serves clients)."""
    uid = os.getuid() if uid is None else uid
    try:
        pids = [entry for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return False
    for entry in pids:
        try:
            if entry.stat().st_uid != uid:
                continue
            argv0 = (Path(entry.path) / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if os.path.basename(argv0.decode(errors="replace")) == HOST_PROCESS:
            return True
    return False


class CrdConnections:
    """The clients connected according to the log lines fed so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: set[str] = set()
        self.seen_log = False

    def reset(self) -> None:
        """A new log file: a new daemon, which starts with no client."""
        with self._lock:
            self._clients.clear()
            self.seen_log = True

    def feed(self, lines: list[str]) -> None:
        with self._lock:
            self.seen_log = True
            for line in lines:
                connected = _CONNECTED.search(line)
                if connected:
                    self._clients.add(connected.group(1))
                    continue
                disconnected = _DISCONNECTED.search(line)
                if disconnected:
                    self._clients.discard(disconnected.group(1))

    @property
    def any(self) -> bool:
        with self._lock:
            return bool(self._clients)


class CrdActivity:
    """``crd_active`` for a real VM: True, False, or None when it cannot be told."""

    def __init__(
        self,
        poll_log: Callable[[], None],
        connections: CrdConnections,
        host_running: Callable[[], bool] = host_process_running,
    ) -> None:
        self._poll_log = poll_log
        self._connections = connections
        self._host_running = host_running

    def __call__(self) -> bool | None:
        self._poll_log()
        if not self._host_running():
            return False
        if not self._connections.seen_log:
            return None
        return self._connections.any
