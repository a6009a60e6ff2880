"""What the machine is and what its processes cost: CPU seconds, RSS, open-file limits."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
FILE_LIMIT_WANTED = 65536


def raise_file_limit(wanted: int = FILE_LIMIT_WANTED) -> int:
    """Raise this process's open-file limit as far as allowed; returns the new soft limit.

    Also usable as a ``preexec_fn``: the server process raises its own limit the same way.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target_hard = hard if hard == resource.RLIM_INFINITY else max(hard, wanted)
    with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, target_hard), target_hard))
        return min(wanted, target_hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces: fields start after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu(pid: int, *, with_reaped_children: bool = False) -> float:
    """CPU seconds (user + system) used by ``pid`` so far; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def task_cpu(pid: int) -> float:
    """CPU seconds of a single-threaded process to the nanosecond (/proc/PID/schedstat):
    a short-lived backend's few milliseconds vanish in /proc/PID/stat's 10 ms ticks."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return process_cpu(pid)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children, and the children it already reaped
    (PostgreSQL: the postmaster and every backend, past and present)."""
    fields = _stat_fields(pid)
    reaped = (int(fields[13]) + int(fields[14])) / _TICKS if fields else 0.0
    return task_cpu(pid) + reaped + sum(task_cpu(child) for child in children_of(pid))


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS) in KiB; 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class CpuMeter:
    """CPU used by named processes over a window, as a percentage of one core."""

    sources: dict[str, Callable[[], float]]
    _start: dict[str, float] | None = None
    _wall: float = 0.0

    def start(self) -> None:
        self._start = {name: read() for name, read in self.sources.items()}
        self._wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Percent of one core per source; ``cpu_other``: the machine's busy time that none
        of the sources account for (other programs on the machine)."""
        assert self._start is not None, "start() first"
        wall = max(time.monotonic() - self._wall, 1e-9)
        used = {
            name: round(100.0 * (read() - self._start[name]) / wall, 1)
            for name, read in self.sources.items()
        }
        if "cpu_machine" in used:
            ours = sum(value for name, value in used.items() if name != "cpu_machine")
            used["cpu_other"] = round(max(0.0, used["cpu_machine"] - ours), 1)
        return used


def standard_meter(server_pid: int | None = None, postmaster_pid: int | None = None) -> CpuMeter:
    """Meters this process, the server, PostgreSQL (when local) and the whole machine."""
    sources: dict[str, Callable[[], float]] = {"cpu_bench": self_cpu}
    if server_pid is not None:
        sources["cpu_server"] = lambda: process_cpu(server_pid)
    if postmaster_pid is not None:
        sources["cpu_postgres"] = lambda: tree_cpu(postmaster_pid)
    sources["cpu_machine"] = machine_busy
    return CpuMeter(sources)


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    with contextlib.suppress(OSError):
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(value) for value in fields[:8]]
        return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS
    return 0.0


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def code_version() -> str:
    """The commit benchmarked, and whether the server code had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "lablink_core", "dashboard"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit} (uncommitted server changes)" if changed else commit or "unknown"


def machine_info(postgres_version: str, postgres_settings: dict[str, str]) -> dict[str, object]:
    return {
        "code": code_version(),
        "nproc": len(os.sched_getaffinity(0)),
        "ram_gib": _ram_gib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres_version,
        "postgresql_settings": postgres_settings,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }
