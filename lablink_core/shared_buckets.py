"""Token buckets that every process of one `lablink serve --processes N` takes from.

Per-process buckets let a client whose connections the kernel spreads over N processes in
N times the configured rate. These live in an anonymous shared memory map made before the
processes fork, so a limit means what it says on one host. (Allocators on several hosts
still count separately: see the README.) Between processes the lock is a POSIX record lock
on a file they all inherit: the kernel drops it with a process that dies holding it, where a
semaphore would stay taken and stop every request of every process behind it.

The table has a fixed number of slots. A key (an address or an email, hashed) lives in one of
``PROBES`` slots after its hash; a slot whose bucket has refilled is free again, as a full
bucket is the same as none. When all of a key's slots hold other keys short of tokens, the
fullest is given up: like the in-process limiter dropping its oldest keys, that can only let
a client in early, never lock one out.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lablink_core.ratelimit import refilled, take_one

SLOT = struct.Struct("=16sdd")  # key digest, tokens, when they were counted (monotonic s)
PROBES = 8
EMPTY = bytes(16)


class SharedBuckets:
    """``take(key, now, rate, burst)``: None if a token was taken, else seconds to wait."""

    def __init__(self, slots: int = 65_536) -> None:
        if slots < PROBES:
            raise ValueError(f"slots must be at least {PROBES}")
        self._slots = slots
        self._memory = mmap.mmap(-1, slots * SLOT.size, flags=mmap.MAP_SHARED)
        self._lock_file = tempfile.TemporaryFile()  # noqa: SIM115 (open for the table's life)
        # Record locks are the process's: its own threads take turns on this one first.
        self._threads = threading.Lock()

    def take(self, key: str, now: float, rate: float, burst: float) -> float | None:
        """Take one token from ``key``'s bucket (``burst`` tokens, ``rate`` per second)."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        first = int.from_bytes(digest[:8], "little") % self._slots
        with self._locked():
            slot, tokens = self._find(digest, first, now, rate, burst)
            left, wait = take_one(tokens, rate)
            SLOT.pack_into(self._memory, slot * SLOT.size, digest, left, now)
        return wait

    def _find(
        self, digest: bytes, first: int, now: float, rate: float, burst: float
    ) -> tuple[int, float]:
        """The key's slot and its tokens now: its own, else a free one, else the fullest."""
        free: int | None = None
        fullest, most = first, -1.0
        for step in range(PROBES):
            slot = (first + step) % self._slots
            owner, tokens, then = SLOT.unpack_from(self._memory, slot * SLOT.size)
            now_tokens = refilled(tokens, then, now, rate, burst)
            if owner == digest:
                return slot, now_tokens
            if owner == EMPTY or now_tokens >= burst:
                free = slot if free is None else free
            elif now_tokens > most:
                fullest, most = slot, now_tokens
        return (free if free is not None else fullest), burst

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._threads:
            fcntl.lockf(self._lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._lock_file, fcntl.LOCK_UN)
