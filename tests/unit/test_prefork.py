"""The pieces of `lablink serve --processes N`: counting, forking, supervising."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from dashboard.prefork import (
    Children,
    checked_port,
    fork_child,
    listening_sockets,
    process_count,
)
from lablink_core.errors import InvalidInput


@pytest.mark.parametrize(("given", "count"), [(None, 1), ("", 1), ("1", 1), ("3", 3), (4, 4)])
def test_a_process_count_is_a_number(given: str | int | None, count: int) -> None:
    assert process_count(given) == count


def test_auto_is_one_process_per_usable_core() -> None:
    assert process_count("auto") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("given", ["0", "-2", "many", "65", "1.5"])
def test_a_bad_process_count_is_refused_with_its_value(given: str) -> None:
    with pytest.raises(InvalidInput, match=r"--processes must be 1-64 or 'auto'"):
        process_count(given)


def test_the_cli_refuses_a_bad_process_count_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lablink_core.cli", "serve", "--processes", "zero"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--processes must be 1-64 or 'auto'" in result.stderr
    assert "Traceback" not in result.stderr


def test_children_that_exit_when_told_end_the_supervision() -> None:
    def pause_until_terminated(index: int) -> int:
        signal.sigwait({signal.SIGTERM})
        return 0

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        children = Children(lambda index: fork_child(pause_until_terminated, index))
        children.start(2)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    assert sorted(children.by_pid.values()) == [0, 1]
    children.stopping = True
    children.signal_all(signal.SIGTERM)
    assert children.supervise() == 0
    assert children.by_pid == {}


def test_a_child_that_keeps_dying_is_restarted_a_bounded_number_of_times() -> None:
    started: list[int] = []

    def start(index: int) -> int:
        started.append(index)
        return fork_child(lambda i: 3, index)

    pauses: list[float] = []
    children = Children(start, pause=pauses.append)
    children.start(1)
    assert children.supervise() == 1
    assert children.restarts == 10
    assert len(started) == 11
    assert pauses == sorted(pauses) and max(pauses) <= 1.0


def test_each_child_listens_on_its_own_socket_of_the_checked_port() -> None:
    port = checked_port(0, "127.0.0.1")
    first, second = listening_sockets(port, "127.0.0.1"), listening_sockets(port, "127.0.0.1")
    try:
        assert {s.getsockname()[1] for s in [*first, *second]} == {port}
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in first)
    finally:
        for sock in [*first, *second]:
            sock.close()


def test_a_port_in_use_fails_before_any_child_is_forked() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError, match="in use"):
            checked_port(taken.getsockname()[1], "127.0.0.1")
    finally:
        taken.close()
