"""The VM agent: long-polls the allocator for its CRD task and runs the CRD host.

Stopping: every request goes through `post_until_stopped`, so setting the
stop event ends `run()` within a fraction of a second even while a 75 s long
poll is in flight. The abandoned request dies with the process, and
nothing is lost: the agent reports the last generation it *acted on*, so a task
it never saw is sent again on the next start.
"""

from __future__ import annotations

import logging
import random as _random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from lablink_core.client.runners import (
    CrdRunner,
    DryRunCrdRunner,
    SubprocessCrdRunner,
    gpu_health,
)
from lablink_core.client.transport import (
    Backoff,
    Response,
    Transport,
    TransportError,
    UrllibTransport,
    post_until_stopped,
    retry_after_seconds,
    server_message,
)
from lablink_core.crd import CrdCommand
from lablink_core.errors import InvalidInput, LablinkError, Unauthorized
from lablink_core.validation import validate_hostname

log = logging.getLogger(__name__)

STATUS_TIMEOUT: Final = 10.0
_RETRY_STATUSES: Final = frozenset({408, 429, 503})


def _is_token(text: str) -> bool:
    return all(ch.isprintable() and not ch.isspace() for ch in text)


class AllocatorRejected(LablinkError):
    """The allocator refused the agent's request in a way retrying cannot fix."""

    code = "allocator_rejected"


