"""Who may take a VM, on a real server: with an event code, requests without it (or with a
wrong one) get 403 and take nothing; an allowlist admits its emails and domains only; the
rule is changed at run time for every process through the database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine

from lablink_core.access import AccessPolicy, parse_allowlist
from lablink_core.config import AccessConfig
from lablink_core.errors import InvalidInput
from lablink_core.settings import SettingsStore
from tests.fixtures.server import RunningServer, available_count, make_server_database
from tests.integration.test_allocation import crd
from tests.support.vm_simulator import SimulatedFleet
from tests.support.waiting import wait_until


@pytest.fixture
def policy(api: RunningServer) -> Iterator[AccessPolicy]:
    """The server's access rule, as an admin page changes it (back to open afterwards)."""
    engine = create_engine(api.database_url)
    policy = AccessPolicy(AccessConfig(), SettingsStore(engine, ttl=0))
    yield policy
    policy.change(mode="open")
    engine.dispose()


def ask(api: RunningServer, email: str, **extra: str) -> httpx.Response:
    body = {"email": email, "crd_command": crd(), **extra}
    return httpx.post(f"{api.url}/request_vm", json=body, timeout=30)


def held(api: RunningServer) -> list[str]:
    rows = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10).json()["vms"]
    return [row["user_email"] for row in rows if row["user_email"]]


def test_an_event_code_keeps_out_whoever_lacks_it(
    polling_vms: Callable[[int], list[str]], api: RunningServer, policy: AccessPolicy
) -> None:
    polling_vms(2)
    policy.change(mode="code", event_code="Sleap-2026")
    wait_until(
        lambda: "event code" in ask(api, "nocode@example.org").text,
        message="the new rule in force (settings are cached for two seconds)",
    )
    wrong = ask(api, "wrong@example.org", event_code="sleap-2025")
    assert wrong.status_code == 403 and wrong.json()["error"]["field"] == "event_code"
    assert held(api) == []  # nothing taken by refused requests
    right = ask(api, "right@example.org", event_code="  SLEAP-2026 ")
    assert right.status_code == 200
    queued = ask(api, "queue@example.org", wait="1")
    assert queued.status_code == 403  # no place in the queue without the code either


def test_an_allowlist_admits_its_emails_and_domains(
    polling_vms: Callable[[int], list[str]], api: RunningServer, policy: AccessPolicy
) -> None:
    polling_vms(3)
    entries = parse_allowlist("email\nada@example.org\n@uni.edu\n\nada@example.org,")
    assert entries == ["ada@example.org", "@uni.edu"]
    policy.change(mode="allowlist", allowlist=entries)
    wait_until(
        lambda: "not on this workshop's list" in ask(api, "eve@example.org").text,
        message="the allowlist in force",
    )
    assert ask(api, "Ada@Example.org").status_code == 200
    assert ask(api, "grace@uni.edu").status_code == 200
    assert ask(api, "mallory@uni.edu.evil.com").status_code == 403
    assert sorted(held(api)) == ["ada@example.org", "grace@uni.edu"]


def test_a_rule_that_cannot_work_is_refused(policy: AccessPolicy) -> None:
    with pytest.raises(InvalidInput, match="event code"):
        policy.change(mode="code", event_code=" ")
    with pytest.raises(InvalidInput, match="oidc"):
        policy.change(mode="signin")
    with pytest.raises(InvalidInput):
        parse_allowlist("not an email")
    assert policy.rule().mode == "open"


@pytest.fixture(scope="module")
def strict_server(postgres_server_url: str, template_database: str) -> Iterator[RunningServer]:
    """A server that lets one address make 5 requests at once, then 30 a minute."""
    server = RunningServer(make_server_database(postgres_server_url, template_database))
    server.extra_env.update(
        {"LABLINK_ACCESS_REQUEST_BURST": "5", "LABLINK_ACCESS_REQUEST_RATE_PER_MINUTE": "30"}
    )
    server.start()
    yield server
    server.stop()


def test_a_burst_from_one_address_cannot_drain_the_fleet(strict_server: RunningServer) -> None:
    names = [f"vm-{i:02d}" for i in range(20)]
    credentials = {name: strict_server.credential(name) for name in names}
    vms = SimulatedFleet(strict_server.url, credentials).start()
    try:
        wait_until(lambda: available_count(strict_server) == 20, timeout=30)
        flood(strict_server)
    finally:
        vms.stop()


def flood(strict_server: RunningServer) -> None:
    """50 requests at once from one address, each with a new email."""
    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(lambda i: ask(strict_server, f"r{i}@example.org"), range(50)))
    statuses = Counter(reply.status_code for reply in replies)
    assert statuses[429] >= 44 and statuses[200] <= 6, statuses  # 5, plus what refilled
    limited = next(reply for reply in replies if reply.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert "Too many requests" in limited.json()["error"]["message"]
    assert len(held(strict_server)) == statuses[200]  # the other VMs stay for real people
