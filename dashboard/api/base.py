"""What every API handler shares: one JSON error writer, body parsing, auth helpers."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from sqlalchemy.exc import InterfaceError, OperationalError
from tornado.web import HTTPError, RequestHandler

from dashboard.client_address import client_address
from dashboard.runtime import Runtime
from lablink_core.errors import LablinkError, RateLimited
from lablink_core.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024
STATUS_BY_CODE = {
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "seat_taken": 409,
    "operation_in_progress": 409,
    "no_vm_available": 503,
    "rate_limited": 429,
    "waitlist_full": 503,
    "database_unavailable": 503,
}


class ApiError(LablinkError):
    """An HTTP-level refusal (wrong content type, body too large, bad JSON)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code


class ApiHandler(RequestHandler):
    """Thin base: parse, call one service, write JSON. Errors never leak a traceback."""

    runtime_ref: Callable[[], Runtime]
    # Health and admin handlers run on the runtime's admin pool instead of the request pool.
    uses_admin_pool = False

    def initialize(self, runtime: Callable[[], Runtime]) -> None:
        self.runtime_ref = runtime

    @property
    def runtime(self) -> Runtime:
        return self.runtime_ref()

    def check_xsrf_cookie(self) -> None:
        """Machine endpoints authenticate by bearer credential or seat token, not cookies."""

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking core call on the runtime's pool, off the event loop."""
        loop = asyncio.get_running_loop()
        runtime = self.runtime
        pool = runtime.admin_executor if self.uses_admin_pool else runtime.executor
        return await loop.run_in_executor(pool, lambda: function(*args))

    def body_fields(self) -> dict[str, Any]:
        """The body as a dict, from JSON or a form; anything else is a clear 4xx."""
        body = self.request.body
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(
                413, "body_too_large", f"request body must be under {MAX_BODY_BYTES} bytes"
            )
        kind = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            return _json_object(body)
        if kind in ("application/x-www-form-urlencoded", "") and b"\0" not in body:
            return _form_fields(body)
        raise ApiError(
            415, "unsupported_media_type", "send JSON or a form (application/x-www-form-urlencoded)"
        )

    def wants_json(self) -> bool:
        accept = self.request.headers.get("Accept", "")
        kind = self.request.headers.get("Content-Type", "")
        return "application/json" in accept or kind.startswith("application/json")

    def client_address(self) -> str:
        """The caller's address (X-Forwarded-For believed only from app.trusted_proxies)."""
        return client_address(self.request, self.runtime.config.app.trusted_proxies)

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def write_json(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(payload, default=str))

    def write_failure(self, error: LablinkError) -> None:
        status = (
            error.status if isinstance(error, ApiError) else STATUS_BY_CODE.get(error.code, 400)
        )
        if status == 503:
            self.set_header("Retry-After", "5")
        if isinstance(error, RateLimited):
            self.set_header("Retry-After", str(max(1, math.ceil(error.retry_after))))
        payload = {"error": {"code": error.code, "message": error.message, "field": error.field}}
        self._metrics().refused(type(self).__name__, error.code)
        self.write_json(payload, status)

    def on_finish(self) -> None:
        self._metrics().request(type(self).__name__, self.get_status(), self.request.request_time())

    def _metrics(self) -> Metrics:
        try:
            return self.runtime.services.metrics
        except RuntimeError:  # routes served before the runtime exists count nothing
            return Metrics()

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, LablinkError) and not self._finished:
            self.write_failure(e)
            return
        if isinstance(e, OperationalError | InterfaceError) and not self._finished:
            # The database is restarting or unreachable: a retryable 503, not a 500.
            log.warning("database unavailable: %s", str(e).splitlines()[0])
            self.write_failure(
                ApiError(503, "database_unavailable", "the database is unavailable; retry shortly")
            )
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (405, bad requests, crashes) as JSON, never a traceback."""
        exc = kwargs.get("exc_info", (None, None))[1]
        message = (
            exc.log_message if isinstance(exc, HTTPError) and exc.log_message else self._reason
        )
        if status_code >= 500:
            message = "internal error; it has been logged"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(
            json.dumps({"error": {"code": "http_error", "message": message, "field": None}})
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from error
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return value


def _form_fields(body: bytes) -> dict[str, Any]:
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, "invalid_form", "the form is not valid UTF-8") from error
    fields: dict[str, Any] = {}
    for key, values in parsed.items():
        if len(values) > 1:
            raise ApiError(400, "invalid_form", f"field {key} is given more than once", key)
        fields[key] = values[0]
    return fields