@dataclass(frozen=True)
class AgentConfig:
    allocator_url: str
    hostname: str
    credential: str = field(repr=False)  # kept out of repr so it never lands in a log
    dry_run: bool = False
    record_path: Path | None = None
    heartbeat_seconds: float = 15.0
    poll_timeout: float = 75.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if not self.allocator_url.startswith(("http://", "https://")):
            raise InvalidInput(
                "allocator URL must start with http:// or https://", field="allocator_url"
            )
        if validate_hostname(self.hostname) != self.hostname:
            raise InvalidInput("hostname must be lowercase", field="hostname")
        # It goes into an HTTP header: whitespace or control characters would break it.
        if not self.credential or not self.credential.isascii() or not _is_token(self.credential):
            raise InvalidInput("credential must be non-empty printable ASCII", field="credential")
        for name in ("heartbeat_seconds", "poll_timeout", "max_backoff"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive", field=name)


def _text(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} is missing or not text", field=name)
    return value


@dataclass(frozen=True)
class _Status:
    status: str = "booting"
    in_use: bool = False
    message: str | None = None
    health: str | None = None


class VMAgent:
    """Polls the allocator, runs the CRD task it hands out and reports status."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        transport: Transport | None = None,
        runner: CrdRunner | None = None,
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] = _random.random,
        health: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.runner: CrdRunner = runner if runner is not None else _default_runner(config)
        self.generation = 0
        self._transport = transport if transport is not None else UrllibTransport()
        self._sleep = sleep
        self._random = random
        self._health = health or (lambda: gpu_health(dry_run=config.dry_run))
        self._lock = threading.Lock()
        self._state = _Status()
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; raise `Unauthorized`/`AllocatorRejected` on fatal answers."""
        self._stop = stop
        finished = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(finished,), daemon=True)
        backoff = Backoff(
            max_delay=self.config.max_backoff, random=self._random, sleep=self._sleep or stop.wait
        )
        # Ready means "agent up, waiting for a task"; the first heartbeat carries it,
        # by which time the first poll has registered the VM.
        with self._lock:
            self._state = replace(self._state, status="ready", in_use=False)
        beat.start()
        try:
            self._poll_loop(backoff)
        finally:
            finished.set()
            self.runner.stop()
            beat.join(timeout=1.0)

    def _poll_loop(self, backoff: Backoff) -> None:
        while not self._stop.is_set():
            body = {"hostname": self.config.hostname, "generation": self.generation}
            try:
                answer = self._post("/vm_startup", body, self.config.poll_timeout)
            except TransportError as error:
                self._retry(backoff, f"allocator unreachable ({error})", None)
                continue
            if answer is None:
                return
            problem = self._handle(answer)
            if problem is None:
                backoff.reset()
            else:
                self._retry(backoff, problem, retry_after_seconds(answer.headers))

    def _retry(self, backoff: Backoff, why: str, retry_after: float | None) -> None:
        delay = backoff.next_delay(retry_after)
        log.warning("%s; retrying in %.1f s", why, delay)
        backoff.sleep(delay)

    def _handle(self, answer: Response) -> str | None:
        """Act on a poll answer; return why to back off, or None; raise if fatal."""
        if answer.status == 204:
            return None
        if answer.status == 200:
            return self._on_update(answer.body or {})
        why = f"allocator answered {answer.status}: {server_message(answer)}"
        if answer.status in _RETRY_STATUSES or answer.status >= 500:
            return why
        if answer.status == 401:
            raise Unauthorized(f"{why} (check LABLINK_VM_CREDENTIAL)")
        raise AllocatorRejected(why)

    def _on_update(self, body: Mapping[str, object]) -> str | None:
        assigned, generation = body.get("assigned"), body.get("generation")
        if not isinstance(assigned, bool) or type(generation) is not int:
            return "allocator sent an update without 'assigned' and 'generation'"
        sent = self.generation
        if assigned and generation <= sent:
            # Acting again would restart a working session; backing off avoids a hot loop.
            return f"allocator repeated task generation {generation}"
        self.generation = generation
        if assigned:
            self._start_task(body, generation)
        else:
            self._release(generation)
        return None if generation > sent else f"allocator repeated release {generation}"

    def _start_task(self, body: Mapping[str, object], generation: int) -> None:
        try:
            # Re-validated here: the VM trusts nothing it is about to execute.
            command = CrdCommand(code=_text(body, "code"), redirect_url=_text(body, "redirect_url"))
            argv = command.argv(hostname=self.config.hostname, pin=_text(body, "pin"))
        except InvalidInput as error:
            log.error("refused CRD task generation %d: %s", generation, error)
            self._report("error", in_use=True, message=f"refused CRD task: {error}")
            return
        self.runner.stop()
        try:
            self.runner.start(argv)
        except OSError as error:
            log.error("could not start the CRD host for generation %d: %s", generation, error)
            self._report("error", in_use=True, message=f"could not start CRD host: {error}")
            return
        log.info("started the CRD host for generation %d", generation)
        self._report("connected", in_use=True, message=None)

    def _release(self, generation: int) -> None:
        if self.runner.running:
            log.info("VM released (generation %d): stopping the CRD host", generation)
        self.runner.stop()
        self._report("ready", in_use=False, message=None)

    def _report(self, status: str, *, in_use: bool, message: str | None) -> None:
        with self._lock:
            self._state = replace(self._state, status=status, in_use=in_use, message=message)
        self._send_status()

    def _send_status(self) -> None:
        state = self._state
        body: dict[str, object] = {"hostname": self.config.hostname, "status": state.status}
        body |= {"in_use": state.in_use, "health": state.health, "message": state.message}
        try:
            answer = self._post("/api/vm/status", body, STATUS_TIMEOUT)
        except TransportError as error:
            # Status is state, not an event: the next heartbeat resends it.
            log.warning("could not report status %r: %s", state.status, error)
            return
        if answer is not None and answer.status != 200:
            log.warning("status report answered %d: %s", answer.status, server_message(answer))

    def _heartbeat(self, finished: threading.Event) -> None:
        while not finished.wait(self.config.heartbeat_seconds):
            try:
                health = self._health()
            except Exception as error:  # a broken probe must not end the heartbeat
                health = f"health check failed: {error}"
            with self._lock:
                self._state = replace(self._state, health=health)
            self._send_status()

    def _post(self, path: str, body: Mapping[str, object], timeout: float) -> Response | None:
        url = self.config.allocator_url.rstrip("/") + path
        headers = {
            "Authorization": f"Bearer {self.config.credential}",
            "Content-Type": "application/json",
        }
        return post_until_stopped(self._transport, self._stop, url, body, headers, timeout)


def _default_runner(config: AgentConfig) -> CrdRunner:
    if config.dry_run:
        return DryRunCrdRunner(config.record_path or Path("crd-record.jsonl"))
    return SubprocessCrdRunner()
