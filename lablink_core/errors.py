"""Error types shared by every part of lablink_core.

Callers (dashboard, API, CLI) map these to user-facing responses by `code`,
so the set of codes is part of the public contract.
"""

from __future__ import annotations


class LablinkError(Exception):
    """Base of every error lablink_core raises on purpose.

    `message` is for a person; `code` is a short machine tag.
    """

    code: str = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidInput(LablinkError):
    """A value from outside (email, CRD command, hostname, config value) was refused."""

    code = "invalid_input"


class NoVMAvailable(LablinkError):
    """No free VM can be assigned right now."""

    code = "no_vm_available"


class SeatTaken(LablinkError):
    """The email already holds a VM and the seat token is missing or wrong."""

    code = "seat_taken"


class NotFound(LablinkError):
    """The requested object does not exist."""

    code = "not_found"


class Unauthorized(LablinkError):
    """The caller is not allowed to do this."""

    code = "unauthorized"


class Forbidden(LablinkError):
    """The caller is known (or needs no name) but may not do this: a workshop's access rule."""

    code = "forbidden"


class RateLimited(LablinkError):
    """Too many requests from one client or for one email; ``retry_after`` says when to."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class OperationInProgress(LablinkError):
    """A fleet operation is already running, so another one cannot start."""

    code = "operation_in_progress"
