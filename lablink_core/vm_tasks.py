"""What a VM should be doing, and the answer /vm_startup gives it.

The answer speaks to both clients at once: ours reads ``assigned``, ``generation``, ``code``,
``redirect_url`` and ``pin`` (and ``credential`` after a rotation); the original LabLink
client requires ``"status": "success"`` and a ``command`` string it parses with argparse
(only ``--code`` is kept, one pair of quotes stripped) plus ``pin``. The original client is
only ever answered 200 with an assignment: a 200 without ``"status": "success"`` would make it
exit for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lablink_core.crd import CrdCommand
from lablink_core.credentials import VMCredentials


@dataclass(frozen=True)
class VMTask:
    """A VM's row as far as its agent is concerned."""

    hostname: str
    generation: int
    crd: CrdCommand | None
    pin: str | None
    credential_hash: str | None = field(default=None, repr=False)
    credential_salt: str | None = field(default=None, repr=False)
    client_kind: str = "lablink"
    previous_credential_hash: str | None = field(default=None, repr=False)

    @property
    def assigned(self) -> bool:
        return self.crd is not None

    @property
    def revoked(self) -> bool:
        """No credential of this VM works any more (revoked, or re-enrolment pending)."""
        return self.credential_hash is None

    def as_json(self) -> dict[str, Any]:
        if self.crd is None:
            return {"hostname": self.hostname, "assigned": False, "generation": self.generation}
        return {
            "hostname": self.hostname,
            "assigned": True,
            "generation": self.generation,
            "status": "success",
            "command": self.crd.canonical(),
            "crd_command": self.crd.canonical(),
            "code": self.crd.code,
            "redirect_url": self.crd.redirect_url,
            "pin": self.pin,
        }

    def reply(self, presented_hash: str, credentials: VMCredentials) -> dict[str, Any] | None:
        """The JSON answer for a VM that called with the credential hashing to
        ``presented_hash``: the task, for the current credential; only the new credential,
        for the previous one (a rotation whose answer the VM missed: nothing meant for the
        VM's next researcher ever goes to the previous credential); None for any other (401).
        """
        if presented_hash == self.credential_hash:
            return self.as_json()
        if presented_hash == self.previous_credential_hash and self.credential_salt is not None:
            return {
                "hostname": self.hostname,
                "assigned": False,
                "generation": self.generation,
                "credential": credentials.derive(self.hostname, self.credential_salt),
            }
        return None
