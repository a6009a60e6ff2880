"""VM credentials belong to a VM's life: each attack of the security review, performed.

- A destroyed VM's old credential brings nothing back (401, no row).
- Under ``reuse``, a released VM's credential rotates: the VM is told the new one in the
  answer to its waiting poll, the previous user's copy stops working and cannot receive the
  next researcher's code.
- Enrolment tokens work once; revoked credentials get 401 on every VM route at once.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.db import make_engine
from lablink_core.enrolment import VMEnrolment
from lablink_core.vms import VMRegistry
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import crd

VM_ROUTES = (
    ("/vm_startup", {"generation": 0}),
    ("/api/vm/status", {"status": "ready"}),
    ("/api/vm/logs", {"source": "agent", "lines": ["hello"]}),
    ("/api/heartbeat", {}),
)


@pytest.fixture
def enrolment(api: RunningServer) -> Iterator[VMEnrolment]:
    """Credentials on the running server's database (as its admin CLI would issue them)."""
    engine: Engine = make_engine(api.database_url, pool_size=2)
    yield VMEnrolment(engine, "vms", VMCredentials.from_store(SecretStore(engine)))
    engine.dispose()


def poll(api: RunningServer, hostname: str, credential: str, generation: int) -> httpx.Response:
    return httpx.post(
        f"{api.url}/vm_startup",
        json={"hostname": hostname, "generation": generation},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )


def refused_everywhere(api: RunningServer, hostname: str, credential: str) -> bool:
    headers = {"Authorization": f"Bearer {credential}"}
    statuses = []
    for path, body in VM_ROUTES:
        key = "vm_id" if path == "/api/heartbeat" else "hostname"
        reply = httpx.post(
            f"{api.url}{path}", json={key: hostname, **body}, headers=headers, timeout=30
        )
        statuses.append(reply.status_code)
    return statuses == [401] * len(VM_ROUTES)


def rows(api: RunningServer) -> list[str]:
    reply = httpx.get(f"{api.url}/api/vms", auth=api.admin_auth(), timeout=10)
    return [vm["hostname"] for vm in reply.json()["vms"]]


