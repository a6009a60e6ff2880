"""The waitlist through the JSON API, on a real server: 50 researchers queue for 10 VMs,
which are then freed one by one; the first 10 in queue order get them, with no VM or
researcher twice and no place skipped, and the others' places move up."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from lablink_core.waitlist import Waitlist
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd


def ask(api: RunningServer, email: str, *, wait: bool) -> httpx.Response:
    code = "4/0" + "".join(ch for ch in email.split("@")[0] if ch.isalnum())
    body = {"email": email, "crd_command": crd(code), "wait": wait}
    return httpx.post(f"{api.url}/request_vm", json=body, timeout=30)


def ticket(api: RunningServer, token: str, wait: float = 0) -> dict[str, Any]:
    reply = httpx.get(f"{api.url}/api/waitlist/{token}", params={"wait": wait}, timeout=30)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_fifty_queue_for_ten_vms_freed_one_by_one(
    polling_vms: Callable[[int], list[str]], api: RunningServer
) -> None:
    polling_vms(10)
    holders = [ask(api, f"holder{i}@example.org", wait=False).json() for i in range(10)]
    assert len({h["hostname"] for h in holders}) == 10
    assert ask(api, "late@example.org", wait=False).status_code == 503

    queued = []
    for i in range(50):
        reply = ask(api, f"q{i:02d}@example.org", wait=True)
        assert reply.status_code == 202, reply.text
        assert reply.json()["position"] == i + 1 and reply.json()["state"] == "waiting"
        queued.append(reply.json()["ticket"])
    # While they wait, nobody jumps the queue: a plain request gets no VM even after a release.
    told: list[str] = []
    for i, held in enumerate(holders):
        email = f"holder{i}@example.org"
        release = {"email": email, "seat_token": held["seat_token"]}
        assert httpx.post(f"{api.url}/release_vm", json=release, timeout=30).status_code == 200
        answer = ticket(api, queued[i], wait=10)
        assert answer["state"] == "assigned", (i, answer)
        told.append(answer["hostname"])
        if i + 1 < len(queued):
            assert ticket(api, queued[i + 1])["position"] == 1  # the next one is now first
    assert sorted(told) == sorted(h["hostname"] for h in holders)  # each VM once
    assert [ticket(api, t)["position"] for t in queued[10:]] == list(range(1, 41))
    engine = create_engine(api.database_url)
    with engine.connect() as connection:
        held = dict(connection.execute(text("SELECT hostname, user_email FROM vms")).all())
    engine.dispose()
    assert Counter(held.values()).most_common(1)[0][1] == 1  # no researcher twice
    assert {held[host] for host in told} == {f"q{i:02d}@example.org" for i in range(10)}


def test_a_queued_ticket_becomes_the_seat_token(
    polling_vms: Callable[[int], list[str]], api: RunningServer
) -> None:
    polling_vms(1)
    first = ask(api, "first@example.org", wait=False).json()
    queued = ask(api, "second@example.org", wait=True).json()
    release = {"email": "first@example.org", "seat_token": first["seat_token"]}
    httpx.post(f"{api.url}/release_vm", json=release, timeout=30)
    assert ticket(api, queued["ticket"], wait=10)["state"] == "assigned"
    again = {"email": "second@example.org", "seat_token": queued["ticket"]}
    assert httpx.post(f"{api.url}/release_vm", json=again, timeout=30).status_code == 200


def test_an_entry_nobody_asks_about_expires_and_a_full_queue_says_so(
    polling_vms: Callable[[int], list[str]],
    api: RunningServer,
) -> None:
    polling_vms(1)
    ask(api, "holder@example.org", wait=False)
    gone = ask(api, "gone@example.org", wait=True).json()
    engine = create_engine(api.database_url)
    waitlist = Waitlist(engine, "vms", expire_seconds=60, max_length=2)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
    assert waitlist.expire(later) == 1
    assert ticket(api, gone["ticket"])["state"] == "expired"
    ask(api, "a@example.org", wait=True)
    ask(api, "b@example.org", wait=True)
    engine.dispose()
    duplicate = ask(api, "a@example.org", wait=True)
    assert duplicate.status_code == 409 and "already in the queue" in duplicate.text
    admin = httpx.get(f"{api.url}/api/waitlist", auth=api.admin_auth(), timeout=10).json()
    assert [entry["email"] for entry in admin["waiting"]] == ["a@example.org", "b@example.org"]
    assert httpx.get(f"{api.url}/api/waitlist", timeout=10).status_code == 401
