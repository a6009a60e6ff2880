"""The agent's credential: rotation, the credential file, the 401 fallback, enrolment."""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

import pytest

from lablink_core.client.agent import AgentConfig, AllocatorRejected, VMAgent
from lablink_core.client.credential_store import write_private_file
from lablink_core.client.runners import DryRunCrdRunner
from lablink_core.client.transport import Response, TransportError
from lablink_core.errors import InvalidInput, Unauthorized
from tests.unit.test_client_agent import (
    CREDENTIAL,
    HOST,
    MACHINE,
    NOTHING,
    URL,
    FakeTransport,
    Script,
    error,
    task,
)

ROTATED = "lvm2.rotated-Kq9dSECRET"
RE_ENROLLED = "lvm2.reenrolled-Pz3SECRET"
ENROLMENT = "lve1.enrol-Mt4SECRET"


def agent_for(
    tmp_path: Path, script: list[Script], *, credential: str = CREDENTIAL, **config: object
) -> tuple[VMAgent, FakeTransport]:
    settings: dict[str, object] = {
        "heartbeat_seconds": 3600.0,
        "credential_file": tmp_path / "state" / "credential",
    } | config
    cfg = AgentConfig(URL, HOST, credential, True, tmp_path / "record.jsonl", **settings)  # type: ignore[arg-type]
    transport = FakeTransport(list(script), threading.Event())
    agent = VMAgent(
        cfg,
        transport=transport,
        runner=DryRunCrdRunner(tmp_path / "record.jsonl"),
        sleep=lambda _: None,
        random=lambda: 0.5,
        probe=lambda: MACHINE,
    )
    return agent, transport


def bearers(transport: FakeTransport, path: str) -> list[str | None]:
    """The distinct Authorization headers sent to ``path``, in order of first use."""
    return list(dict.fromkeys(auth for sent, _, auth in transport.sent if sent == path))


def test_rotation_switches_every_later_call_and_saves_the_file_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rotating = Response(204, None, {})
    agent, transport = agent_for(
        tmp_path,
        [Response(200, {**(task(1).body or {}), "credential": ROTATED}, {}), rotating, NOTHING],
    )
    agent.run(transport.stop)
    assert bearers(transport, "/vm_startup") == [f"Bearer {CREDENTIAL}", f"Bearer {ROTATED}"]
    # The "connected" report right after the task already uses the new credential.
    assert bearers(transport, "/api/vm/status") == [f"Bearer {ROTATED}"]
    saved = tmp_path / "state" / "credential"
    assert saved.read_text().strip() == ROTATED
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert [p.name for p in saved.parent.iterdir()] == ["credential"]  # no temporary left
    assert ROTATED not in caplog.text and CREDENTIAL not in caplog.text
    assert ROTATED not in repr(agent.credentials) + repr(agent.config)


def test_a_status_reply_can_rotate_too(tmp_path: Path) -> None:
    agent, transport = agent_for(tmp_path, [task(1), NOTHING])
    transport.side_answers["/api/vm/status"] = [
        Response(200, {"ok": True, "credential": ROTATED}, {})
    ]
    agent.run(transport.stop)
    assert bearers(transport, "/vm_startup")[-1] == f"Bearer {ROTATED}"
    assert (tmp_path / "state" / "credential").read_text().strip() == ROTATED


def test_the_file_wins_at_start(tmp_path: Path) -> None:
    write_private_file(tmp_path / "state" / "credential", ROTATED)
    agent, transport = agent_for(tmp_path, [NOTHING])
    agent.run(transport.stop)
    assert bearers(transport, "/vm_startup") == [f"Bearer {ROTATED}"]


def test_401_with_the_file_credential_tries_the_environment_once_then_keeps_it(
    tmp_path: Path,
) -> None:
    write_private_file(tmp_path / "state" / "credential", "lvm2.stale-one")
    agent, transport = agent_for(
        tmp_path, [error(401, "unknown VM credential"), NOTHING], credential=RE_ENROLLED
    )
    agent.run(transport.stop)
    assert bearers(transport, "/vm_startup") == ["Bearer lvm2.stale-one", f"Bearer {RE_ENROLLED}"]
    # Accepted: the file now holds the working credential, so the next start skips the 401.
    assert (tmp_path / "state" / "credential").read_text().strip() == RE_ENROLLED


