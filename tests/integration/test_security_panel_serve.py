"""The same hardening under the documented `panel serve` line as under `lablink serve`: the
websocket origin allowlist, the headers, the body-size limit, session-checked cookies."""

from __future__ import annotations

import httpx
import pytest
from tornado.httpclient import HTTPClientError

from tests.integration import test_panel_serve
from tests.integration.test_panel_serve import PanelServe
from tests.integration.test_security_http import MiB, open_websocket, upload
from tests.support.admin_login import admin_get, session_cookie
from tests.support.waiting import run_async

served = test_panel_serve.served  # the module's `panel serve` process


def test_cross_origin_websockets_are_refused_and_same_origin_ones_open(served: PanelServe) -> None:
    cookie = session_cookie(served.url)
    opened = run_async(open_websocket(served, "/admin_instances", cookie, served.url))
    assert '"msgtype":"ACK"' in opened.replace(" ", "")
    for origin in (f"http://127.0.0.1:{served.port + 1}", "http://evil.example"):
        with pytest.raises(HTTPClientError) as refused:
            run_async(open_websocket(served, "/admin_instances", cookie, origin))
        assert refused.value.code == 403


def test_headers_limits_and_sessions_apply(served: PanelServe) -> None:
    for path in ("/", "/login", "/api/health"):
        reply = httpx.get(f"{served.url}{path}", timeout=30)
        assert reply.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"], path
    answer = upload(served.port, "/request_vm", 95 * MiB)
    assert not answer or answer.startswith(b"HTTP/1.1 4")
    cookie = session_cookie(served.url)
    assert admin_get(served.url, "/api/vms", cookie).status_code == 200
    assert admin_get(served.url, "/logout", cookie).status_code == 200
    assert admin_get(served.url, "/api/vms", cookie).status_code == 401
    assert admin_get(served.url, "/admin_instances", cookie).status_code == 302
