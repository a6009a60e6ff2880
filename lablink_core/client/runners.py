"""How the CRD host is run on a VM: as a child process, or only recorded (dry run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

_NVIDIA_QUERY: Final = ("--query-gpu=name,temperature.gpu,utilization.gpu", "--format=csv,noheader")


def gpu_health(*, dry_run: bool = False) -> str:
    """One line describing the GPUs, or why that is unknown."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "no GPU (dry run)" if dry_run else "nvidia-smi not found"
    try:
        done = subprocess.run(
            [exe, *_NVIDIA_QUERY], capture_output=True, text=True, timeout=5, check=False
        )
    except subprocess.TimeoutExpired:
        return "nvidia-smi timed out"
    except OSError as error:
        return f"nvidia-smi failed: {error}"
    if done.returncode != 0:
        return f"nvidia-smi failed (exit {done.returncode}): {done.stderr.strip()[:200]}"
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return "; ".join(lines)[:500] or "nvidia-smi listed no GPU"


class CrdRunner(Protocol):
    def start(self, argv: list[str]) -> None: ...

    def stop(self) -> None: ...

    @property
    def running(self) -> bool: ...


class SubprocessCrdRunner:
    """Runs the CRD host as a child process, from an argument list and never through a shell."""

    def __init__(self, *, grace_seconds: float = 2.0) -> None:
        self._grace = grace_seconds
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, argv: list[str]) -> None:
        self.stop()
        # A new session keeps a terminal's Ctrl-C away from the child: the agent
        # stops it itself, in order, after the signal.
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self._grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _option(argv: list[str], name: str) -> str | None:
    prefix = f"{name}="
    return next((arg.removeprefix(prefix) for arg in argv if arg.startswith(prefix)), None)


class DryRunCrdRunner:
    """Records what would run, as JSON lines in `record_path`, and runs nothing."""

    def __init__(self, record_path: Path) -> None:
        self.record_path = record_path
        self.started: list[list[str]] = []
        self._current: list[str] | None = None

    @property
    def running(self) -> bool:
        return self._current is not None

    def start(self, argv: list[str]) -> None:
        self.stop()
        self._current = list(argv)
        self.started.append(list(argv))
        code, pin = _option(argv, "--code"), _option(argv, "--pin")
        self._record({"event": "start", "argv": list(argv), "code": code, "pin": pin})

    def stop(self) -> None:
        if self._current is not None:
            self._record({"event": "stop", "code": _option(self._current, "--code")})
            self._current = None

    def _record(self, entry: dict[str, object]) -> None:
        entry["at"] = datetime.now(UTC).isoformat()
        # Owner-only: the start line carries the CRD PIN.
        descriptor = os.open(self.record_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