def request(api: RunningServer, email: str, code: str) -> dict[str, Any]:
    reply = httpx.post(
        f"{api.url}/request_vm", json={"email": email, "crd_command": crd(code)}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_a_destroyed_vms_credential_brings_nothing_back(api: RunningServer) -> None:
    credential = api.credential("vm-doomed")
    assert poll(api, "vm-doomed", credential, 0).status_code == 204
    engine = make_engine(api.database_url, pool_size=1)
    VMRegistry(engine, "vms").remove(["vm-doomed"])  # what a destroy does to its rows
    engine.dispose()
    assert refused_everywhere(api, "vm-doomed", credential)
    assert rows(api) == []  # nothing registered from it, nothing for a researcher to get
    assert (
        httpx.post(
            f"{api.url}/request_vm", json={"email": "x@example.org", "crd_command": crd()}
        ).status_code
        == 503
    )


def test_reuse_rotates_the_credential_so_the_previous_user_gets_nothing(
    api: RunningServer,
) -> None:
    old = api.credential("vm-shared")
    assert poll(api, "vm-shared", old, 0).status_code == 204
    first = request(api, "first@example.org", "4/0First")
    task = poll(api, "vm-shared", old, 0).json()
    assert task["code"] == "4/0First" and "credential" not in task

    # The VM waits on its poll; the researcher gives the VM back.
    box: dict[str, httpx.Response] = {}
    waiting = threading.Thread(target=lambda: box.update(r=poll(api, "vm-shared", old, 1)))
    waiting.start()
    released = httpx.post(
        f"{api.url}/release_vm",
        json={"email": "first@example.org", "seat_token": first["seat_token"]},
        timeout=30,
    )
    assert released.status_code == 200
    waiting.join(timeout=30)
    answer = box["r"].json()
    new = answer["credential"]
    assert answer["assigned"] is False and new != old

    # Until the VM has used its new credential, it is not handed to anyone; once it has,
    # the previous user's copy is dead everywhere.
    assert httpx.get(f"{api.url}/api/health", timeout=10).json()["free_vms"] == 0
    assert poll(api, "vm-shared", new, answer["generation"]).status_code == 204
    assert refused_everywhere(api, "vm-shared", old)
    second = request(api, "second@example.org", "4/0Second")
    assert second["hostname"] == "vm-shared"
    assert poll(api, "vm-shared", old, 0).status_code == 401  # cannot receive 4/0Second
    assert poll(api, "vm-shared", new, answer["generation"]).json()["code"] == "4/0Second"


def test_a_rotation_the_vm_missed_is_answered_again_but_never_with_a_task(
    api: RunningServer,
) -> None:
    old = api.credential("vm-busy")
    assert poll(api, "vm-busy", old, 0).status_code == 204
    seat = request(api, "busy@example.org", "4/0Busy")
    generation = poll(api, "vm-busy", old, 0).json()["generation"]
    # Released while the VM is not waiting (starting CRD, say): it missed the answer.
    released = {"email": "busy@example.org", "seat_token": seat["seat_token"]}
    assert httpx.post(f"{api.url}/release_vm", json=released, timeout=30).status_code == 200
    again = poll(api, "vm-busy", old, generation).json()
    assert set(again) == {"hostname", "assigned", "generation", "credential"}
    assert again["assigned"] is False and "code" not in again and "pin" not in again
    assert poll(api, "vm-busy", again["credential"], again["generation"]).status_code == 204
    assert poll(api, "vm-busy", old, 0).status_code == 401  # acknowledged: the old one is dead


def test_an_enrolment_token_is_exchanged_once(api: RunningServer, enrolment: VMEnrolment) -> None:
    engine = make_engine(api.database_url, pool_size=1)
    VMRegistry(engine, "vms").add_booting(["vm-new"], provider="aws")
    engine.dispose()
    token = enrolment.issue_enrolment(["vm-new"])["vm-new"]
    body = {"hostname": "vm-new", "enrolment_token": token}
    first = httpx.post(f"{api.url}/api/vm/enroll", json=body, timeout=30)
    assert first.status_code == 200
    credential = first.json()["credential"]
    assert poll(api, "vm-new", credential, 0).status_code == 204
    again = httpx.post(f"{api.url}/api/vm/enroll", json=body, timeout=30)
    assert again.status_code == 401  # user_data read later gives nothing usable
    other = httpx.post(
        f"{api.url}/api/vm/enroll", json={"hostname": "vm-other", "enrolment_token": token}
    )
    assert other.status_code == 401


def test_a_revoked_credential_is_refused_at_once_even_mid_poll(api: RunningServer) -> None:
    credential = api.credential("vm-revoked")
    assert poll(api, "vm-revoked", credential, 0).status_code == 204
    box: dict[str, httpx.Response] = {}
    waiting = threading.Thread(target=lambda: box.update(r=poll(api, "vm-revoked", credential, 0)))
    waiting.start()
    revoked = httpx.delete(f"{api.url}/api/vms/vm-revoked", auth=api.admin_auth(), timeout=10)
    assert revoked.status_code == 200 and revoked.json()["revoked"] == "vm-revoked"
    waiting.join(timeout=10)
    assert box["r"].status_code == 401  # not left waiting for a code it could receive
    assert refused_everywhere(api, "vm-revoked", credential)


def test_lablink_vm_revoke_from_the_command_line(api: RunningServer) -> None:
    credential = api.credential("vm-cli")
    assert poll(api, "vm-cli", credential, 0).status_code == 204
    env = {**api.env(), "DATABASE_URL": api.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "lablink_core.cli", "vm", "revoke", "vm-cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert refused_everywhere(api, "vm-cli", credential)
    engine = make_engine(api.database_url, pool_size=1)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT credential_hash FROM vms WHERE hostname = 'vm-cli'")
        ).one()
    engine.dispose()
    assert row.credential_hash is None
