"""What the researcher page knows and does, without widgets: one object per browser session.

Every database call goes through lablink_core's :class:`~lablink_core.allocation.Allocator` on
an executor thread, so a slow database never blocks the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import param

from lablink_core.allocation import Allocator, Assignment
from lablink_core.crd import parse_crd_command
from lablink_core.errors import InvalidInput, LablinkError
from lablink_core.validation import normalize_email

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVER_TROUBLE = "Something went wrong on the server. Try again in a minute, or ask an admin."
RELEASED_ELSEWHERE = "The VM this browser held has been released. You can request a new one."


@dataclass(frozen=True)
class Seat:
    """What the browser keeps so that the researcher finds their VM again."""

    email: str
    token: str
    hostname: str
    pin: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def pair(self) -> tuple[str, str]:
        return self.email, self.token

    @classmethod
    def from_dict(cls, data: object) -> Seat | None:
        """A seat from stored data, or None if the data is not one."""
        if not isinstance(data, dict):
            return None
        values = [data.get(key) for key in ("email", "token", "hostname", "pin")]
        if not all(isinstance(value, str) and value for value in values[:3]):
            return None
        return cls(*(str(value or "") for value in values))


def _problem(check: Callable[[str], object], text: str) -> str:
    """The reason ``text`` is refused, or "" when it is fine or still empty."""
    if not text.strip():
        return ""
    try:
        check(text)
    except InvalidInput as error:
        return error.message
    return ""


class RequestState(param.Parameterized):
    """A researcher's request for a VM, and the VM this browser holds."""

    email = param.String(default="", doc="The email the researcher typed.")
    crd_command = param.String(default="", doc="The Chrome Remote Desktop command they pasted.")
    email_error = param.String(default="", doc="Why the email is refused; empty when it is fine.")
    command_error = param.String(
        default="", doc="Why the CRD command is refused; empty when it is fine."
    )
    valid = param.Boolean(default=False, doc="Both inputs are present and accepted.")
    busy = param.Boolean(default=False, doc="A request to the server is running.")
    message = param.String(default="", doc="The outcome of the last action, for the researcher.")
    message_kind = param.Selector(
        default="info",
        objects=["info", "success", "warning", "danger"],
        doc="How the message should look.",
    )
    seat = param.ClassSelector(
        class_=Seat, default=None, allow_None=True, doc="The VM this browser holds, if any."
    )
    free_count = param.Integer(
        default=None, allow_None=True, doc="VMs free right now (None until first read)."
    )

    def __init__(
        self, allocator: Allocator, executor: Executor | None = None, **params: Any
    ) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]
        self._allocator = allocator
        self._executor = executor

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))

    @param.depends("email", "crd_command", watch=True, on_init=True)
    def _check(self) -> None:
        self.email_error = _problem(normalize_email, self.email)
        self.command_error = _problem(parse_crd_command, self.crd_command)
        filled = bool(self.email.strip() and self.crd_command.strip())
        self.valid = filled and not (self.email_error or self.command_error)

    def _say(self, message: str, kind: str = "info") -> None:
        self.param.update(message=message, message_kind=kind)

    async def submit(self) -> Assignment | None:
        """Request a VM, or send a fresh CRD command to the one this browser holds."""
        if not self.valid or self.busy:
            return None
        # A browser holding a VM renews that one: same email, its seat token.
        email, token = (self.email, None) if self.seat is None else self.seat.pair()
        self.busy = True
        try:
            assignment = await self._run(self._allocator.request_vm, email, self.crd_command, token)
        except LablinkError as error:
            self._say(error.message, "warning" if error.code == "no_vm_available" else "danger")
            return None
        except Exception:
            log.exception("request_vm failed")
            self._say(SERVER_TROUBLE, "danger")
            return None
        finally:
            self.busy = False
        self._hold(assignment)
        await self.refresh_free_count()
        return assignment

    def _hold(self, assignment: Assignment) -> None:
        seat = Seat(assignment.email, assignment.seat_token, assignment.hostname, assignment.pin)
        self.param.update(seat=seat, email=seat.email, crd_command="")
        if assignment.renewed:
            self._say(f"Sent the new command to {seat.hostname}.", "success")
        else:
            self._say(f"Your VM is {seat.hostname}.", "success")

    async def release(self) -> None:
        """Give the VM back."""
        seat = self.seat
        if seat is None or self.busy:
            return
        self.busy = True
        try:
            await self._run(self._allocator.release, seat.email, seat.token)
        except LablinkError as error:
            if error.code == "not_found":
                self.seat = None
            self._say(error.message, "danger")
            return
        except Exception:
            log.exception("release failed")
            self._say(SERVER_TROUBLE, "danger")
            return
        finally:
            self.busy = False
        self.seat = None
        self._say(f"{seat.hostname} was released. Thank you!", "info")
        await self.refresh_free_count()

    async def restore(self, stored: Seat | None) -> None:
        """A returning browser: show its VM if the server confirms the seat is still held."""
        if stored is None or self.seat is not None:
            return
        try:
            hostname = await self._run(self._allocator.seat, stored.email, stored.token)
        except LablinkError:
            hostname = None
        except Exception:
            log.exception("seat lookup failed")
            return
        if hostname is None:
            self._say(RELEASED_ELSEWHERE, "info")
            self.email = stored.email
            return
        pin = stored.pin if hostname == stored.hostname else ""
        self.param.update(seat=Seat(stored.email, stored.token, hostname, pin), email=stored.email)

    async def refresh_free_count(self) -> None:
        try:
            count = await self._run(self._allocator.free_count)
        except Exception as error:  # keep the last number; the page stays usable
            log.warning("free VM count unavailable: %s", type(error).__name__)
            return
        self.free_count = count
