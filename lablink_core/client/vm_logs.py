"""The VM's logs, collected in bounded buffers and shipped to POST /api/vm/logs.

Sources: the agent's own log records (`LogRing`), the boot script's output (`FileTail` of
LABLINK_BOOT_LOG) and the CRD host's output. Every buffer is bounded, so a VM that cannot
reach the allocator drops its oldest lines rather than growing; every line passes the
`Redactor` on its way out, since shipping is where a secret would leave the VM.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from lablink_core.client.redaction import Redactor

log = logging.getLogger(__name__)

MAX_LINES_PER_CALL: Final = 200
MAX_LINE_CHARS: Final = 2000
BUFFER_LINES: Final = 1000
# How much of a log the first look reads: enough for its last lines, never the whole file.
INITIAL_LINES: Final = 100
_TAIL_BYTES: Final = 256 * 1024
_READ_LIMIT: Final = 1024 * 1024


class LineBuffer:
    """A bounded, thread-safe queue of lines; the oldest go first when it is full."""

    def __init__(self, max_lines: int = BUFFER_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._lock = threading.Lock()

    def put(self, lines: Iterable[str]) -> None:
        with self._lock:
            self._lines.extend(lines)

    def take(self, limit: int) -> list[str]:
        with self._lock:
            return [self._lines.popleft() for _ in range(min(limit, len(self._lines)))]

    def give_back(self, lines: list[str]) -> None:
        """Return lines that could not be sent, ahead of newer ones (as room allows)."""
        with self._lock:
            room = (self._lines.maxlen or 0) - len(self._lines)
            self._lines.extendleft(reversed(lines[-room:] if room > 0 else []))


class LineSource(Protocol):
    def take(self, limit: int) -> list[str]: ...

    def give_back(self, lines: list[str]) -> None: ...


class LogRing(logging.Handler):
    """A logging handler that keeps the agent's recent records for shipping."""

    def __init__(self, max_lines: int = BUFFER_LINES) -> None:
        super().__init__(logging.INFO)
        self.buffer = LineBuffer(max_lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.buffer.put(self.format(record).splitlines() or [""])
        except Exception:  # a logging handler must never raise into the caller
            self.handleError(record)

    def take(self, limit: int) -> list[str]:
        return self.buffer.take(limit)

    def give_back(self, lines: list[str]) -> None:
        self.buffer.give_back(lines)


class FileTail:
    """New lines of a growing file; the first look yields only its last `INITIAL_LINES`.

    ``locate`` names the file each time, so a log that moves (CRD starts a new file per
    daemon start) is followed: a new file is read from its beginning. ``on_lines`` sees
    every line read, before the buffer keeps only what will be shipped.
    """

    def __init__(
        self,
        locate: Callable[[], Path | None],
        *,
        on_lines: Callable[[list[str]], None] | None = None,
        on_new_file: Callable[[], None] | None = None,
    ) -> None:
        self.buffer = LineBuffer()
        self._locate = locate
        self._on_lines = on_lines
        self._on_new_file = on_new_file
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._first = True

    def poll(self) -> None:
        """Read what was appended since the last call (an unreadable file: nothing new)."""
        path = self._locate()
        if path is None:
            return
        try:
            with path.open("rb") as handle:
                lines = self._read(handle)
        except OSError:
            return
        if lines and self._on_lines is not None:
            self._on_lines(lines)
        self.buffer.put(lines[-INITIAL_LINES:] if self._first else lines)
        self._first = False

    def _read(self, handle: BinaryIO) -> list[str]:
        stat = os.fstat(handle.fileno())
        skip_partial_line = False
        if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
            # Another file, or this one was truncated: start over (near the end, the first time).
            self._identity, self._partial = (stat.st_dev, stat.st_ino), b""
            if self._on_new_file is not None:
                self._on_new_file()
            self._offset = max(0, stat.st_size - _TAIL_BYTES) if self._first else 0
            skip_partial_line = self._offset > 0
        handle.seek(self._offset)
        data = self._partial + handle.read(_READ_LIMIT)
        self._offset = handle.tell()
        if skip_partial_line:
            data = data.partition(b"\n")[2]
        complete, newline, rest = data.rpartition(b"\n")
        # A line still being written waits for its end (but cannot grow without bound).
        self._partial = rest[-4 * MAX_LINE_CHARS :]
        if not newline:
            return []
        return complete.decode("utf-8", errors="replace").split("\n")

    def take(self, limit: int) -> list[str]:
        self.poll()
        return self.buffer.take(limit)

    def give_back(self, lines: list[str]) -> None:
        self.buffer.give_back(lines)


class LogShipper:
    """Sends each source's pending lines (redacted, capped) with every heartbeat."""

    def __init__(
        self,
        sources: Sequence[tuple[str, LineSource]],
        redact: Redactor,
        send: Callable[[str, list[str]], bool | None],
    ) -> None:
        self._sources = list(sources)
        self._redact = redact
        self._send = send
        self.enabled = True

    def ship(self) -> None:
        """One batch per source. ``send`` answers True (sent), False (retry later) or None
        (the allocator takes no logs: stop shipping)."""
        for name, source in self._sources:
            if not self.enabled:
                return
            lines = source.take(MAX_LINES_PER_CALL)
            if not lines:
                continue
            outcome = self._send(name, [self._redact(line)[:MAX_LINE_CHARS] for line in lines])
            if outcome is None:
                self.enabled = False
            elif not outcome:
                source.give_back(lines)
