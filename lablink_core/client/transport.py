"""The one HTTP operation the VM agent needs, behind an interface tests replace.

The agent only ever POSTs JSON and reads a JSON answer, so the interface is a
single method. Every answer the server gives, error statuses included, comes
back as a `Response`; only failures to get an answer at all (refused
connection, timeout, reset) raise `TransportError`, which is the agent's cue to
back off and retry.
"""

from __future__ import annotations

import http.client
import json
import random as _random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Final, Protocol

# The allocator holds /vm_startup for about 60 s; the read timeout must outlast
# that hold or every idle poll would end as a spurious timeout.
DEFAULT_TIMEOUT: Final = 75.0
# Allocator answers are a few hundred bytes; a cap keeps a misrouted request
# (e.g. to a file server) from filling memory.
MAX_BODY_BYTES: Final = 1 << 20
# A server asking for a longer pause than this is more likely broken than busy.
MAX_RETRY_AFTER: Final = 300.0
# How often a caller blocked on a request looks at its stop event.
STOP_CHECK_SECONDS: Final = 0.1


@dataclass(frozen=True)
class Response:
    """An HTTP answer. Header names are lowercase; `body` is None unless it was a JSON object."""

    status: int
    body: dict[str, object] | None
    headers: Mapping[str, str] = field(default_factory=dict)


class TransportError(Exception):
    """No HTTP answer was received: connection refused or reset, DNS failure, timeout."""


class Transport(Protocol):
    def post_json(
        self,
        url: str,
        body: Mapping[str, object],
        *,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Response: ...


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Surface redirects as plain responses.

    urllib would replay a redirected POST as a GET and carry the Authorization
    header to wherever the Location points; neither is wanted for a credential.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


def _decode(raw: bytes) -> dict[str, object] | None:
    if not raw.strip():
        return None
    try:
        parsed: object = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _read(stream: http.client.HTTPResponse | urllib.error.HTTPError) -> bytes:
    raw = stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise TransportError(f"response body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def _lower_headers(headers: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class UrllibTransport:
    """The standard-library transport used in production."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def post_json(
        self,
        url: str,
        body: Mapping[str, object],
        *,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Response:
        # urllib also opens file:// and ftp:// URLs; only HTTP belongs here.
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"only http:// and https:// URLs are supported, not {url!r}")
        data = json.dumps(dict(body)).encode("utf-8")
        # The scheme was checked just above, which is what S310 asks for.
        request = urllib.request.Request(url, data=data, headers=dict(headers), method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        try:
            return self._exchange(request, timeout)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise TransportError(f"{type(error).__name__}: {reason}") from error

    def _exchange(self, request: urllib.request.Request, timeout: float) -> Response:
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                raw = _read(answer)
                return Response(answer.status, _decode(raw), _lower_headers(answer.headers))
        except urllib.error.HTTPError as error:
            # An error status is still an answer from the server, not a transport failure.
            with error:
                raw = _read(error)
                return Response(error.code, _decode(raw), _lower_headers(error.headers))


def server_message(answer: Response) -> str:
    error = (answer.body or {}).get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else "no error message"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    # Only the delta-seconds form is read; the allocator does not send HTTP dates.
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Backoff:
    """Exponential backoff with full jitter: a random delay in [0, min(cap, initial * 2**n))."""

    def __init__(
        self,
        *,
        initial: float = 0.5,
        max_delay: float = 30.0,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.initial = initial
        self.max_delay = max_delay
        self.attempts = 0
        self._random = random
        self._sleep = sleep

    def next_delay(self, retry_after: float | None = None) -> float:
        # The exponent is capped only so 2**n cannot overflow after days of outage.
        ceiling = min(self.max_delay, self.initial * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        delay = self._random() * ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    def sleep(self, delay: float) -> None:
        self._sleep(delay)

    def reset(self) -> None:
        self.attempts = 0


def post_until_stopped(
    transport: Transport,
    stop: threading.Event,
    url: str,
    body: Mapping[str, object],
    headers: Mapping[str, str],
    timeout: float,
) -> Response | None:
    """POST from a daemon thread; return None as soon as `stop` is set before the answer.

    urllib cannot be interrupted from another thread, so instead of cancelling
    the request the caller stops waiting for it; the daemon thread finishes or
    dies with the process.
    """
    outcome: list[Response | Exception] = []
    done = threading.Event()

    def call() -> None:
        try:
            outcome.append(transport.post_json(url, body, headers=headers, timeout=timeout))
        except Exception as error:  # handed to the waiting caller below
            outcome.append(error)
        finally:
            done.set()

    threading.Thread(target=call, name="lablink-request", daemon=True).start()
    while not done.wait(STOP_CHECK_SECONDS):
        if stop.is_set():
            return None
    result = outcome[0] if outcome else TransportError("request thread ended without an answer")
    if isinstance(result, Exception):
        raise result
    return result
