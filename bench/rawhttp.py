"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, cheap enough for 10,000 sockets.

It speaks only what the benchmarks need: one request at a time per connection, responses
with a Content-Length (or none, for 204). No parsing library, no per-request objects beyond
the response, so the load generator spends little of the machine's two cores.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any


class ProtocolError(Exception):
    """The server sent something this client does not understand, or hung up."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.monotonic() when the whole response was read

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def build_request(
    path: str,
    port: int,
    payload: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A POST with a JSON body (or a GET without ``payload``), as bytes ready to send."""
    lines = [
        f"{'GET' if payload is None else 'POST'} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Accept: application/json",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    body = b""
    if payload is not None:
        body = json.dumps(payload).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _parse(buffer: bytearray) -> tuple[Response, int] | None:
    """One complete response from the start of ``buffer`` and its size, or None if partial."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ProtocolError("chunked responses are not supported")
    size = end + 4 + int(headers.get("content-length", "0"))
    if len(buffer) < size:
        return None
    body = bytes(buffer[end + 4 : size])
    return Response(int(parts[1]), headers, body, time.monotonic()), size


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends bytes and awaits the response."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = _parse(self._buffer)
        except (ProtocolError, ValueError) as error:
            waiter.set_exception(ProtocolError(str(error)))
            return
        if parsed is not None:
            response, size = parsed
            del self._buffer[:size]
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ProtocolError(f"connection closed ({exc})"))

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Send one request; the future resolves with its response."""
        if self.closed or self._transport is None:
            raise ProtocolError("connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    async def request(self, request: bytes, timeout: float) -> Response:
        async with asyncio.timeout(timeout):
            return await self.send(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
