"""``lablink-client``: the agent process that runs on each GPU VM.

Signals: the agent runs in a worker thread and the main thread only waits for
it, so the SIGTERM/SIGINT handler (which always runs in the main thread) can
set the stop event without risking a deadlock on a lock the main thread holds.
The agent notices the event within `STOP_CHECK_SECONDS`, abandons any
in-flight long poll, stops the CRD process and returns; the exit code is 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from lablink_core.client import settings
from lablink_core.client.accounts import AccountError, desktop_account
from lablink_core.client.agent import AgentConfig, VMAgent
from lablink_core.client.credential_store import read_credential_file
from lablink_core.errors import InvalidInput

log = logging.getLogger("lablink_core.client")


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lablink-client",
        description="Long-poll the LabLink allocator and run the Chrome Remote Desktop host.",
        epilog="Every setting can come from the environment (see docs/vm-clients.md): "
        "LABLINK_ALLOCATOR_URL, LABLINK_VM_CREDENTIAL, LABLINK_HOSTNAME, LABLINK_REPOSITORY, "
        "LABLINK_CREDENTIAL_FILE, LABLINK_ENROLMENT_TOKEN, LABLINK_BOOT_LOG, LABLINK_DESKTOP_USER, "
        "LABLINK_DESKTOP_DIR.",
    )
    parser.add_argument("--allocator-url", help="allocator base URL [LABLINK_ALLOCATOR_URL]")
    parser.add_argument("--hostname", help="this VM's name [LABLINK_HOSTNAME, else the host name]")
    parser.add_argument(
        "--credential",
        help="VM credential [LABLINK_VM_CREDENTIAL]; prefer the variable, since "
        "command lines are visible to every user of the machine",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="record the CRD commands instead of running them"
    )
    parser.add_argument(
        "--record",
        type=Path,
        help=f"dry-run record file [LABLINK_RECORD, else ./{settings.DEFAULT_RECORD}]",
    )
    parser.add_argument(
        "--heartbeat-seconds", type=float, default=15.0, help="status report interval (15)"
    )
    return parser


def _required(value: str | None, message: str) -> str:
    if not value:
        raise _UsageError(message)
    return value


def _desktop_user(name: str | None) -> str | None:
    try:
        desktop_account(name)
    except AccountError as error:
        raise _UsageError(f"{error}: check LABLINK_DESKTOP_USER") from error
    return name


def _config(args: argparse.Namespace, environ: Mapping[str, str]) -> AgentConfig:
    url = _required(
        args.allocator_url or settings.setting(environ, "LABLINK_ALLOCATOR_URL"),
        "the allocator URL is required: set LABLINK_ALLOCATOR_URL or pass --allocator-url",
    )
    record = None
    if args.dry_run:
        record = args.record or Path(environ.get("LABLINK_RECORD") or settings.DEFAULT_RECORD)
    credential = args.credential or settings.setting(environ, "LABLINK_VM_CREDENTIAL") or ""
    enrolment = settings.setting(environ, "LABLINK_ENROLMENT_TOKEN") or ""
    credential_file = settings.default_credential_file(environ, record)
    if not (credential or enrolment or read_credential_file(credential_file)):
        raise _UsageError("the VM credential is required: set LABLINK_VM_CREDENTIAL")
    hostname = (
        args.hostname or settings.setting(environ, "LABLINK_HOSTNAME") or socket.gethostname()
    )
    return AgentConfig(
        allocator_url=url,
        hostname=hostname.strip().lower(),
        credential=credential,
        dry_run=args.dry_run,
        record_path=record,
        heartbeat_seconds=args.heartbeat_seconds,
        credential_file=credential_file,
        enrolment_token=enrolment,
        repository=settings.repository(environ),
        desktop_dir=settings.optional_path(environ, "LABLINK_DESKTOP_DIR"),
        desktop_user=_desktop_user(settings.setting(environ, "LABLINK_DESKTOP_USER")),
        boot_log=settings.boot_log(environ),
        desktop_state_file=settings.optional_path(environ, "LABLINK_DESKTOP_STATE_FILE"),
    )


def _run_until_signal(agent: VMAgent) -> int:
    stop = threading.Event()
    failures: list[Exception] = []
    signalled = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signalled
        # A second signal arriving inside stop.set() would re-enter it and
        # deadlock on the event's own lock; the plain flag makes it a no-op.
        if not signalled:
            signalled = True
            stop.set()

    def work() -> None:
        try:
            agent.run(stop)
        except Exception as error:  # reported by the main thread below
            failures.append(error)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = threading.Thread(target=work, name="lablink-agent")
    worker.start()
    while worker.is_alive():
        # A timeout keeps the main thread waking up so signal handlers run promptly.
        worker.join(0.5)
    if failures:
        log.error("stopping: %s", failures[0])
        return 1
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args, os.environ)
    except (_UsageError, InvalidInput) as error:
        print(f"lablink-client: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.credential:
        log.warning("the credential was given on the command line; prefer LABLINK_VM_CREDENTIAL")
    log.info("credential file: %s", config.credential_file)
    mode = f"dry run, recording to {config.record_path}" if config.dry_run else "live"
    log.info("agent for %s polling %s (%s)", config.hostname, config.allocator_url, mode)
    return _run_until_signal(VMAgent(config))


if __name__ == "__main__":
    sys.exit(main())
