"""Enrolment: a new VM trades its one-time enrolment token for its credential.

``POST /api/vm/enroll {"hostname", "enrolment_token"}`` (no bearer) answers
``{"hostname", "credential"}``. The AWS user_data normally does this on the host before the
container starts; bring-your-own machines may leave it to the agent (LABLINK_ENROLMENT_TOKEN).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from lablink_core.client.credential_store import is_credential
from lablink_core.client.settings import AgentConfig
from lablink_core.client.transport import (
    Response,
    Transport,
    TransportError,
    post_until_stopped,
    retry_after_seconds,
    server_message,
)
from lablink_core.errors import Unauthorized

ENROL_TIMEOUT: Final = 10.0
_RETRY_STATUSES: Final = frozenset({408, 429, 503})


class Enrolment:
    def __init__(self, config: AgentConfig, transport: Transport, stop: threading.Event) -> None:
        self._config = config
        self._transport = transport
        self._stop = stop

    def exchange(self, retry: Callable[[str, float | None], None]) -> str | None:
        """The credential, or None once stopped; raises `Unauthorized` if the token is refused.

        ``retry(why, retry_after)`` waits before the next attempt (outages, 5xx, 429)."""
        config = self._config
        body = {"hostname": config.hostname, "enrolment_token": config.enrolment_token}
        url = config.allocator_url.rstrip("/") + "/api/vm/enroll"
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                answer = post_until_stopped(
                    self._transport, self._stop, url, body, headers, ENROL_TIMEOUT
                )
            except TransportError as error:
                retry(f"enrolment: allocator unreachable ({error})", None)
                continue
            if answer is None:
                return None
            credential = self._credential(answer)
            if credential is not None:
                return credential
            why = f"enrolment answered {answer.status}: {server_message(answer)}"
            if (
                answer.status != 200
                and answer.status < 500
                and answer.status not in _RETRY_STATUSES
            ):
                raise Unauthorized(f"{why} (check LABLINK_ENROLMENT_TOKEN)")
            retry(why, retry_after_seconds(answer.headers))
        return None

    def _credential(self, answer: Response) -> str | None:
        body = answer.body or {}
        credential = body.get("credential")
        if answer.status != 200 or body.get("hostname") != self._config.hostname:
            return None
        return credential if isinstance(credential, str) and is_credential(credential) else None
