"""What a researcher's browser keeps (in ``localStorage``) to find its VM, or its place in
the queue, again. Everything here came from the browser: checked before use."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Seat:
    """A VM held (``hostname`` set) or a place in the queue (``hostname`` empty)."""

    email: str
    token: str  # the seat token; in the queue, the ticket (it becomes the seat token)
    hostname: str
    pin: str

    @property
    def queued(self) -> bool:
        return not self.hostname

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
        if not all(isinstance(value, str) for value in values) or not (values[0] and values[1]):
            return None
        return cls(*(str(value) for value in values))
