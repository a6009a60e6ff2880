"""Refusing a too-large request body from its headers, with a 413 that says why.

The HTTP server's own ``max_body_size`` (``app.max_body_bytes``) already refuses such a body
before reading it, but it answers a bare 400 and drops the connection. This delegate looks at
``Content-Length`` first: over the limit, it answers 413 with a JSON message, then stops the
connection without reading the body, draining (and discarding) a little of what the client is
still sending so that the answer is not lost to a connection reset. A chunked body with no
length still meets the server's own limit.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable

from tornado import gen
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import Application

from dashboard.security_headers import HEADERS

LINGER_SECONDS = 1.0
LINGER_BYTES = 4 << 20
_READ_CHUNK = 64 << 10


class _RefuseLargeBodies(HTTPMessageDelegate):
    def __init__(self, inner: HTTPMessageDelegate, connection: HTTPConnection, limit: int):
        self._inner = inner
        self._connection = connection
        self._limit = limit
        self._refused = False

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> Awaitable[None] | None:
        length = headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > self._limit:
            self._refused = True
            return self._refuse()
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._inner.finish()

    def on_connection_close(self) -> None:
        if not self._refused:
            self._inner.on_connection_close()

    async def _refuse(self) -> None:
        message = f"the request body must be at most {self._limit} bytes"
        error = {"error": {"code": "body_too_large", "message": message, "field": None}}
        body = json.dumps(error).encode()
        headers = HTTPHeaders(
            {
                **HEADERS,
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(body)),
                "Connection": "close",
                "Cache-Control": "no-store",
            }
        )
        start = ResponseStartLine("HTTP/1.1", 413, "Content Too Large")
        try:
            await self._connection.write_headers(start, headers, body)
        except StreamClosedError:
            return
        stream = self._connection.detach()  # type: ignore[attr-defined]
        await _linger_and_close(stream)


async def _linger_and_close(stream: IOStream) -> None:
    """Send FIN, discard a little of the unread body, then close."""
    try:
        stream.socket.shutdown(socket.SHUT_WR)
        deadline = stream.io_loop.time() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES:
            chunk = await gen.with_timeout(deadline, stream.read_bytes(_READ_CHUNK, partial=True))
            drained += len(chunk)
    except (StreamClosedError, TimeoutError, OSError):
        pass
    finally:
        stream.close()


def refuse_large_bodies(app: Application, limit: int) -> None:
    """Put the 413 check in front of every request ``app`` (a BokehTornado) serves."""
    original = app.start_request

    def start_request(server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        return _RefuseLargeBodies(original(server_conn, request_conn), request_conn, limit)

    start_request.lablink_body_limit = limit  # type: ignore[attr-defined]
    if not hasattr(original, "lablink_body_limit"):
        app.start_request = start_request  # type: ignore[method-assign]
