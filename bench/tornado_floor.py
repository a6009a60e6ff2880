"""References for the HTTP benchmarks: what Tornado alone costs on this machine.

A bare `tornado.web.Application` in its own process (no Panel, no database, no listener):

* :func:`measure` holds N keep-alive POSTs, each awaiting a future, until one more request
  resolves them all at once. The same generator times each reply from that request being
  sent, as :mod:`bench.waiting_vms` times them from the COMMIT. The allocator cannot answer a
  mass wake-up faster than this on the same machine.
* :func:`echo_rate` answers a small JSON POST with a small JSON reply, one keep-alive client
  sending one request after another, as :mod:`bench.request_vm` does at 1 client: the rate
  of HTTP alone, with no claim behind it.

Run alone: `python bench/tornado_floor.py [N]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procstat import raise_file_limit
from bench.rawhttp import HttpConnection, build_request
from bench.stats import latency_ms
from lablink_core.localdb import free_port

ANSWER = {"hostname": "vm-0000", "assigned": True, "code": "4/0" + "x" * 60, "pin": "123456"}
START_TIMEOUT = 30.0
REPLY_TIMEOUT = 60.0


def serve(port: int) -> None:
    """The bare server (the child process): POST /hold waits, POST /release answers all."""
    import tornado.httpserver
    import tornado.web

    raise_file_limit()
    held: list[asyncio.Future[dict[str, Any]]] = []

    class Hold(tornado.web.RequestHandler):
        async def post(self) -> None:
            future = asyncio.get_running_loop().create_future()
            held.append(future)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(await future))

    class Release(tornado.web.RequestHandler):
        def post(self) -> None:
            for future in held:
                future.set_result(ANSWER)
            held.clear()
            self.finish("released")

    class Count(tornado.web.RequestHandler):
        def get(self) -> None:
            self.finish({"held": len(held)})

    class Echo(tornado.web.RequestHandler):
        def post(self) -> None:
            fields = json.loads(self.request.body)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({**ANSWER, "email": fields["email"]}))

    async def main() -> None:
        routes = [("/hold", Hold), ("/release", Release), ("/count", Count), ("/echo", Echo)]
        app = tornado.web.Application(routes)
        tornado.httpserver.HTTPServer(app).listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


async def _held(probe: HttpConnection, port: int, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        reply = await probe.request(build_request("/count", port), REPLY_TIMEOUT)
        if reply.json()["held"] >= count:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the bare server did not hold {count} requests")


async def _release_and_time(port: int, count: int) -> dict[str, Any]:
    connections = [await HttpConnection.open(port) for _ in range(count)]
    try:
        hold = build_request("/hold", port, {"hostname": "vm"})
        replies = [connection.send(hold) for connection in connections]
        probe = await HttpConnection.open(port)
        await _held(probe, port, count)
        sent = time.monotonic()
        await probe.request(build_request("/release", port, {}), REPLY_TIMEOUT)
        answered = await asyncio.wait_for(asyncio.gather(*replies), REPLY_TIMEOUT)
        probe.close()
    finally:
        for connection in connections:
            connection.close()
    return latency_ms([reply.arrived - sent for reply in answered])


def measure(count: int, runs: int = 3) -> dict[str, Any]:
    """The median run's reply latencies for ``count`` held requests answered at once."""
    with _bare_server() as port:
        results = sorted(
            (asyncio.run(_release_and_time(port, count)) for _ in range(runs)),
            key=lambda row: row["p99_ms"],
        )
    return {"requests": count, **results[len(results) // 2]}


def echo_rate(requests: int) -> dict[str, Any]:
    """Requests/s and latencies of ``requests`` small POSTs from one keep-alive client."""
    with _bare_server() as port:
        return asyncio.run(_echo(port, requests))


async def _echo(port: int, requests: int) -> dict[str, Any]:
    connection = await HttpConnection.open(port)
    try:
        for index in range(200):  # warm up
            await connection.request(_echo_request(port, index), REPLY_TIMEOUT)
        latencies, began = [], time.monotonic()
        for index in range(requests):
            sent = time.monotonic()
            reply = await connection.request(_echo_request(port, index), REPLY_TIMEOUT)
            latencies.append(reply.arrived - sent)
        elapsed = time.monotonic() - began
    finally:
        connection.close()
    return {"requests": requests, "per_s": round(requests / elapsed, 1), **latency_ms(latencies)}


def _echo_request(port: int, index: int) -> bytes:
    payload = {"email": f"r{index}@example.org", "crd_command": "x" * 200}
    return build_request("/echo", port, payload)


@contextlib.contextmanager
def _bare_server() -> Iterator[int]:
    raise_file_limit()
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        asyncio.run(_wait_up(port))
        yield port
    finally:
        child.kill()
        child.wait(timeout=30)


async def _wait_up(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            probe = await HttpConnection.open(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        probe.close()
        return


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
    else:
        print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
        print(echo_rate(5000))