def test_second_401_is_fatal_and_names_no_secret(tmp_path: Path) -> None:
    write_private_file(tmp_path / "state" / "credential", "lvm2.stale-one")
    agent, transport = agent_for(tmp_path, [error(401, "no"), error(401, "no")])
    with pytest.raises(Unauthorized) as caught:
        agent.run(transport.stop)
    assert bearers(transport, "/vm_startup") == ["Bearer lvm2.stale-one", f"Bearer {CREDENTIAL}"]
    assert "lvm2.stale-one" not in str(caught.value) and CREDENTIAL not in str(caught.value)


def test_401_without_a_file_is_fatal_at_once(tmp_path: Path) -> None:
    agent, transport = agent_for(tmp_path, [error(401, "no")])
    with pytest.raises(Unauthorized, match="check LABLINK_VM_CREDENTIAL"):
        agent.run(transport.stop)
    assert [path for path, _, _ in transport.sent] == ["/vm_startup"]


def test_401_for_a_credential_rotated_in_flight_is_retried_with_the_new_one(
    tmp_path: Path,
) -> None:
    def rotated_meanwhile() -> Response:
        # A status reply rotated the credential while this poll was on its way.
        agent.credentials.replace(ROTATED, "rotation")
        return error(401, "old credential")

    agent, transport = agent_for(tmp_path, [rotated_meanwhile, NOTHING])
    agent.run(transport.stop)  # no Unauthorized
    assert bearers(transport, "/vm_startup") == [f"Bearer {CREDENTIAL}", f"Bearer {ROTATED}"]


def test_malformed_rotation_is_ignored(tmp_path: Path) -> None:
    bad = Response(200, {**(task(1).body or {}), "credential": "two words\r\n"}, {})
    agent, transport = agent_for(tmp_path, [bad, NOTHING])
    agent.run(transport.stop)
    assert bearers(transport, "/vm_startup") == [f"Bearer {CREDENTIAL}"]


def test_unwritable_credential_file_keeps_the_rotation_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    rotating = Response(200, {**(task(1).body or {}), "credential": ROTATED}, {})
    agent, transport = agent_for(tmp_path, [rotating, NOTHING], credential_file=blocker / "cred")
    agent.run(transport.stop)
    assert bearers(transport, "/vm_startup")[-1] == f"Bearer {ROTATED}"


def test_enrolment_exchanges_the_token_for_a_saved_credential(tmp_path: Path) -> None:
    agent, transport = agent_for(tmp_path, [NOTHING], credential="", enrolment_token=ENROLMENT)
    transport.side_answers["/api/vm/enroll"] = [
        TransportError("refused"),
        Response(503, None, {}),
        Response(200, {"hostname": HOST, "credential": ROTATED}, {}),
    ]
    agent.run(transport.stop)
    enrolments = [(body, auth) for path, body, auth in transport.sent if path == "/api/vm/enroll"]
    assert enrolments == [({"hostname": HOST, "enrolment_token": ENROLMENT}, None)] * 3
    assert bearers(transport, "/vm_startup") == [f"Bearer {ROTATED}"]
    assert (tmp_path / "state" / "credential").read_text().strip() == ROTATED


def test_enrolment_is_skipped_when_a_credential_is_saved(tmp_path: Path) -> None:
    write_private_file(tmp_path / "state" / "credential", ROTATED)
    agent, transport = agent_for(tmp_path, [NOTHING], credential="", enrolment_token=ENROLMENT)
    agent.run(transport.stop)
    assert {path for path, _, _ in transport.sent} == {"/vm_startup"}


def test_refused_enrolment_is_fatal(tmp_path: Path) -> None:
    agent, transport = agent_for(tmp_path, [], credential="", enrolment_token=ENROLMENT)
    transport.side_answers["/api/vm/enroll"] = [error(401, "unknown enrolment token")]
    with pytest.raises(Unauthorized, match="LABLINK_ENROLMENT_TOKEN"):
        agent.run(transport.stop)


def test_no_credential_at_all_is_refused() -> None:
    with pytest.raises(InvalidInput, match="credential is required"):
        AgentConfig(URL, HOST, "")


def test_a_400_poll_is_still_fatal(tmp_path: Path) -> None:
    agent, transport = agent_for(tmp_path, [error(400, "bad")])
    with pytest.raises(AllocatorRejected):
        agent.run(transport.stop)
