"""Malformed requests of every kind get a 4xx with a message; the server keeps serving."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import CRD

GOOD = "ada@example.org"
MB = "x" * (1024 * 1024)


@dataclass(frozen=True)
class Bad:
    """One malformed request and the status it must get."""

    path: str
    status: int
    json: object = None
    content: bytes | None = None
    content_type: str | None = None
    credential_for: str | None = "vm-a"  # whose credential goes in the header (VM paths)
    headers: dict[str, str] = field(default_factory=dict)


def crd_case(command: str) -> Bad:
    return Bad("/request_vm", 400, json={"email": GOOD, "crd_command": command})


def email_case(email: object) -> Bad:
    return Bad("/request_vm", 400, json={"email": email, "crd_command": CRD})


CASES: dict[str, Bad] = {
    "no fields": Bad("/request_vm", 400, json={}),
    "no email": Bad("/request_vm", 400, json={"crd_command": CRD}),
    "no command": Bad("/request_vm", 400, json={"email": GOOD}),
    "email not text": email_case(42),
    "email list": email_case(["a@b.org"]),
    "email no at": email_case("ada.example.org"),
    "email two ats": email_case("ada@@example.org"),
    "email spaces": email_case("ada lovelace@example.org"),
    "email no domain dot": email_case("ada@localhost"),
    "email newline": email_case("ada@example.org\nBcc: x@y.org"),
    "email too long": email_case("a" * 300 + "@example.org"),
    "email html": email_case("<script>@example.org"),
    "crd semicolon": crd_case(CRD + "; rm -rf /"),
    "crd and-and": crd_case(CRD + " && curl x"),
    "crd or-or": crd_case(CRD + " || true"),
    "crd pipe": crd_case(CRD + " | sh"),
    "crd backticks": crd_case(CRD.replace("4/0AbCdEf_123-xyz", "`id`")),
    "crd dollar-paren": crd_case(CRD.replace("4/0AbCdEf_123-xyz", "$(id)")),
    "crd name other subshell": crd_case(CRD.replace("$(hostname)", "$(whoami)")),
    "crd embedded newline": crd_case(CRD.replace(" --redirect", "\n--redirect")),
    "crd unknown flag": crd_case(CRD + " --pin=123456"),
    "crd two codes": crd_case(CRD + ' --code="4/second"'),
    "crd no code": crd_case(CRD.replace('--code="4/0AbCdEf_123-xyz" ', "")),
    "crd other program": crd_case(CRD.replace("start-host", "evil-host")),
    "crd other redirect": crd_case(CRD.replace("remotedesktop.google.com", "evil.example")),
    "crd redirect gt": crd_case(CRD + " > /etc/passwd"),
    "crd empty": crd_case(""),
    "crd not text": Bad("/request_vm", 400, json={"email": GOOD, "crd_command": {"code": 1}}),
    "crd 1 MB": Bad("/request_vm", 413, json={"email": GOOD, "crd_command": MB}),
    "body 1 MB": Bad("/request_vm", 413, content=MB.encode(), content_type="application/json"),
    "json broken": Bad("/request_vm", 400, content=b'{"email": ', content_type="application/json"),
    "json array": Bad("/request_vm", 400, content=b"[1, 2]", content_type="application/json"),
    "json not utf8": Bad("/request_vm", 400, content=b"\xff\xfe", content_type="application/json"),
    "xml body": Bad("/request_vm", 415, content=b"<email/>", content_type="application/xml"),
    "text body": Bad("/request_vm", 415, content=b"email=a", content_type="text/plain"),
    "form field twice": Bad(
        "/request_vm",
        400,
        content=b"email=a@b.org&email=c@d.org&crd_command=x",
        content_type="application/x-www-form-urlencoded",
    ),
    "seat token too long": Bad(
        "/request_vm", 400, json={"email": GOOD, "crd_command": CRD, "seat_token": "t" * 5000}
    ),
    "release without token": Bad("/release_vm", 400, json={"email": GOOD}),
    "release bad email": Bad("/release_vm", 400, json={"email": "nope", "seat_token": "x"}),
    "startup no credential": Bad(
        "/vm_startup", 401, json={"hostname": "vm-a"}, credential_for=None
    ),
    "startup other vm's credential": Bad(
        "/vm_startup", 401, json={"hostname": "vm-a"}, credential_for="vm-b"
    ),
    "startup wrong credential": Bad(
        "/vm_startup",
        401,
        json={"hostname": "vm-a"},
        credential_for=None,
        headers={"Authorization": "Bearer lvm1.forged"},
    ),
    "startup no hostname": Bad("/vm_startup", 400, json={}),
    "startup bad hostname": Bad("/vm_startup", 400, json={"hostname": "vm a;rm"}),
    "startup hostname not text": Bad("/vm_startup", 400, json={"hostname": 7}),
    "startup bad generation": Bad("/vm_startup", 400, json={"hostname": "vm-a", "generation": -1}),
    "startup generation text": Bad(
        "/vm_startup", 400, json={"hostname": "vm-a", "generation": "1"}
    ),
    "startup 1 MB": Bad("/vm_startup", 413, content=MB.encode(), content_type="application/json"),
    "status unknown": Bad("/api/vm/status", 400, json={"hostname": "vm-a", "status": "exploded"}),
    "status in_use text": Bad(
        "/api/vm/status", 400, json={"hostname": "vm-a", "status": "ready", "in_use": "yes"}
    ),
    "status message huge": Bad(
        "/api/vm/status", 400, json={"hostname": "vm-a", "status": "error", "message": "m" * 5000}
    ),
    "status other vm": Bad(
        "/api/vm/status", 401, json={"hostname": "vm-a", "status": "ready"}, credential_for="vm-b"
    ),
    "status never issued": Bad(
        "/api/vm/status",
        401,
        json={"hostname": "vm-zzz", "status": "ready"},
        credential_for=None,
        headers={"Authorization": "Bearer lvm2.never-issued-by-this-server"},
    ),
    "startup never issued": Bad(
        "/vm_startup",
        401,
        json={"hostname": "vm-zzz", "generation": 0},
        credential_for=None,
        headers={"Authorization": "Bearer lvm2.never-issued-by-this-server"},
    ),
    "admin list anonymous": Bad("/api/vms", 401, json={}),
    "admin release anonymous": Bad("/api/vms/vm-a/release", 401, json={}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_malformed_request_gets_a_4xx_with_a_message(api: RunningServer, case: Bad) -> None:
    headers = dict(case.headers)
    if case.path in ("/vm_startup", "/api/vm/status") and case.credential_for:
        headers["Authorization"] = f"Bearer {api.credential(case.credential_for)}"
    if case.content_type:
        headers["Content-Type"] = case.content_type
    kwargs: dict[str, object] = (
        {"content": case.content} if case.content is not None else {"json": case.json}
    )
    reply = httpx.post(f"{api.url}{case.path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]
    assert reply.status_code == case.status, reply.text
    error = reply.json()["error"]
    assert error["message"] and "Traceback" not in reply.text
    assert httpx.get(f"{api.url}/api/health", timeout=10).status_code == 200
    held = [
        v
        for v in httpx.get(f"{api.url}/api/vms", auth=api.admin_auth()).json()["vms"]
        if v["user_email"]
    ]
    assert held == []


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
