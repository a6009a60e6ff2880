"""The VM agent: long-polls the allocator for its CRD task and runs the CRD host.

Stopping: every request goes through `post_until_stopped`, so setting the
stop event ends `run()` within a fraction of a second even while a 75 s long
poll is in flight. The abandoned request dies with the process, and
nothing is lost: the agent reports the last generation it *acted on*, so a task
it never saw is sent again on the next start.

Credentials: any 200 answer may carry ``"credential"``, a rotated credential; the old one
is dead from then on, so the agent switches at once and saves it (`CredentialStore`). A
401 on a poll falls back once from the saved credential to the configured one, then ends
the agent with `Unauthorized`.
"""

from __future__ import annotations

import logging
import random as _random
import threading
from collections.abc import Callable, Mapping
from typing import Final

from lablink_core.client.credential_store import CredentialStore
from lablink_core.client.enrolment import Enrolment
from lablink_core.client.machine import MachineState
from lablink_core.client.parts import AgentParts, build_parts
from lablink_core.client.runners import CrdLaunch, CrdRunner
from lablink_core.client.settings import AgentConfig
from lablink_core.client.status_report import STATUS_TIMEOUT, StatusReporter
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

__all__ = ["AgentConfig", "AllocatorRejected", "VMAgent"]

log = logging.getLogger(__name__)

_RETRY_STATUSES: Final = frozenset({408, 429, 503})


class AllocatorRejected(LablinkError):
    """The allocator refused the agent's request in a way retrying cannot fix."""

    code = "allocator_rejected"


def _text(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} is missing or not text", field=name)
    return value


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUSES or status >= 500


class VMAgent:
    """Polls the allocator, runs the CRD task it hands out and reports status and logs."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        transport: Transport | None = None,
        runner: CrdRunner | None = None,
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] = _random.random,
        probe: Callable[[], MachineState] | None = None,
        clone: Callable[[threading.Event], str | None] | None = None,
    ) -> None:
        self.config = config
        self.credentials = CredentialStore(config.credential or None, config.credential_file)
        self.parts: AgentParts = build_parts(config, runner, probe, clone, self._send_logs)
        self.runner: CrdRunner = self.parts.runner
        self.generation = 0
        self._transport = transport if transport is not None else UrllibTransport()
        self._sleep = sleep
        self._random = random
        self.status = StatusReporter(config.hostname, self.parts, self._post)
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; raise `Unauthorized`/`AllocatorRejected` on fatal answers."""
        self._stop = stop
        backoff = Backoff(
            max_delay=self.config.max_backoff, random=self._random, sleep=self._sleep or stop.wait
        )
        finished = threading.Event()
        beat = threading.Thread(
            target=self.status.beat, args=(finished, self.config.heartbeat_seconds), daemon=True
        )
        preparing = threading.Thread(target=self._prepare_desktop, daemon=True)
        logging.getLogger("lablink_core").addHandler(self.parts.log_ring)
        try:
            if not self._obtain_credential(backoff):
                return
            beat.start()
            preparing.start()
            self._poll_loop(backoff)
        finally:
            finished.set()
            self.runner.stop()
            for thread in (beat, preparing):
                if thread.is_alive():
                    thread.join(timeout=1.0)
            logging.getLogger("lablink_core").removeHandler(self.parts.log_ring)

    # Credentials ---------------------------------------------------------------------

    def _obtain_credential(self, backoff: Backoff) -> bool:
        """A credential to poll with: saved, configured, or enrolled for. False: stopped."""
        self.credentials.load()
        self.parts.redact.learn(self.config.enrolment_token, *self.credentials.known())
        if self.credentials.current is not None:
            return True
        if not self.config.enrolment_token:
            raise Unauthorized("no VM credential: set LABLINK_VM_CREDENTIAL")
        enrolment = Enrolment(self.config, self._transport, self._stop)
        credential = enrolment.exchange(lambda why, after: self._retry(backoff, why, after))
        if credential is None:
            return False
        self.parts.redact.learn(credential)
        backoff.reset()
        return self.credentials.replace(credential, "enrolment")

    # Polling -------------------------------------------------------------------------

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
        if _retryable(answer.status):
            return why
        if answer.status == 401:
            if self.credentials.fall_back():
                return None
            source = self.credentials.source
            raise Unauthorized(f"{why} (credential from the {source}; check LABLINK_VM_CREDENTIAL)")
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
        # Learnt before anything can fail, so no message or log line can carry them out.
        self.parts.redact.learn(
            *(v for v in (body.get("code"), body.get("pin")) if isinstance(v, str))
        )
        try:
            # Re-validated here: the VM trusts nothing it is about to execute.
            command = CrdCommand(code=_text(body, "code"), redirect_url=_text(body, "redirect_url"))
            launch = CrdLaunch(command, self.config.hostname, _text(body, "pin"))
        except InvalidInput as error:
            log.error("refused CRD task generation %d: %s", generation, error)
            self.status.report("error", in_use=True, message=f"refused CRD task: {error}")
            return
        self.runner.stop()
        try:
            self.runner.start(launch)
        except OSError as error:
            log.error("could not start the CRD host for generation %d: %s", generation, error)
            self.status.report("error", in_use=True, message=f"could not start CRD host: {error}")
            return
        log.info("started the CRD host for generation %d", generation)
        self.status.report("connected", in_use=True, message=None)

    def _release(self, generation: int) -> None:
        if self.runner.running:
            log.info("VM released (generation %d): stopping the CRD host", generation)
        self.runner.stop(forget=True)
        self.status.report("ready", in_use=False, message=None)

    # Desktop, status and logs ----------------------------------------------------------

    def _prepare_desktop(self) -> None:
        """Clone the repository (if any), then offer the VM: status "ready"."""
        notice = self.parts.clone(self._stop)
        if notice:
            log.warning("%s", notice)
        self.status.offered(notice)

    def _send_logs(self, source: str, lines: list[str]) -> bool | None:
        body = {"hostname": self.config.hostname, "source": source, "lines": lines}
        try:
            answer = self._post("/api/vm/logs", body, STATUS_TIMEOUT)
        except TransportError:
            return False
        if answer is None or answer.status == 200:
            return answer is not None
        if answer.status in (404, 405):
            log.info("the allocator takes no VM logs (HTTP %d); not sending them", answer.status)
            return None
        log.warning("log upload answered %d: %s", answer.status, server_message(answer))
        # A refused batch is dropped (sending it again would be refused again); others wait.
        return answer.status < 500 and answer.status not in (401, 408, 429)

    def _post(
        self, path: str, body: Mapping[str, object], timeout: float, *, again: bool = True
    ) -> Response | None:
        url = self.config.allocator_url.rstrip("/") + path
        used = self.credentials.current
        headers = {"Authorization": f"Bearer {used}", "Content-Type": "application/json"}
        answer = post_until_stopped(self._transport, self._stop, url, body, headers, timeout)
        if answer is None:
            return None
        if answer.status == 401 and again and used != self.credentials.current:
            # Rotated while this request was in flight: the new credential gets one more try.
            return self._post(path, body, timeout, again=False)
        if answer.status in (200, 204):
            rotated = (answer.body or {}).get("credential")
            if isinstance(rotated, str):
                self.parts.redact.learn(rotated)
                self.credentials.replace(rotated, "rotation")
            self.credentials.accepted()
        return answer
