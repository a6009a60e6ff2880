"""GET /api/waitlist/{ticket}: a queued researcher's place, or the VM it brought them;
``?wait=N`` holds the request up to N seconds for news (the entry assigned, expired or
left). DELETE leaves the queue. Asking keeps the entry alive (entries nobody asks about
expire). GET /api/waitlist (admin): who is waiting, in order."""

from __future__ import annotations

import asyncio
import contextlib

from dashboard.api.admin import AdminApiHandler
from dashboard.api.base import ApiHandler
from lablink_core.errors import InvalidInput

MAX_WAIT_SECONDS = 60.0


def _wait_seconds(value: str) -> float:
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError as error:
        raise InvalidInput("wait must be a number of seconds", field="wait") from error
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait must be 0 to {MAX_WAIT_SECONDS:g} seconds", field="wait")
    return seconds


class TicketHandler(ApiHandler):
    """One queue entry, found by its ticket."""

    async def get(self, ticket: str) -> None:
        runtime = self.runtime
        waitlist, tickets = runtime.services.waitlist, runtime.tickets
        wait = _wait_seconds(self.get_query_argument("wait", ""))
        place = await self.run_sync(waitlist.status, ticket)
        if place.state == "waiting" and wait > 0 and tickets is not None:
            async with tickets.waiting(place.id) as news:
                place = await self.run_sync(waitlist.status, ticket)  # subscribed, then read
                if place.state == "waiting":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(news), wait)
                    place = await self.run_sync(waitlist.status, ticket)
        self.write_json({**place.as_json(), "ticket": ticket})

    async def delete(self, ticket: str) -> None:
        await self.run_sync(self.runtime.services.waitlist.leave, ticket)
        self.write_json({"state": "left"})


class WaitlistHandler(AdminApiHandler):
    """Who is waiting, in order (admins only: the emails are personal)."""

    async def get(self) -> None:
        waiting = await self.run_sync(self.runtime.services.waitlist.waiting)
        self.write_json({"waiting": waiting, "count": len(waiting)})
