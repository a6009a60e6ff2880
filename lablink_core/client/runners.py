"""What starting the CRD host means: the `CrdLaunch` handed to a `CrdRunner`.

Two runners: `SubprocessCrdRunner` (lablink_core.client.crd_host) runs Chrome Remote
Desktop for real; `DryRunCrdRunner` records what it would run and runs nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from lablink_core.crd import START_HOST, CrdCommand
from lablink_core.validation import validate_hostname, validate_pin


@dataclass(frozen=True)
class CrdLaunch:
    """One start of the CRD host. The PIN travels apart from the arguments: start-host reads
    it from standard input, since every local user can read a process's arguments."""

    command: CrdCommand = field(repr=False)
    hostname: str
    pin: str = field(repr=False)

    def __post_init__(self) -> None:
        validate_hostname(self.hostname)
        validate_pin(self.pin)

    @property
    def code(self) -> str:
        return self.command.code

    def argv(self, start_host: str = START_HOST) -> list[str]:
        return self.command.argv(hostname=self.hostname, start_host=start_host)


class CrdRunner(Protocol):
    def start(self, launch: CrdLaunch) -> None:
        """Start (or restart) the host for ``launch``; raise OSError when it cannot."""

    def stop(self, *, forget: bool = False) -> None:
        """Stop the host. ``forget``: the VM was released, so also drop the registration,
        which would otherwise let the previous user back in after a restart."""

    @property
    def running(self) -> bool: ...


class DryRunCrdRunner:
    """Records what would run, as JSON lines in `record_path`, and runs nothing."""

    def __init__(self, record_path: Path) -> None:
        self.record_path = record_path
        self.started: list[list[str]] = []
        self.pins: list[str] = []
        self._current: CrdLaunch | None = None

    @property
    def running(self) -> bool:
        return self._current is not None

    def start(self, launch: CrdLaunch) -> None:
        self.stop()
        self._current = launch
        argv = launch.argv()
        self.started.append(argv)
        self.pins.append(launch.pin)
        self._record({"event": "start", "argv": argv, "code": launch.code, "pin": launch.pin})

    def stop(self, *, forget: bool = False) -> None:
        if self._current is not None:
            entry: dict[str, object] = {"event": "stop", "code": self._current.code}
            if forget:
                entry["forget"] = True
            self._record(entry)
            self._current = None

    def _record(self, entry: dict[str, object]) -> None:
        # timezone.utc, not datetime.UTC: the client runs on Python 3.8 too.
        entry["at"] = datetime.now(timezone.utc).isoformat()  # noqa: UP017
        # Owner-only: the start line carries the CRD PIN.
        descriptor = os.open(self.record_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
