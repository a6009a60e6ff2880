"""Running a command and streaming its output lines: the side-effect seam of the runner."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class CommandRunner(Protocol):
    """Runs one command at a time and streams its output; tests replace it with a fake."""

    def stream(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_line: Callable[[str], None],
    ) -> int:
        """Run `argv` without a shell, call `on_line` per output line as it comes; exit code."""
        ...

    def cancel(self) -> None:
        """Ask the running command to stop cleanly (SIGINT); no-op when none runs."""
        ...


class SubprocessRunner:
    """Runs commands as child processes, stdout and stderr merged into one line stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def stream(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_line: Callable[[str], None],
    ) -> int:
        """Run `argv` without a shell, call `on_line` per output line as it comes; exit code."""
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # a Ctrl-C meant for the host does not hit terraform
        )
        with self._lock:
            self._process = process
        try:
            assert process.stdout is not None
            for line in process.stdout:
                on_line(line)
            return process.wait()
        except BaseException:
            _stop(process)
            raise
        finally:
            with self._lock:
                self._process = None

    def cancel(self) -> None:
        """Send SIGINT to the running command, so terraform stops and keeps its state."""
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            log.info("sending SIGINT to pid %s", process.pid)
            process.send_signal(signal.SIGINT)


def _stop(process: subprocess.Popen[str]) -> None:
    """Interrupt a child left running by an exception in the caller, and wait for it.

    The pipe is drained, not closed: terraform dies on a write to a closed pipe and would
    lose the state of resources it is creating.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    if process.stdout is not None:
        for _ in process.stdout:
            pass
    process.wait()
