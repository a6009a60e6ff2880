"""What a heartbeat reports: GPU state, disk, boot id, crd_active; and the repository clone."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lablink_core.client.agent import AgentConfig, VMAgent
from lablink_core.client.crd_activity import (
    CrdActivity,
    CrdConnections,
    host_process_running,
    latest_crd_log,
)
from lablink_core.client.machine import (
    boot_id,
    desktop_state_file_connected,
    disk_free_pct,
    gpu_report,
)
from lablink_core.client.repository import clone_repository, clone_target, configured_repository
from lablink_core.client.runners import DryRunCrdRunner
from lablink_core.client.transport import Response
from lablink_core.client.vm_logs import FileTail
from tests.unit.test_client_agent import CREDENTIAL, HOST, NOTHING, URL, FakeTransport


def fake_nvidia_smi(tmp_path: Path, output: str, exit_code: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stdout.write({output!r})\n"
        f"sys.stderr.write('NVIDIA-SMI has failed')\nsys.exit({exit_code})\n"
    )
    script.chmod(0o755)
    return str(script)


def test_gpu_report_healthy_takes_the_busiest_gpu(tmp_path: Path) -> None:
    exe = fake_nvidia_smi(tmp_path, "Tesla T4, 41, 7 %\nTesla T4, 39, 64 %\n")
    report = gpu_report(exe=exe)
    assert (report.state, report.utilization) == ("healthy", 64)
    assert report.health == "Tesla T4, 41, 7 %; Tesla T4, 39, 64 %"


def test_gpu_report_unknown_utilization(tmp_path: Path) -> None:
    report = gpu_report(exe=fake_nvidia_smi(tmp_path, "NVIDIA A10G, 30, [N/A]\n"))
    assert (report.state, report.utilization) == ("healthy", None)


@pytest.mark.parametrize(("output", "code"), [("", 9), ("", 0)])
def test_gpu_report_unhealthy(tmp_path: Path, output: str, code: int) -> None:
    report = gpu_report(exe=fake_nvidia_smi(tmp_path, output, code))
    assert report.state == "unhealthy" and report.utilization is None
    assert len(report.health) <= 200


def test_gpu_report_unknown_without_nvidia_smi_or_in_a_dry_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert gpu_report() == gpu_report().__class__("nvidia-smi not found", "unknown", None)
    assert gpu_report(dry_run=True).state == "unknown"


def test_boot_id_and_disk_free(tmp_path: Path) -> None:
    assert boot_id(tmp_path / "absent") is None
    (tmp_path / "boot_id").write_text("D1C4E5F6-0A1B-4C2D-8E3F-405162738495\n")
    assert boot_id(tmp_path / "boot_id") == "d1c4e5f6-0a1b-4c2d-8e3f-405162738495"
    (tmp_path / "boot_id").write_text("not-a-uuid\n")
    assert boot_id(tmp_path / "boot_id") is None
    free = disk_free_pct(tmp_path)
    assert free is not None and 0 <= free <= 100
    assert disk_free_pct(tmp_path / "absent") is None


def test_desktop_state_file(tmp_path: Path) -> None:
    state = tmp_path / "r.desktop"
    assert desktop_state_file_connected(state) is False
    for text, expected in [("connected\n", True), ("disconnected", False), ("", False)]:
        state.write_text(text)
        assert desktop_state_file_connected(state) is expected


def test_dry_run_crd_active_follows_the_state_file_while_running(tmp_path: Path) -> None:
    record = tmp_path / "vm.jsonl"
    state = record.with_name("vm.jsonl.desktop")
    cfg = AgentConfig(URL, HOST, CREDENTIAL, True, record, heartbeat_seconds=0.02)

    def toggle() -> Response:
        for text in ("connected", "disconnected"):
            seen = len(transport.statuses)
            state.write_text(text)
            deadline = time.monotonic() + 5
            while len(transport.statuses) < seen + 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        return NOTHING

    transport = FakeTransport([toggle], threading.Event())
    agent = VMAgent(cfg, transport=transport, runner=DryRunCrdRunner(record))
    agent.run(transport.stop)
    flags = [s["crd_active"] for s in transport.statuses]
    assert True in flags and flags[-1] is False
    last = transport.statuses[-1]
    assert last["gpu_state"] == "unknown" and last["gpu_utilization"] is None
    assert last["boot_id"] == boot_id()


HOST_LOG = """\
[1203/101500.1:INFO:remoting_me2me_host.cc(123)] Host ready to receive connections.
[1203/101601.2:INFO:chromoting_host.cc(300)] Client connected: ada@example.org/chromoting_ftl_1
[1203/101702.3:INFO:client_session.cc(400)] Client disconnected: ada@example.org/chromoting_ftl_1; \
error = OK
[1203/101803.4:INFO:chromoting_host.cc(300)] Client connected: ada@example.org/chromoting_ftl_2
"""


def test_crd_connections_from_host_log_lines() -> None:
    connections = CrdConnections()
    lines = HOST_LOG.splitlines()
    connections.feed(lines[:3])
    assert connections.seen_log and not connections.any
    connections.feed(lines[3:])
    assert connections.any
    connections.reset()  # a new daemon log: nobody connected yet
    assert not connections.any


def test_latest_crd_log_prefers_the_latest_link_else_the_newest_own_file(tmp_path: Path) -> None:
    assert latest_crd_log(tmp_path) is None
    old, new = (tmp_path / f"chrome_remote_desktop_2026120{n}_000000_ab" for n in (1, 2))
    old.write_text("old\n")
    new.write_text("new\n")
    os.utime(old, (1, 1))
    assert latest_crd_log(tmp_path, uid=os.getuid()) == new
    assert latest_crd_log(tmp_path, uid=os.getuid() + 1) is None  # someone else's logs
    (tmp_path / "chrome_remote_desktop.latest").symlink_to(old)
    assert latest_crd_log(tmp_path) == tmp_path / "chrome_remote_desktop.latest"


def test_host_process_running_looks_for_the_host_binary(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "12").mkdir(parents=True)
    (proc / "12" / "cmdline").write_bytes(b"/usr/bin/python3\0chrome-remote-desktop\0")
    (proc / "self").mkdir()
    assert not host_process_running(proc)
    (proc / "99").mkdir()
    host = b"/opt/google/chrome-remote-desktop/chrome-remote-desktop-host\0--host-config=-\0"
    (proc / "99" / "cmdline").write_bytes(host)
    assert host_process_running(proc)
    assert not host_process_running(proc, uid=os.getuid() + 1)


def test_crd_activity_combines_log_and_host_process(tmp_path: Path) -> None:
    log = tmp_path / "chrome_remote_desktop_20261203_101500_x"
    connections = CrdConnections()
    tail = FileTail(lambda: log if log.exists() else None, on_lines=connections.feed)
    alive = {"host": True}
    activity = CrdActivity(tail.poll, connections, lambda: alive["host"])
    assert activity() is None  # no log yet: cannot tell
    log.write_text(HOST_LOG)
    assert activity() is True
    with log.open("a") as handle:
        handle.write("Client disconnected: ada@example.org/chromoting_ftl_2; error = OK\n")
    assert activity() is False
    with log.open("a") as handle:
        handle.write("Client connected: bob@example.org/chromoting_ftl_3\n")
    alive["host"] = False  # the host died without logging a disconnect
    assert activity() is False


@pytest.fixture
def origin(tmp_path: Path) -> str:
    """A local git repository with one commit, to clone from."""
    repo = tmp_path / "origin" / "tutorial"
    repo.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    (repo / "README.md").write_text("hello\n")
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "first"]):
        subprocess.run(["git", *command], cwd=repo, env=env, check=True)
    return f"file://{repo}"


def test_clone_into_the_desktop_and_skip_when_present(tmp_path: Path, origin: str) -> None:
    desktop = tmp_path / "home" / "Desktop"
    assert clone_repository(origin, desktop, threading.Event()) is None
    assert (desktop / "tutorial" / "README.md").read_text() == "hello\n"
    assert clone_repository(origin, desktop, threading.Event()) is None  # already there


def test_failed_clone_is_a_message_not_an_exception(tmp_path: Path) -> None:
    message = clone_repository(f"file://{tmp_path}/missing.git", tmp_path / "D", threading.Event())
    assert message is not None and message.startswith("could not clone")
    assert "git exited" in message


@pytest.mark.parametrize(
    "url",
    ["--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x", "https://example.org/.git", "a b"],
)
def test_unsafe_or_nameless_repository_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"repository URL|folder name"):
        clone_target(url)


def test_repository_setting() -> None:
    assert clone_target("https://github.com/talmolab/tutorial.git") == "tutorial"
    assert clone_target("git@github.com:talmolab/sleap-tutorial") == "sleap-tutorial"
    for unset in (None, "", " ", "None", "null"):
        assert configured_repository(unset) is None
