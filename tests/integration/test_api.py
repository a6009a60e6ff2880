"""The HTTP API over real HTTP against a running `lablink serve` and real PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import CRD, crd
from tests.support.metrics import Samples, parse, scrape, value
from tests.support.waiting import wait_until


def start_vm(api: RunningServer, hostname: str, generation: int = 0) -> httpx.Response:
    return httpx.post(
        f"{api.url}/vm_startup",
        json={"hostname": hostname, "generation": generation},
        headers={"Authorization": f"Bearer {api.credential(hostname)}"},
        timeout=30,
    )


def register(api: RunningServer, *names: str) -> None:
    """Registers VMs by having each poll once (they return 204 after the server's deadline)."""
    threads = [threading.Thread(target=start_vm, args=(api, n)) for n in names]
    for thread in threads:
        thread.start()
    wait_until(lambda: api.info()["waiting_vms"] == len(names), message="VMs waiting")


def request(api: RunningServer, email: str, command: str = CRD, **extra: str) -> httpx.Response:
    return httpx.post(
        f"{api.url}/request_vm",
        json={"email": email, "crd_command": command, **extra},
        timeout=30,
    )


def test_the_seeds_curl_example(api: RunningServer) -> None:
    register(api, "vm-seed")
    result = subprocess.run(
        [
            "curl",
            "-s",
            "-i",
            "-X",
            "POST",
            f"{api.url}/request_vm",
            "-d",
            "email=user@example.com",
            "-d",
            f"crd_command={CRD}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "200 OK" in result.stdout.splitlines()[0]
    assert "vm-seed" in result.stdout and "PIN" in result.stdout
    assert "lablink_seat=" in result.stdout and "HttpOnly" in result.stdout


def test_json_and_form_bodies(api: RunningServer) -> None:
    register(api, "vm-a", "vm-b")
    as_json = request(api, "ada@example.org")
    as_form = httpx.post(
        f"{api.url}/request_vm",
        data={"email": "grace@example.org", "crd_command": CRD},
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert as_json.status_code == as_form.status_code == 200
    body = as_json.json()
    assert set(body) >= {"hostname", "pin", "seat_token"}
    assert len(body["pin"]) >= 6 and body["pin"].isdigit()
    assert {body["hostname"], as_form.json()["hostname"]} == {"vm-a", "vm-b"}


def test_same_email_with_token_renews_and_the_vm_gets_the_new_command(api: RunningServer) -> None:
    register(api, "vm-a", "vm-b")
    first = request(api, "ada@example.org").json()
    assert start_vm(api, first["hostname"]).json()["code"] == "4/0AbCdEf_123-xyz"
    box: dict[str, httpx.Response] = {}
    waiting = threading.Thread(target=lambda: box.update(r=start_vm(api, first["hostname"], 1)))
    waiting.start()
    wait_until(lambda: api.info()["waiting_vms"] == 2, message="the VM waiting again")
    again = request(api, "ada@example.org", crd("4/fresh"), seat_token=first["seat_token"])
    waiting.join(timeout=10)
    assert again.status_code == 200 and again.json()["hostname"] == first["hostname"]
    assert box["r"].json()["code"] == "4/fresh" and box["r"].json()["generation"] == 2


def test_same_email_with_cookie_is_the_same_seat(api: RunningServer) -> None:
    register(api, "vm-a")
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        first = browser.post("/request_vm", data={"email": "ada@example.org", "crd_command": CRD})
        again = browser.post(
            "/request_vm", data={"email": "ada@example.org", "crd_command": crd("4/new")}
        )
    assert first.status_code == again.status_code == 200
    assert "vm-a" in again.text


def test_same_email_without_token_is_409_and_nothing_changes(api: RunningServer) -> None:
    register(api, "vm-a", "vm-b")
    first = request(api, "ada@example.org").json()
    refused = request(api, "ada@example.org", crd("4/hijack"))
    assert refused.status_code == 409
    assert "already holds a VM" in refused.json()["error"]["message"]
    vms = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10).json()["vms"]
    held = [v for v in vms if v["user_email"]]
    assert [v["hostname"] for v in held] == [first["hostname"]]


def test_no_free_vm_is_503_with_retry_after(api: RunningServer) -> None:
    reply = request(api, "ada@example.org")
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
    assert "No VM is free" in reply.json()["error"]["message"]


def test_fifty_concurrent_requests_for_twenty_vms(api: RunningServer) -> None:
    register(api, *[f"vm-{i:02d}" for i in range(20)])
    barrier = threading.Barrier(50)
    replies: list[httpx.Response] = []

    def one(i: int) -> None:
        barrier.wait()
        replies.append(request(api, f"user{i}@example.org"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Counter(r.status_code for r in replies) == {200: 20, 503: 30}
    assert len({r.json()["hostname"] for r in replies if r.status_code == 200}) == 20


def test_vm_startup_answers_204_after_the_deadline_and_registers(api: RunningServer) -> None:
    reply = start_vm(api, "vm-new")
    assert reply.status_code == 204
    vms = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10).json()["vms"]
    assert [(v["hostname"], v["status"]) for v in vms] == [("vm-new", "available")]


def test_disconnected_vm_leaves_no_waiter(api: RunningServer) -> None:
    body = b'{"hostname": "vm-gone"}'
    head = (
        f"POST /vm_startup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {api.credential('vm-gone')}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api.port)) as connection:
        connection.sendall(head.encode() + body)
        wait_until(lambda: api.info()["waiting_vms"] == 1, message="the waiter")
    wait_until(lambda: api.info()["waiting_vms"] == 0, timeout=5, message="the waiter to go")


def test_status_reports_show_in_the_table_and_release_works(api: RunningServer) -> None:
    register(api, "vm-a")
    seat = request(api, "ada@example.org").json()
    headers = {"Authorization": f"Bearer {api.credential('vm-a')}"}
    report = {"hostname": "vm-a", "status": "connected", "in_use": True, "health": "T4 ok"}
    assert httpx.post(f"{api.url}/api/vm/status", json=report, headers=headers).status_code == 200
    (vm,) = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth()).json()["vms"]
    assert (vm["status"], vm["in_use"], vm["health"]) == ("connected", True, "T4 ok")
    wrong = httpx.post(
        f"{api.url}/release_vm", json={"email": "ada@example.org", "seat_token": "nope"}
    )
    assert wrong.status_code == 409
    released = httpx.post(
        f"{api.url}/release_vm", json={"email": "ada@example.org", "seat_token": seat["seat_token"]}
    )
    assert released.json() == {"released": "vm-a"}
    start_vm(api, "vm-a")  # the VM picks up its rotated credential, and is free again
    assert request(api, "grace@example.org").status_code == 200
    admin = httpx.post(f"{api.url}/api/vms/vm-a/release", auth=api.admin_auth())
    assert admin.status_code == 200
    assert httpx.post(f"{api.url}/api/vms/vm-a/release", auth=api.admin_auth()).status_code == 404


def test_admin_endpoints_need_the_admin(api: RunningServer) -> None:
    assert httpx.get(f"{api.url}/api/vms").status_code == 401
    assert httpx.get(f"{api.url}/api/vms", auth=("admin", "wrong")).status_code == 401
    assert httpx.post(f"{api.url}/api/vms/vm-a/release").status_code == 401
    assert httpx.get(f"{api.url}/api/health").json()["database"] is True


def test_health_is_503_when_the_database_is_gone(
    postgres_server_url: str, template_database: str
) -> None:
    from tests.fixtures.server import make_server_database

    server = RunningServer(make_server_database(postgres_server_url, template_database)).start()
    try:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = make_url(server.database_url).database
        admin = create_engine(
            make_url(postgres_server_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
        reply = httpx.get(f"{server.url}/api/health", timeout=20)
        assert reply.status_code == 503 and reply.json()["database"] is False
        with admin.connect() as connection:
            connection.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        wait_until(
            lambda: httpx.get(f"{server.url}/api/health", timeout=20).status_code == 200,
            timeout=20,
            message="health to come back",
        )
        admin.dispose()
    finally:
        server.stop()


@pytest.mark.parametrize("credential", [None, "x", "lvm1.wrong", "Basic abc"])
def test_vm_credentials_are_checked(api: RunningServer, credential: str | None) -> None:
    headers = (
        {"Authorization": credential}
        if credential and credential.startswith("Basic")
        else ({"Authorization": f"Bearer {credential}"} if credential is not None else {})
    )
    reply = httpx.post(f"{api.url}/vm_startup", json={"hostname": "vm-a"}, headers=headers)
    assert reply.status_code == 401


def test_one_vms_credential_does_not_work_for_another(api: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {api.credential('vm-a')}"}
    for path, body in (
        ("/vm_startup", {"hostname": "vm-b"}),
        ("/api/vm/status", {"hostname": "vm-b", "status": "ready"}),
    ):
        assert httpx.post(f"{api.url}{path}", json=body, headers=headers).status_code == 401


def test_metrics_count_what_the_researchers_and_vms_did(
    api: RunningServer, polling_vms: Callable[[int], list[str]]
) -> None:
    auth = api.admin_auth()
    before = parse(scrape(api.url, auth).text)
    polling_vms(2)
    first = request(api, "ada@example.org")
    token = first.json()["seat_token"]
    replies = [
        first,
        request(api, "ada@example.org", crd("4/again"), seat_token=token),
        request(api, "grace@example.org"),
        request(api, "alan@example.org"),
        request(api, "not an email"),
    ]
    assert [reply.status_code for reply in replies] == [200, 200, 200, 503, 400]

    def now() -> Samples:
        return parse(scrape(api.url, auth).text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Both assignments and the renewal wake a VM; each VM then polls again.
    wait_until(
        lambda: (
            value(now(), "lablink_vms_woken_total") - value(before, "lablink_vms_woken_total") >= 3
            and value(now(), "lablink_waiting_vms") == 2
        ),
        message="three wake-ups, two VMs waiting again",
    )
    after = now()
    assert grew("lablink_assignments_total", kind="new") == 2
    assert grew("lablink_assignments_total", kind="renewal") == 1
    refused = {"where": "RequestVMHandler"}
    assert grew("lablink_refusals_total", **refused, reason="no_vm_available") == 1
    assert grew("lablink_refusals_total", **refused, reason="invalid_input") == 1
    timed = {"handler": "RequestVMHandler"}
    assert grew("lablink_http_request_seconds_count", **timed, code="2xx") == 3
    assert grew("lablink_http_request_seconds_count", **timed, code="5xx") == 1
    assert grew("lablink_http_request_seconds_count", **timed, code="4xx") == 1
    assert grew("lablink_wake_seconds_count") >= 1
    assert value(after, "lablink_vms", status="assigned") == 2
    assert value(after, "lablink_pool_vms", pool="free") == 0


def test_metrics_are_for_the_admin_only(api: RunningServer) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-admin-token"}):
        reply = httpx.get(f"{api.url}/metrics", headers=headers, timeout=10)
        assert reply.status_code == 401 and "lablink_" not in reply.text
    assert scrape(api.url, api.admin_auth()).status_code == 200
