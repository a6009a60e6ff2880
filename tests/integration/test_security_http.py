"""Attacks on a running `lablink serve` over plain HTTP that must fail: a page of another
origin opening the admin's websocket with the admin's cookie, huge unauthenticated uploads,
framing and sniffing (headers on every response), log poisoning with a password's bytes,
tracebacks for strangers; and `init-sql -o` over an existing readable file."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.fixtures.server import RunningServer
from tests.support.admin_login import SESSION_COOKIE, admin_get, session_cookie
from tests.support.waiting import run_async

MiB = 1 << 20
PAGES = ["/", "/admin", "/admin/instances", "/admin/create", "/admin/set-aws-credentials"]


def page_token(server: RunningServer, path: str, cookie: str) -> str:
    page = admin_get(server.url, path, cookie)
    assert page.status_code == 200
    match = re.search(r'"token":"([^"]+)"', page.text)
    assert match, "no session token in the page"
    return match.group(1)


async def open_websocket(server: RunningServer, path: str, cookie: str, origin: str) -> str:
    """Open the page's Bokeh websocket as a browser on ``origin`` would; its first message."""
    token = page_token(server, path, cookie)
    request = HTTPRequest(
        f"ws://127.0.0.1:{server.port}{path.rstrip('/')}/ws",
        headers={"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": origin},
    )
    connection = await websocket_connect(request, subprotocols=["bokeh", token])
    try:
        message = await connection.read_message()
        return str(message)
    finally:
        connection.close()


def test_a_websocket_from_another_origin_is_refused_even_with_the_cookie(
    api: RunningServer,
) -> None:
    cookie = session_cookie(api.url)
    same_site = run_async(open_websocket(api, "/admin/instances", cookie, api.url))
    assert '"msgtype":"ACK"' in same_site.replace(" ", "")
    for origin in (
        f"http://127.0.0.1:{api.port + 1}",  # another port of the same host
        "http://evil.example",
        f"https://127.0.0.1:{api.port}",  # another scheme
        "null",
    ):
        for path in ("/admin/instances", "/"):
            with pytest.raises(HTTPClientError) as refused:
                run_async(open_websocket(api, path, cookie, origin))
            assert refused.value.code == 403, (origin, path)


@pytest.mark.parametrize(
    "path", ["/", "/login", "/admin", "/api/health", "/api/vms", "/static/js/bokeh.min.js", "/nope"]
)
def test_every_response_carries_the_security_headers(api: RunningServer, path: str) -> None:
    reply = httpx.get(f"{api.url}{path}", timeout=30)
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in reply.headers  # only over https


def upload(port: int, path: str, size: int, *, chunked: bool = False) -> bytes:
    """Send ``size`` bytes of body (in 1 MiB writes) as fast as the server takes them; the
    server's answer, or b"" if it hung up first."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    block = b"x" * MiB
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(head.encode())
            for _ in range(size // MiB):
                connection.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        except OSError:
            pass  # refused: the server closed the connection
        try:
            return connection.recv(4096)
        except OSError:
            return b""


def memory_kib(pid: int) -> dict[str, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def test_huge_uploads_are_refused_before_they_are_read(api: RunningServer) -> None:
    assert api.process is not None
    answers: dict[int, bytes] = {}

    def attack(i: int) -> None:
        path = "/request_vm" if i % 2 else "/api/vm/status"
        answers[i] = upload(api.port, path, 95 * MiB, chunked=i == 0)

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 16
    # Told why (413 and a message) when the length is announced; a chunked body meets the
    # HTTP server's own limit (a 400, or a closed connection).
    with_length = [answer for i, answer in answers.items() if i != 0]
    assert all(a.startswith(b"HTTP/1.1 413") and b"body_too_large" in a for a in with_length)
    assert not answers[0] or answers[0].startswith(b"HTTP/1.1 400")
    memory = memory_kib(api.process.pid)
    assert memory["VmHWM"] < 400 * 1024, memory
    assert httpx.get(f"{api.url}/api/health", timeout=30).status_code == 200
    small = httpx.post(f"{api.url}/request_vm", json={"email": "x"}, timeout=30)
    assert small.status_code == 400  # read and judged: a bad email, not a refused body


def test_a_login_with_invalid_utf8_logs_no_password_bytes(api: RunningServer) -> None:
    reply = httpx.post(
        f"{api.url}/login",
        content=b"username=admin&password=%ffhunter2%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert reply.status_code == 400
    log = api.log()
    assert "hunter2" not in log and "Invalid unicode" not in log and "\\xff" not in log


@pytest.mark.parametrize(
    "path",
    [
        "/admin/autoload.js",
        "/admin/instances/autoload.js?bokeh-autoload-element=x",
        "/admin/create/autoload.js?bokeh-autoload-element=x&bokeh-app-path=/admin/create",
        "/admin/set-aws-credentials/autoload.js?bokeh-autoload-element=x&bokeh-absolute-url=/",
        "/admin/instances/ws",
        "/admin/metadata",
    ],
)
def test_strangers_get_refusals_not_tracebacks(api: RunningServer, path: str) -> None:
    reply = httpx.get(f"{api.url}{path}", follow_redirects=False, timeout=30)
    assert reply.status_code in (302, 400, 403, 404)
    assert "Traceback" not in api.log()


def test_init_sql_narrows_an_existing_file_to_its_owner(tmp_path: Path) -> None:
    target = tmp_path / "init.sql"
    target.write_text("old")
    target.chmod(0o644)
    env = {**os.environ, "LABLINK_DB_PASSWORD": "db-secret-123"}
    done = subprocess.run(
        [sys.executable, "-m", "lablink_core.cli", "db", "init-sql", "-o", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "db-secret-123" in target.read_text()
