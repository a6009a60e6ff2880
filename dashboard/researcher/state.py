"""What the researcher page knows and does, without widgets: one object per browser session.

Every database call goes through lablink_core (the allocator, the waitlist, the session
clock, the action log) on an executor thread, so a slow database never blocks the server's
event loop. What changes for everyone (the free count, queue places, session ends) arrives in
the process's shared :class:`~dashboard.public_state.PublicSnapshot` through :meth:`apply`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import param

from dashboard.public_state import PublicSnapshot
from dashboard.researcher.form import MISSING, problem
from dashboard.researcher.seat import Seat
from dashboard.researcher.services import ResearcherServices
from dashboard.researcher.session import session_notes
from lablink_core.allocation import Allocator, Assignment
from lablink_core.crd import parse_crd_command
from lablink_core.errors import LablinkError
from lablink_core.validation import normalize_email

__all__ = ["RequestState", "ResearcherServices", "Seat"]

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVER_TROUBLE = "Something went wrong on the server. Try again in a minute, or ask an admin."
RELEASED_ELSEWHERE = "The VM this browser held has been released. You can request a new one."


class RequestState(param.Parameterized):
    """A researcher's request for a VM, the VM (or queue place) this browser holds, and what
    the page should tell them about it."""

    email = param.String(default="", doc="The email the researcher typed.")
    event_code = param.String(default="", doc="The workshop's event code, when it needs one.")
    crd_command = param.String(default="", doc="The Chrome Remote Desktop command they pasted.")
    email_error = param.String(default="", doc="Why the email is refused; empty when it is fine.")
    command_error = param.String(
        default="", doc="Why the CRD command is refused; empty when it is fine."
    )
    missing = param.String(default="", doc="What the form still needs, when incomplete.")
    valid = param.Boolean(default=False, doc="Both inputs are present and accepted.")
    busy = param.Boolean(default=False, doc="A request to the server is running.")
    message = param.String(default="", doc="The outcome of the last action, for the researcher.")
    message_kind = param.Selector(
        default="info",
        objects=["info", "success", "warning", "danger"],
        doc="How the message should look.",
    )
    seat = param.ClassSelector(
        class_=Seat, default=None, allow_None=True, doc="The VM or queue place of this browser."
    )
    free_count = param.Integer(
        default=None, allow_None=True, doc="VMs free right now (None until first read)."
    )
    queue_offered = param.Boolean(
        default=False, doc="No VM was free: the page offers a place in the queue."
    )
    position = param.Integer(default=None, allow_None=True, doc="Place in the queue (1 = next).")
    note = param.String(default="", doc="What to know about the VM: its session end, repairs.")
    warning = param.String(default="", doc="Something urgent: the session ends soon.")
    can_extend = param.Boolean(default=False, doc="An extension may be asked for now.")
    confirming_release = param.Boolean(default=False, doc="Release asked once: confirm it.")

    def __init__(
        self,
        services: ResearcherServices | Allocator,
        executor: Executor | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]
        if isinstance(services, Allocator):
            services = ResearcherServices(services)
        self._services = services
        self._allocator = services.allocator
        self._executor = executor
        self.entry_id: int | None = None  # the queue entry of a queued seat
        self.signed_in: str | None = None  # the verified email, in the 'signin' mode
        self.on_queue_entry: Callable[[int | None, int | None], None] = lambda old, new: None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))

    @param.depends("email", "crd_command", watch=True, on_init=True)
    def _check(self) -> None:
        self.email_error = problem(normalize_email, self.email)
        self.command_error = problem(parse_crd_command, self.crd_command)
        filled = bool(self.email.strip() and self.crd_command.strip())
        self.valid = filled and not (self.email_error or self.command_error)
        self.missing = MISSING.get((not self.email.strip(), not self.crd_command.strip()), "")

    def _say(self, message: str, kind: str = "info") -> None:
        self.param.update(message=message, message_kind=kind)

    async def _call(self, what: str, function: Callable[..., T], *args: Any) -> T | None:
        """Run a core call off the loop; a refusal or a crash becomes the page's message."""
        self.busy = True
        try:
            return await self._run(function, *args)
        except LablinkError as error:
            self._services.metrics.refused("researcher_page", error.code)
            self._say(error.message, "warning" if error.code == "no_vm_available" else "danger")
            self.queue_offered = (
                error.code == "no_vm_available" and self._services.waitlist is not None
            )
        except Exception:
            log.exception("%s failed", what)
            self._say(SERVER_TROUBLE, "danger")
        finally:
            self.busy = False
        return None

    async def submit(self) -> Assignment | None:
        """Request a VM, or send a fresh CRD command to the one this browser holds."""
        if not self.valid or self.busy or (self.seat is not None and self.seat.queued):
            return None
        # A browser holding a VM renews that one: same email, its seat token.
        email, token = (self.email, None) if self.seat is None else self.seat.pair()
        self.queue_offered = False
        if token is None and (email := await self._admitted()) is None:
            return None
        assignment = await self._call(
            "request_vm", self._allocator.request_vm, email, self.crd_command, token
        )
        if assignment is None:
            return None
        self._hold(assignment)
        return assignment

    async def _admitted(self) -> str | None:
        """The email the workshop's access rule lets ask for a VM (None: refused, said why)."""
        services = self._services

        def admit() -> str:
            services.limit(self.email)
            if services.access is None:
                return self.email
            return services.access.admit(
                self.email, event_code=self.event_code, signed_in=self.signed_in
            )

        return await self._call("access", admit)

    def _hold(self, assignment: Assignment) -> None:
        seat = Seat(assignment.email, assignment.seat_token, assignment.hostname, assignment.pin)
        self.param.update(seat=seat, email=seat.email, crd_command="", queue_offered=False)
        if assignment.renewed:
            self._say(f"Sent the new command to {seat.hostname}.", "success")
        else:
            self._say(f"Your VM is {seat.hostname}.", "success")

    async def join_queue(self) -> None:
        """Wait for the next free VM instead (the form's email and command are kept)."""
        waitlist = self._services.waitlist
        if waitlist is None or not self.valid or self.busy:
            return
        if (email := await self._admitted()) is None:
            return
        joined = await self._call("join the queue", waitlist.join, email, self.crd_command)
        if joined is None:
            return
        ticket, place = joined
        self._queue_at(Seat(place.email, ticket, "", ""), place.id, place.position)
        self._say(f"You are number {place.position} in the queue. Keep this page open.", "info")

    def _queue_at(self, seat: Seat, entry_id: int | None, position: int | None) -> None:
        old, self.entry_id = self.entry_id, entry_id
        self.on_queue_entry(old, entry_id)
        self.param.update(seat=seat, email=seat.email, position=position, queue_offered=False)

    async def leave_queue(self) -> None:
        seat, waitlist = self.seat, self._services.waitlist
        if seat is None or not seat.queued or waitlist is None:
            return
        await self._call("leave the queue", waitlist.leave, seat.token)
        self._queue_at(Seat(seat.email, "", "", ""), None, None)
        self.param.update(seat=None, position=None)
        self._say("You left the queue.", "info")

    def ask_release(self) -> None:
        """The first click on "Release": the page asks for a confirmation."""
        if self.seat is not None and not self.seat.queued:
            self.confirming_release = True

    def cancel_release(self) -> None:
        self.confirming_release = False

    async def release(self) -> None:
        """Give the VM back (after :meth:`ask_release`)."""
        seat = self.seat
        self.confirming_release = False
        if seat is None or seat.queued or self.busy:
            return
        released = await self._call("release", self._allocator.release, seat.email, seat.token)
        if released is None:
            if self.message_kind == "danger" and "holds no VM" in self.message:
                self.seat = None
            return
        self.param.update(seat=None, note="", warning="", can_extend=False)
        self._say(f"{seat.hostname} was released. Thank you!", "info")

    async def extend(self) -> None:
        """One more stretch of the session, while extensions last."""
        seat, sessions = self.seat, self._services.sessions
        if seat is None or seat.queued or sessions is None:
            return
        now = dt.datetime.now(dt.UTC)
        plan = await self._call("extend", sessions.extend, seat.hostname, now)
        if plan is not None:
            self.param.update(warning="", can_extend=False)
            self._say(f"Extended: the session now ends at {plan.at:%H:%M} UTC.", "success")

    async def restore(self, stored: Seat | None) -> None:
        """A returning browser: show its VM or queue place if the server confirms them."""
        if stored is None or self.seat is not None:
            return
        if stored.queued:
            await self._restore_queue_place(stored)
            return
        try:
            hostname = await self._run(self._allocator.seat, stored.email, stored.token)
        except LablinkError:
            hostname = None
        except Exception:
            log.exception("seat lookup failed")
            return
        if hostname is None:
            await self._explain_loss(stored.email)
            self.email = stored.email
            return
        pin = stored.pin if hostname == stored.hostname else ""
        self.param.update(seat=Seat(stored.email, stored.token, hostname, pin), email=stored.email)

    async def restore_from_cookie(self, token: str | None) -> None:
        """A browser that has only the seat cookie ``/request_vm`` set (no stored seat)."""
        if not token or self.seat is not None:
            return
        found = await self._run(self._allocator.seat_by_token, token)
        if found is not None:
            email, hostname = found
            self.param.update(seat=Seat(email, token, hostname, ""), email=email)

    async def _restore_queue_place(self, stored: Seat) -> None:
        waitlist = self._services.waitlist
        if waitlist is None:
            return
        try:
            place = await self._run(waitlist.status, stored.token)
        except LablinkError:
            self._say("Your place in the queue has expired. You can request a VM again.")
            self.email = stored.email
            return
        if place.state == "waiting":
            self._queue_at(stored, place.id, place.position)
        elif place.state == "assigned" and place.hostname:
            self._arrived(Seat(stored.email, stored.token, place.hostname, place.pin or ""))

    def _arrived(self, seat: Seat) -> None:
        self._queue_at(seat, None, None)
        self._say(f"Your turn came: your VM is {seat.hostname}.", "success")

    async def _explain_loss(self, email: str) -> None:
        """Say why the VM went, when the action log knows (reclaimed, torn down...)."""
        actions = self._services.actions
        last = await self._run(actions.last_for_email, email) if actions is not None else None
        if last is not None and last["actor"] != "researcher":
            self._say(f"Your VM {last['hostname']} was taken back: {last['reason']}.", "warning")
        else:
            self._say(RELEASED_ELSEWHERE, "info")

    async def apply(self, snapshot: PublicSnapshot) -> None:
        """News for every page (on this session's tick): counts, places, session ends."""
        self.free_count = snapshot.free
        seat = self.seat
        if seat is not None and seat.queued and self.entry_id is not None:
            position = snapshot.positions.get(self.entry_id)
            if position is None:
                await self._restore_queue_place(seat)  # our turn came, or the entry expired
            else:
                self.position = position
        elif seat is not None and seat.hostname not in snapshot.held:
            self.seat = None
            await self._explain_loss(seat.email)
        now = dt.datetime.now(dt.UTC)
        notes = session_notes(self.seat, snapshot, now, self._services.warning_minutes)
        self.param.update(note=notes.note, warning=notes.warning, can_extend=notes.can_extend)

    async def refresh_free_count(self) -> None:
        """Read the free count directly (notebooks, and pages before the first snapshot)."""
        try:
            self.free_count = await self._run(self._allocator.free_count)
        except Exception as error:  # keep the last number; the page stays usable
            log.warning("free VM count unavailable: %s", type(error).__name__)
