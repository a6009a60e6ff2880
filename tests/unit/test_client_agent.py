"""Unit tests for the VM agent (lablink_core.client), against a scripted fake transport."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lablink_core.client import __main__ as cli
from lablink_core.client.agent import AgentConfig, AllocatorRejected, VMAgent
from lablink_core.client.machine import MachineState
from lablink_core.client.runners import DryRunCrdRunner
from lablink_core.client.transport import Backoff, Response, TransportError, UrllibTransport
from lablink_core.crd import GOOGLE_REDIRECT_URL, START_HOST
from lablink_core.errors import InvalidInput, Unauthorized

URL = "http://allocator.test:8000"
HOST = "vm-1"
CREDENTIAL = "vmcred-Zq81xSECRET"
PIN = "483920"
CODE = "4/0AbCD_ef-12"

Script = Response | Exception | Callable[[], Response]


def task(generation: int, code: str = CODE, **extra: object) -> Response:
    body: dict[str, object] = {
        "hostname": HOST,
        "assigned": True,
        "generation": generation,
        "crd_command": f"DISPLAY= {START_HOST} --code={code}",
        "code": code,
        "redirect_url": GOOGLE_REDIRECT_URL,
        "pin": PIN,
    }
    return Response(200, body | extra, {})


def released(generation: int) -> Response:
    return Response(200, {"hostname": HOST, "assigned": False, "generation": generation}, {})


def error(status: int, message: str = "nope", headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, {"error": {"code": "x", "message": message}}, headers or {})


NOTHING = Response(204, None, {})


def argv_for(code: str) -> list[str]:
    return [START_HOST, f"--code={code}", f"--redirect-url={GOOGLE_REDIRECT_URL}", f"--name={HOST}"]


MACHINE = MachineState(
    health="Tesla T4, 40, 3 %",
    gpu_state="healthy",
    gpu_utilization=3,
    crd_active=False,
    boot_id="5c2e0f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
    disk_free_pct=61,
)


@dataclass
class FakeTransport:
    """Answers /vm_startup from a script; sets `stop` once the script runs out.

    Status reports and log uploads are recorded and answered from `side_answers` (by path),
    else 200; `sent` keeps every request's path, body and Authorization header in order.
    """

    script: list[Script]
    stop: threading.Event
    polls: list[dict[str, object]] = field(default_factory=list)
    statuses: list[dict[str, object]] = field(default_factory=list)
    logs: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sent: list[tuple[str, dict[str, object], str | None]] = field(default_factory=list)
    side_answers: dict[str, list[Script]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post_json(
        self, url: str, body: Mapping[str, object], *, headers: Mapping[str, str], timeout: float
    ) -> Response:
        path = url.removeprefix(URL)
        with self.lock:
            self.headers.append(dict(headers))
            self.sent.append((path, json.loads(json.dumps(body)), headers.get("Authorization")))
            if path != "/vm_startup":
                kept = {"/api/vm/status": self.statuses, "/api/vm/logs": self.logs}.get(path)
                if kept is not None:
                    kept.append(dict(body))
                queued = self.side_answers.get(path)
                side = queued.pop(0) if queued else Response(200, {"ok": True}, {})
                return _answer(side)
            assert timeout == 75
            assert timeout == 75
            self.polls.append(dict(body))
            item = self.script.pop(0) if self.script else None
        if item is None:
            self.stop.set()
            return NOTHING
        return _answer(item)


def _answer(item: Script) -> Response:
    if isinstance(item, Exception):
        raise item
    return item() if callable(item) else item


@dataclass
class Harness:
    agent: VMAgent
    transport: FakeTransport
    runner: DryRunCrdRunner
    sleeps: list[float]
    stop: threading.Event

    def run(self) -> None:
        self.agent.run(self.stop)

    def records(self) -> list[dict[str, object]]:
        lines = self.runner.record_path.read_text().splitlines()
        return [json.loads(line) for line in lines]

    def reported(self) -> list[tuple[object, object]]:
        return [(s["status"], s["in_use"]) for s in self.transport.statuses]


def make(
    tmp_path: Path,
    script: list[Script],
    *,
    random: Callable[[], float] = lambda: 0.5,
    **config: object,
) -> Harness:
    settings: dict[str, object] = {"heartbeat_seconds": 3600.0, "max_backoff": 30.0} | config
    cfg = AgentConfig(URL, HOST, CREDENTIAL, True, tmp_path / "record.jsonl", **settings)  # type: ignore[arg-type]
    stop = threading.Event()
    transport = FakeTransport(list(script), stop)
    runner = DryRunCrdRunner(tmp_path / "record.jsonl")
    sleeps: list[float] = []
    agent = VMAgent(
        cfg,
        transport=transport,
        runner=runner,
        sleep=sleeps.append,
        random=random,
        probe=lambda: MACHINE,
    )
    return Harness(agent, transport, runner, sleeps, stop)


def test_first_poll_204_then_task_starts_exact_argv(tmp_path: Path) -> None:
    h = make(tmp_path, [NOTHING, task(1)])
    h.run()
    assert h.runner.started == [argv_for(CODE)]
    assert all(type(arg) is str for arg in h.runner.started[0])
    assert h.reported() == [("connected", True)]
    assert [p["generation"] for p in h.transport.polls] == [0, 0, 1]
    assert h.transport.polls[0] == {"hostname": HOST, "generation": 0}
    assert h.transport.headers[0]["Authorization"] == f"Bearer {CREDENTIAL}"
    assert h.sleeps == []
    start, stop = h.records()
    assert start["event"] == "start" and start["argv"] == argv_for(CODE)
    assert (start["code"], start["pin"]) == (CODE, PIN)
    assert not any(PIN in arg for arg in start["argv"])  # the PIN travels apart from argv
    assert stop["event"] == "stop"  # run() stops the CRD process on the way out
    assert not h.runner.running


def test_new_generation_restarts_runner_with_new_code(tmp_path: Path) -> None:
    h = make(tmp_path, [task(1), task(2, code="4/0NewCode")])
    h.run()
    assert h.runner.started == [argv_for(CODE), argv_for("4/0NewCode")]
    events = [(r["event"], r["code"]) for r in h.records()]
    assert events == [
        ("start", CODE),
        ("stop", CODE),
        ("start", "4/0NewCode"),
        ("stop", "4/0NewCode"),
    ]
    assert h.reported() == [("connected", True), ("connected", True)]
    assert h.agent.generation == 2


def test_release_stops_runner_and_reports_ready(tmp_path: Path) -> None:
    seen: list[bool] = []

    def after_release() -> Response:
        seen.append(h.runner.running)
        return NOTHING

    h = make(tmp_path, [task(1), released(2), after_release])
    h.run()
    assert seen == [False]
    assert h.reported() == [("connected", True), ("ready", False)]
    assert [r["event"] for r in h.records()] == ["start", "stop"]
    assert [p["generation"] for p in h.transport.polls] == [0, 1, 2, 2]


def test_stale_generation_is_ignored_with_backoff(tmp_path: Path) -> None:
    h = make(tmp_path, [task(3), task(3)])
    h.run()
    assert h.runner.started == [argv_for(CODE)]
    assert len(h.sleeps) == 1


def test_401_is_fatal_with_clear_error(tmp_path: Path) -> None:
    h = make(tmp_path, [error(401, "unknown VM credential")])
    with pytest.raises(Unauthorized) as caught:
        h.run()
    assert "401" in str(caught.value) and "unknown VM credential" in str(caught.value)
    assert CREDENTIAL not in str(caught.value)
    assert h.runner.started == [] and h.sleeps == []


def test_400_is_fatal(tmp_path: Path) -> None:
    h = make(tmp_path, [error(400, "generation must be an integer")])
    with pytest.raises(AllocatorRejected, match="400: generation must be an integer"):
        h.run()


def test_outage_retries_with_growing_jittered_capped_delays(tmp_path: Path) -> None:
    jitter = iter([0.9, 0.1, 0.8, 0.3, 0.99, 0.5, 0.7, 0.2])
    down: list[Script] = [TransportError("Connection refused")] * 4
    down += [error(502), error(503), TransportError("timed out"), error(500)]
    h = make(tmp_path, [*down, NOTHING], random=jitter.__next__, max_backoff=4.0)
    h.run()
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    factors = [0.9, 0.1, 0.8, 0.3, 0.99, 0.5, 0.7, 0.2]
    assert h.sleeps == pytest.approx([c * f for c, f in zip(ceilings, factors, strict=True)])
    assert h.runner.started == []


def test_503_retry_after_is_honoured_and_success_resets(tmp_path: Path) -> None:
    busy = error(503, "busy", {"Retry-After": "7"})
    h = make(tmp_path, [busy, NOTHING, TransportError("refused")])
    h.run()
    assert h.sleeps == [7.0, 0.25]  # back to the first step after the 204


def test_backoff_full_jitter_stays_within_the_ceiling() -> None:
    import random

    rng = random.Random(4)
    backoff = Backoff(initial=0.5, max_delay=30.0, random=rng.random)
    delays = [backoff.next_delay() for _ in range(40)]
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(40)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    assert max(delays) <= 30.0 and max(delays[10:]) > 15.0
    assert backoff.next_delay(retry_after=1e9) == 300.0  # a silly Retry-After is capped


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        pytest.param({"code": "4/x; rm -rf /"}, "';'", id="shell-code"),
        pytest.param({"code": "4/x$(reboot)"}, "'$'", id="substitution"),
        pytest.param({"redirect_url": "https://evil.example/"}, "redirect-url", id="url"),
        pytest.param({"pin": "12; id"}, "6 to 12 digits", id="pin"),
        pytest.param({"pin": None}, "pin is missing", id="no-pin"),
        pytest.param({"code": ["4/0Ab"]}, "code is missing", id="code-list"),
    ],
)
def test_malicious_task_is_refused(tmp_path: Path, changes: dict[str, object], word: str) -> None:
    bad = task(1)
    assert bad.body is not None
    h = make(tmp_path, [Response(200, bad.body | changes, {})])
    h.run()
    assert h.runner.started == []
    assert not h.runner.record_path.exists()
    assert h.reported() == [("error", True)]
    message = str(h.transport.statuses[0]["message"])
    assert message.startswith("refused CRD task") and word in message
    assert h.agent.generation == 1  # not offered again on the next poll


def test_malformed_update_backs_off(tmp_path: Path) -> None:
    h = make(tmp_path, [Response(200, {"assigned": "yes"}, {}), Response(200, None, {})])
    h.run()
    assert len(h.sleeps) == 2 and h.runner.started == []


def test_heartbeat_posts_current_status_and_health(tmp_path: Path) -> None:
    def hold() -> Response:
        deadline = time.monotonic() + 5
        while len(h.transport.statuses) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        return NOTHING

    h = make(tmp_path, [hold], heartbeat_seconds=0.02)
    h.run()
    assert len(h.transport.statuses) >= 3
    assert h.transport.statuses[0] == {
        "hostname": HOST,
        "status": "ready",
        "in_use": False,
        "health": "Tesla T4, 40, 3 %",
        "message": None,
        "gpu_state": "healthy",
        "gpu_utilization": 3,
        "crd_active": False,
        "boot_id": "5c2e0f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
        "disk_free_pct": 61,
    }


def test_stop_does_not_wait_for_an_in_flight_poll(tmp_path: Path) -> None:
    release = threading.Event()

    def long_poll() -> Response:
        release.wait(30)
        return NOTHING

    h = make(tmp_path, [task(1), long_poll])
    worker = threading.Thread(target=h.run)
    worker.start()
    deadline = time.monotonic() + 5
    while len(h.transport.polls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    h.stop.set()
    worker.join(5)
    release.set()
    assert not worker.is_alive()
    assert time.monotonic() - started < 1.0
    assert not h.runner.running  # the CRD process is stopped on the way out


def test_credential_and_pin_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script: list[Script] = [TransportError("refused"), error(503), task(1), task(2, pin="12x")]
    script += [released(3), error(401)]
    h = make(tmp_path, script)
    with pytest.raises(Unauthorized):
        h.run()
    assert caplog.records, "expected the agent to log"
    for text in (caplog.text, repr(h.agent.config), json.dumps(h.transport.statuses)):
        assert CREDENTIAL not in text
        assert PIN not in text


def test_config_rejects_unsafe_values() -> None:
    with pytest.raises(InvalidInput, match="http"):
        AgentConfig("file:///etc/passwd", HOST, CREDENTIAL)
    with pytest.raises(InvalidInput, match="credential"):
        AgentConfig(URL, HOST, "abc\r\nX-Evil: 1")
    with pytest.raises(InvalidInput, match="hostname"):
        AgentConfig(URL, "vm_1; id", CREDENTIAL)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        sent = json.loads(self.rfile.read(length))
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "http://elsewhere.test/")
            self.end_headers()
            return
        status = {"/empty": 204, "/denied": 401}.get(self.path, 200)
        payload = (
            b""
            if status == 204
            else json.dumps({"echo": sent, "auth": self.headers["Authorization"]}).encode()
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urllib_transport_answers(loopback: str) -> None:
    transport = UrllibTransport()
    auth = {"Authorization": "Bearer t"}
    ok = transport.post_json(f"{loopback}/x", {"a": 1}, headers=auth, timeout=5)
    assert (ok.status, ok.body) == (200, {"echo": {"a": 1}, "auth": "Bearer t"})
    empty = transport.post_json(f"{loopback}/empty", {}, headers=auth, timeout=5)
    assert (empty.status, empty.body) == (204, None)
    denied = transport.post_json(f"{loopback}/denied", {}, headers=auth, timeout=5)
    assert denied.status == 401 and denied.body is not None
    moved = transport.post_json(f"{loopback}/redirect", {}, headers=auth, timeout=5)
    assert moved.status == 307  # not followed: the credential stays with the allocator
    assert moved.headers["location"] == "http://elsewhere.test/"


def test_urllib_transport_connection_refused(loopback: str) -> None:
    port = loopback.rsplit(":", 1)[1]
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as spare:
        dead = f"http://127.0.0.1:{spare.server_address[1]}"
    assert dead != f"http://127.0.0.1:{port}"
    with pytest.raises(TransportError):
        UrllibTransport().post_json(dead, {}, headers={}, timeout=5)


CLIENT_VARIABLES = (
    "LABLINK_ALLOCATOR_URL",
    "LABLINK_HOSTNAME",
    "LABLINK_VM_CREDENTIAL",
    "LABLINK_RECORD",
    "LABLINK_CREDENTIAL_FILE",
    "LABLINK_ENROLMENT_TOKEN",
    "LABLINK_REPOSITORY",
    "LABLINK_BOOT_LOG",
    "LABLINK_DESKTOP_DIR",
    "LABLINK_DESKTOP_USER",
    "LABLINK_DESKTOP_STATE_FILE",
    "ALLOCATOR_URL",
    "API_TOKEN",
    "VM_NAME",
    "TUTORIAL_REPO_TO_CLONE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No client variable set, and a private state folder for the credential file."""
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return monkeypatch


