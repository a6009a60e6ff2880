"""VM log shipping: buffers, file tails, redaction, and what actually leaves the VM."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from lablink_core.client.agent import AgentConfig, VMAgent
from lablink_core.client.redaction import MARK, Redactor
from lablink_core.client.runners import DryRunCrdRunner
from lablink_core.client.transport import Response
from lablink_core.client.vm_logs import FileTail, LineBuffer, LogShipper
from tests.unit.test_client_agent import (
    CODE,
    CREDENTIAL,
    HOST,
    MACHINE,
    NOTHING,
    PIN,
    URL,
    FakeTransport,
    Script,
    task,
)

ROTATED = "lvm2.rotated-Wx2SECRET"
ENROLMENT = "lve1.enrolment-Yy7SECRET"


def test_redactor_removes_known_secrets_and_secret_shaped_text() -> None:
    redact = Redactor()
    redact.learn("s3cret-value", None, "", "abc")  # too short to be worth hiding: "abc"
    lines = {
        "token s3cret-value here": f"token {MARK} here",
        "start-host --code=4/0AbCdEf123 --pin=123456": f"start-host --code={MARK} --pin={MARK}",
        "using lvm2.AbC_d-9 and lvm1.zz and lve1.q": f"using {MARK} and {MARK} and {MARK}",
        "Authorization: Bearer abc.def": f"Authorization: Bearer {MARK}",
        '{"pin": "998877", "code": "x"}': f'{{"pin": "{MARK}", "code": "{MARK}"}}',
        "refresh 1//0gAbCdEfGh": f"refresh {MARK}",
        "abc stays": "abc stays",
    }
    for line, expected in lines.items():
        assert redact(line) == expected


def test_line_buffer_is_bounded_and_gives_back_in_order() -> None:
    buffer = LineBuffer(max_lines=3)
    buffer.put(["a", "b", "c", "d"])
    assert buffer.take(2) == ["b", "c"]
    buffer.give_back(["b", "c"])
    assert buffer.take(10) == ["b", "c", "d"]


def test_file_tail_first_look_is_the_last_100_lines_then_only_new_complete_lines(
    tmp_path: Path,
) -> None:
    log = tmp_path / "cloud-init-output.log"
    log.write_text("".join(f"boot {n}\n" for n in range(150)))
    tail = FileTail(lambda: log)
    first = tail.take(500)
    assert first == [f"boot {n}" for n in range(50, 150)]
    with log.open("a") as handle:
        handle.write("late 1\nhalf a li")
    assert tail.take(500) == ["late 1"]
    with log.open("a") as handle:
        handle.write("ne\n")
    assert tail.take(500) == ["half a line"]
    assert tail.take(500) == []


def test_file_tail_follows_a_new_file_from_its_start(tmp_path: Path) -> None:
    current = {"path": tmp_path / "one.log"}
    current["path"].write_text("old\n")
    restarts: list[int] = []
    tail = FileTail(lambda: current["path"], on_new_file=lambda: restarts.append(1))
    assert tail.take(10) == ["old"]
    current["path"] = tmp_path / "two.log"
    current["path"].write_text("".join(f"new {n}\n" for n in range(120)))
    assert len(tail.take(500)) == 120  # a new file is read whole, not just its tail
    assert restarts == [1, 1]


def test_file_tail_of_a_missing_file_yields_nothing(tmp_path: Path) -> None:
    assert FileTail(lambda: tmp_path / "absent").take(10) == []
    assert FileTail(lambda: None).take(10) == []


def test_shipper_caps_redacts_retries_and_stops_when_logs_are_not_taken() -> None:
    buffer = LineBuffer()
    buffer.put([f"line {n}" for n in range(250)] + ["x" * 5000])
    outcomes = [False, True, None]
    sent: list[tuple[str, list[str]]] = []

    def send(source: str, lines: list[str]) -> bool | None:
        sent.append((source, lines))
        return outcomes.pop(0)

    shipper = LogShipper([("agent", buffer)], Redactor(), send)
    shipper.ship()  # refused for now: kept
    shipper.ship()
    assert [len(lines) for _, lines in sent] == [200, 200]
    assert sent[0] == sent[1]
    shipper.ship()  # the allocator takes no logs
    assert not shipper.enabled
    assert len(sent[2][1][-1]) == 2000


def agent_shipping(tmp_path: Path, script: list[Script], **config: object) -> VMAgent:
    settings: dict[str, object] = {"heartbeat_seconds": 0.02} | config
    cfg = AgentConfig(URL, HOST, CREDENTIAL, True, tmp_path / "record.jsonl", **settings)  # type: ignore[arg-type]
    transport = FakeTransport(list(script), threading.Event())
    return VMAgent(
        cfg,
        transport=transport,
        runner=DryRunCrdRunner(tmp_path / "record.jsonl"),
        sleep=lambda _: None,
        probe=lambda: MACHINE,
    )


def wait_for(condition: object, timeout: float = 5.0) -> Response:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)
    return NOTHING


def shipped(transport: FakeTransport) -> list[tuple[str, str]]:
    return [(str(call["source"]), line) for call in transport.logs for line in call["lines"]]  # type: ignore[union-attr]


def test_credential_pin_code_and_tokens_logged_on_the_vm_never_leave_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    boot = tmp_path / "boot.log"
    boot.write_text(f"export LABLINK_VM_CREDENTIAL={CREDENTIAL}\nenrol with {ENROLMENT}\n")

    def leak_then_wait() -> Response:
        noisy = logging.getLogger("lablink_core.client.agent")
        noisy.warning("credential %s, rotated %s, pin %s, code %s", CREDENTIAL, ROTATED, PIN, CODE)
        noisy.warning("ran start-host --code=%s --pin=%s", CODE, PIN)
        return wait_for(lambda: len(shipped(agent._transport)) >= 5)  # type: ignore[attr-defined]

    rotating = Response(200, {**(task(1).body or {}), "credential": ROTATED}, {})
    agent = agent_shipping(
        tmp_path, [rotating, leak_then_wait], boot_log=boot, enrolment_token=ENROLMENT
    )
    transport: FakeTransport = agent._transport  # type: ignore[assignment]
    agent.run(transport.stop)
    lines = shipped(transport)
    assert {source for source, _ in lines} >= {"agent", "boot"}
    assert any("credential [redacted], rotated [redacted]" in line for _, line in lines)
    assert ("boot", "export LABLINK_VM_CREDENTIAL=[redacted]") in lines
    everything = json.dumps([body for _, body, _ in transport.sent])
    for secret in (CREDENTIAL, ROTATED, PIN, CODE, ENROLMENT):
        assert secret not in everything
    assert CODE in caplog.text  # it was really logged on the VM, just never sent


def test_status_messages_are_redacted_and_single_line(tmp_path: Path) -> None:
    def fail_clone(stop: threading.Event) -> str:
        return f"could not clone (git said:\nauth failed for {CREDENTIAL})"

    cfg = AgentConfig(URL, HOST, CREDENTIAL, True, tmp_path / "r.jsonl", heartbeat_seconds=0.02)
    transport = FakeTransport(
        [lambda: wait_for(lambda: len(transport.statuses) >= 2)], threading.Event()
    )
    agent = VMAgent(cfg, transport=transport, probe=lambda: MACHINE, clone=fail_clone)
    agent.run(transport.stop)
    ready = [s for s in transport.statuses if s["status"] == "ready"]
    assert (
        ready and ready[-1]["message"] == "could not clone (git said: auth failed for [redacted])"
    )


def test_a_server_without_the_logs_endpoint_is_asked_once(tmp_path: Path) -> None:
    def log_then_wait_for_beats() -> Response:
        for n in range(5):
            logging.getLogger("lablink_core.client.agent").warning("worth shipping %d", n)
            wait_for(lambda n=n: len(transport.statuses) > n)  # type: ignore[misc]
        return NOTHING

    agent = agent_shipping(tmp_path, [log_then_wait_for_beats])
    transport: FakeTransport = agent._transport  # type: ignore[assignment]
    transport.side_answers["/api/vm/logs"] = [Response(404, None, {})] * 10
    agent.run(transport.stop)
    assert len(transport.statuses) >= 5 and len(transport.logs) == 1
