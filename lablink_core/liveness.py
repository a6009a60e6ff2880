"""A long poll in progress is proof of life: a server process vouches for the VMs waiting on
it, so a VM held longer than the silence limit stays assignable, and one whose process froze
(its poll answered but never read) drops out once nobody vouches for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)


def vouch_interval(silence_seconds: float) -> float:
    """Often enough that a waiting VM never looks silent: a third of the limit, at most 15 s."""
    return max(0.5, min(15.0, silence_seconds / 3))


async def vouch_forever(
    waiting: Callable[[], Sequence[str]],
    touch: Callable[[Sequence[str]], int],
    interval: float,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Every ``interval`` seconds, mark the VMs waiting here as heard from (the database
    write runs off the event loop). Runs until cancelled; a failed write is retried later."""
    while True:
        await sleep(interval)
        names = list(waiting())
        if not names:
            continue
        try:
            await asyncio.to_thread(touch, names)
        except Exception as error:  # the database may be restarting: the next pass retries
            log.warning("could not vouch for %d waiting VMs: %s", len(names), error)