@pytest.mark.parametrize(
    ("argv", "env", "word"),
    [
        ([], {"LABLINK_VM_CREDENTIAL": CREDENTIAL}, "allocator URL is required"),
        (["--allocator-url", URL], {}, "credential is required"),
        (["--hostname", "bad_name"], {"LABLINK_VM_CREDENTIAL": CREDENTIAL}, "hostname"),
        (["--allocator-url", "ftp://x"], {"LABLINK_VM_CREDENTIAL": CREDENTIAL}, "http"),
        (
            [],
            {"LABLINK_VM_CREDENTIAL": CREDENTIAL, "LABLINK_DESKTOP_USER": "no-such-user-x"},
            "LABLINK_DESKTOP_USER",
        ),
    ],
)
def test_main_setting_errors_exit_2(
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    word: str,
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    if "--allocator-url" not in argv and word != "allocator URL is required":
        argv = [*argv, "--allocator-url", URL]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lablink-client: error:") and word in err
    assert err.count("\n") == 1 and CREDENTIAL not in err


def test_main_reads_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[VMAgent] = []

    def fake_run(agent: VMAgent) -> int:
        seen.append(agent)
        return 0

    clean_env.setattr(cli, "_run_until_signal", fake_run)
    clean_env.setattr("socket.gethostname", lambda: " GPU-Node-7 \n")
    clean_env.setenv("LABLINK_ALLOCATOR_URL", URL)
    clean_env.setenv("LABLINK_VM_CREDENTIAL", CREDENTIAL)
    clean_env.setenv("LABLINK_RECORD", str(tmp_path / "r.jsonl"))
    assert cli.main(["--dry-run", "--heartbeat-seconds", "5"]) == 0
    (agent,) = seen
    config = agent.config
    assert (config.allocator_url, config.hostname, config.credential) == (
        URL,
        "gpu-node-7",
        CREDENTIAL,
    )
    assert config.record_path == tmp_path / "r.jsonl" and config.heartbeat_seconds == 5
    assert config.credential_file == tmp_path / "r.jsonl.credential"  # per VM, not per home
    assert config.desktop_state_path == tmp_path / "r.jsonl.desktop"
    assert isinstance(agent.runner, DryRunCrdRunner)


def test_main_accepts_the_original_clients_variable_names(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[VMAgent] = []
    clean_env.setattr(cli, "_run_until_signal", lambda agent: seen.append(agent) or 0)
    clean_env.setenv("ALLOCATOR_URL", URL)
    clean_env.setenv("API_TOKEN", CREDENTIAL)
    clean_env.setenv("VM_NAME", "Lablink-VM-3")
    clean_env.setenv("TUTORIAL_REPO_TO_CLONE", "https://github.com/example/tutorial.git")
    assert cli.main(["--dry-run", "--record", str(tmp_path / "r.jsonl")]) == 0
    config = seen[0].config
    assert (config.allocator_url, config.credential, config.hostname) == (
        URL,
        CREDENTIAL,
        "lablink-vm-3",
    )
    assert config.repository == "https://github.com/example/tutorial.git"
    # The LabLink names win over the original ones.
    clean_env.setenv("LABLINK_HOSTNAME", "vm-9")
    clean_env.setenv("TUTORIAL_REPO_TO_CLONE", "None")  # what old Terraform sent for "none"
    assert cli.main(["--dry-run", "--record", str(tmp_path / "r.jsonl")]) == 0
    assert (seen[1].config.hostname, seen[1].config.repository) == ("vm-9", None)


def test_main_live_default_credential_file_is_under_xdg_state_home(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[VMAgent] = []
    clean_env.setattr(cli, "_run_until_signal", lambda agent: seen.append(agent) or 0)
    clean_env.setenv("LABLINK_ALLOCATOR_URL", URL)
    clean_env.setenv("LABLINK_VM_CREDENTIAL", CREDENTIAL)
    assert cli.main([]) == 0
    assert seen[0].config.credential_file == tmp_path / "state" / "lablink" / "credential"
    clean_env.setenv("LABLINK_CREDENTIAL_FILE", str(tmp_path / "elsewhere"))
    assert cli.main([]) == 0
    assert seen[1].config.credential_file == tmp_path / "elsewhere"
