"""What the VM reports about itself with each heartbeat: GPU, disk, boot, remote desktop."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_NVIDIA_QUERY: Final = ("--query-gpu=name,temperature.gpu,utilization.gpu", "--format=csv,noheader")
MAX_HEALTH_CHARS: Final = 200
BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
_CONNECTED_WORD: Final = re.compile(r"\bconnected\b", re.IGNORECASE)
# The kernel's boot id is a UUID; anything else (an odd container) is not sent at all, since
# the allocator refuses a report whose boot_id is not one.
_BOOT_ID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class GpuReport:
    health: str
    state: str = "unknown"  # healthy | unhealthy | unknown
    utilization: int | None = None


@dataclass(frozen=True)
class MachineState:
    """One heartbeat's measurements, as the status report's optional fields."""

    health: str | None = None
    gpu_state: str = "unknown"
    gpu_utilization: int | None = None
    crd_active: bool | None = None
    boot_id: str | None = None
    disk_free_pct: int | None = None

    def fields(self) -> dict[str, object]:
        return {
            "health": self.health,
            "gpu_state": self.gpu_state,
            "gpu_utilization": self.gpu_utilization,
            "crd_active": self.crd_active,
            "boot_id": self.boot_id,
            "disk_free_pct": self.disk_free_pct,
        }


def _percent(text: str) -> int | None:
    digits = text.strip().rstrip("%").strip()
    return max(0, min(100, int(digits))) if digits.isdigit() else None


def gpu_report(*, dry_run: bool = False, exe: str | None = None) -> GpuReport:
    """The GPUs as nvidia-smi sees them. Missing nvidia-smi is "unknown" (a machine without
    an NVIDIA GPU, or a container started without one); a failing one is "unhealthy"."""
    if dry_run:
        return GpuReport("no GPU (dry run)")
    exe = exe or shutil.which("nvidia-smi")
    if exe is None:
        return GpuReport("nvidia-smi not found")
    try:
        done = subprocess.run(
            [exe, *_NVIDIA_QUERY], capture_output=True, text=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return GpuReport("nvidia-smi timed out", "unhealthy")
    except OSError as error:
        return GpuReport(f"nvidia-smi failed: {error.strerror}", "unhealthy")
    if done.returncode != 0:
        why = " ".join(done.stderr.split() or done.stdout.split())
        return GpuReport(
            f"nvidia-smi failed (exit {done.returncode}): {why}"[:MAX_HEALTH_CHARS], "unhealthy"
        )
    rows = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if not rows:
        return GpuReport("nvidia-smi listed no GPU", "unhealthy")
    # The busiest GPU speaks for the machine: any busy GPU means someone is working.
    loads = [_percent(row.rsplit(",", 1)[-1]) for row in rows]
    known = [load for load in loads if load is not None]
    return GpuReport("; ".join(rows)[:MAX_HEALTH_CHARS], "healthy", max(known) if known else None)


def boot_id(path: Path = BOOT_ID) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text.lower() if _BOOT_ID_RE.fullmatch(text.lower()) else None


def disk_free_pct(path: Path) -> int | None:
    try:
        usage = shutil.disk_usage(str(path))
    except OSError:
        return None
    return round(100 * usage.free / usage.total) if usage.total else None


def desktop_state_file_connected(path: Path) -> bool:
    """Dry run: a remote desktop client is "connected" iff the file says the word
    ("disconnected" does not count); tests flip it while the agent runs."""
    try:
        return bool(_CONNECTED_WORD.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


class MachineProbe:
    """Measures everything a heartbeat carries; every part fails soft (reported as unknown)."""

    def __init__(
        self,
        *,
        dry_run: bool,
        disk_path: Path,
        crd_active: Callable[[], bool | None],
        gpu: Callable[[], GpuReport] | None = None,
    ) -> None:
        self._dry_run = dry_run
        self._disk_path = disk_path
        self._crd_active = crd_active
        self._gpu = gpu or (lambda: gpu_report(dry_run=dry_run))

    def __call__(self) -> MachineState:
        gpu = self._gpu()
        return MachineState(
            health=gpu.health,
            gpu_state=gpu.state,
            gpu_utilization=gpu.utilization,
            crd_active=self._crd_active(),
            boot_id=boot_id(),
            disk_free_pct=disk_free_pct(self._disk_path),
        )
