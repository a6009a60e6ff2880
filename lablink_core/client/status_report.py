"""What the agent tells the allocator about its VM: the status, the in-use flag, the machine's
readings and a message. Sent on every change and again with every heartbeat: status is
state, not an event, so a report that fails is simply sent again with the next beat."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from lablink_core.client.machine import MachineState
from lablink_core.client.parts import AgentParts
from lablink_core.client.transport import Response, TransportError, server_message

log = logging.getLogger(__name__)

STATUS_TIMEOUT: Final = 10.0
MAX_MESSAGE_CHARS: Final = 500

Post = Callable[[str, Mapping[str, object], float], Response | None]
"""How a report reaches the allocator (the agent's authenticated POST)."""


@dataclass(frozen=True)
class VMStatus:
    """The last status reported, and what the heartbeat resends."""

    status: str = "booting"
    in_use: bool = False
    message: str | None = None
    machine: MachineState = field(default_factory=MachineState)


class StatusReporter:
    """Keeps the VM's status and sends it to ``/api/vm/status``."""

    def __init__(self, hostname: str, parts: AgentParts, post: Post) -> None:
        self._hostname = hostname
        self._parts = parts
        self._post = post
        self._lock = threading.Lock()
        self._state = VMStatus()
        # What preparing the desktop had to say (a failed clone): shown until a new message.
        self._notice: str | None = None

    def offered(self, notice: str | None) -> None:
        """The desktop is prepared: a VM still booting becomes "ready" (sent with the next
        beat), with ``notice`` as its message."""
        with self._lock:
            self._notice = notice
            if self._state.status == "booting":
                self._state = replace(self._state, status="ready", message=notice)

    def report(self, status: str, *, in_use: bool, message: str | None) -> None:
        """A new status, sent now."""
        with self._lock:
            shown = message or self._notice
            self._state = replace(self._state, status=status, in_use=in_use, message=shown)
        self.send()

    def send(self) -> None:
        with self._lock:
            state = self._state
        redact = self._parts.redact
        message = (
            redact(" ".join(state.message.split()))[:MAX_MESSAGE_CHARS] if state.message else None
        )
        body: dict[str, object] = {"hostname": self._hostname, "status": state.status}
        body.update(state.machine.fields(), in_use=state.in_use, message=message)
        if state.machine.health is not None:
            body["health"] = redact(state.machine.health)[:200]
        try:
            answer = self._post("/api/vm/status", body, STATUS_TIMEOUT)
        except TransportError as error:
            log.warning("could not report status %r: %s", state.status, error)
            return
        if answer is not None and answer.status != 200:
            log.warning("status report answered %d: %s", answer.status, server_message(answer))

    def beat(self, finished: threading.Event, seconds: float) -> None:
        """Until ``finished``: every ``seconds``, read the machine, resend the status and ship
        the log lines gathered meanwhile."""
        self.measure()
        while not finished.wait(seconds):
            self.measure()
            self.send()
            self._parts.shipper.ship()

    def measure(self) -> None:
        try:
            machine = self._parts.probe()
        except Exception as error:  # a broken probe must not end the heartbeat
            machine = MachineState(health=f"health check failed: {error}"[:200])
        with self._lock:
            self._state = replace(self._state, machine=machine)
