"""Assembling the agent's collaborators from its config: runner, probes, log sources.

Kept apart from the agent so the agent reads as protocol (poll, report, rotate) and this
file as wiring; tests replace any part by passing it to `VMAgent`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lablink_core.client.accounts import desktop_account, make_owned_dirs, run_as
from lablink_core.client.crd_activity import CrdActivity, CrdConnections, latest_crd_log
from lablink_core.client.crd_host import SubprocessCrdRunner
from lablink_core.client.machine import MachineProbe, MachineState, desktop_state_file_connected
from lablink_core.client.redaction import Redactor
from lablink_core.client.repository import clone_repository
from lablink_core.client.runners import CrdRunner, DryRunCrdRunner
from lablink_core.client.settings import DEFAULT_RECORD, AgentConfig
from lablink_core.client.vm_logs import FileTail, LineBuffer, LineSource, LogRing, LogShipper


@dataclass
class AgentParts:
    redact: Redactor
    runner: CrdRunner
    probe: Callable[[], MachineState]
    clone: Callable[[threading.Event], str | None]
    log_ring: LogRing
    crd_output: LineBuffer
    shipper: LogShipper


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def build_parts(
    config: AgentConfig,
    runner: CrdRunner | None,
    probe: Callable[[], MachineState] | None,
    clone: Callable[[threading.Event], str | None] | None,
    send_logs: Callable[[str, list[str]], bool | None],
) -> AgentParts:
    redact = Redactor()
    ring = LogRing()
    crd_output = LineBuffer()
    sources: list[tuple[str, LineSource]] = [("agent", ring)]
    if config.boot_log is not None:
        boot = config.boot_log
        sources.append(("boot", FileTail(lambda: boot)))
    sources.append(("crd", crd_output))
    if runner is None:
        if config.dry_run:
            runner = DryRunCrdRunner(config.record_path or Path(DEFAULT_RECORD))
        else:
            account = desktop_account(config.desktop_user)
            runner = SubprocessCrdRunner(output=crd_output.put, account=account)
    crd_active: Callable[[], bool | None]
    if config.dry_run:
        crd_active = functools.partial(desktop_state_file_connected, config.desktop_state_path)
    else:
        connections = CrdConnections()
        crd_log = FileTail(latest_crd_log, on_lines=connections.feed, on_new_file=connections.reset)
        sources.append(("crd", crd_log))
        crd_active = CrdActivity(crd_log.poll, connections)
    if probe is None:
        probe = MachineProbe(dry_run=config.dry_run, disk_path=_home(), crd_active=crd_active)
    if clone is None:
        clone = _cloner(config)
    return AgentParts(
        redact, runner, probe, clone, ring, crd_output, LogShipper(sources, redact, send_logs)
    )


def _cloner(config: AgentConfig) -> Callable[[threading.Event], str | None]:
    url = config.repository

    def clone(stop: threading.Event) -> str | None:
        if not url:
            return None
        try:
            account = desktop_account(config.desktop_user)
            desktop = config.desktop_dir or Path(account.pw_dir) / "Desktop"
            make_owned_dirs(desktop, account, mode=0o755)
            prefix = run_as(account)
        except OSError as error:
            return f"could not clone {url}: {error}"
        return clone_repository(url, desktop, stop, run_as=prefix, home=account.pw_dir)

    return clone
