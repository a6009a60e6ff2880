"""Metrics: what each event records, and the sum over processes in multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lablink_core.metrics import Metrics, PoolReading, PrometheusMetrics
from tests.support.metrics import parse, value

READING = PoolReading(
    vms_by_status={"available": 3, "assigned": 2}, free=2, silent=1, unhealthy=0, waitlist=4
)


def test_the_null_metrics_record_nothing_and_say_so() -> None:
    metrics = Metrics()
    metrics.assigned("new")
    metrics.woken(0.01, 3)
    body, content_type = metrics.exposition(READING)
    assert b"not recorded" in body and content_type.startswith("text/plain")


def test_every_event_is_a_sample() -> None:
    metrics = PrometheusMetrics()
    metrics.assigned("new")
    metrics.assigned("new")
    metrics.assigned("waitlist")
    metrics.refused("RequestVMHandler", "no_vm_available")
    metrics.waiting(5)
    metrics.waiting(-2)
    metrics.woken(0.004, 7)
    metrics.request("RequestVMHandler", 503, 0.002)
    metrics.fleet_operation("launch", "failed", 12.0)
    metrics.healer_action("reboot", "done")
    body, content_type = metrics.exposition(READING)
    assert content_type.startswith("text/plain; version=")
    samples = parse(body.decode())
    assert value(samples, "lablink_assignments_total", kind="new") == 2
    assert value(samples, "lablink_assignments_total", kind="waitlist") == 1
    reason = {"where": "RequestVMHandler", "reason": "no_vm_available"}
    assert value(samples, "lablink_refusals_total", **reason) == 1
    assert value(samples, "lablink_waiting_vms") == 3
    assert value(samples, "lablink_vms_woken_total") == 7
    assert value(samples, "lablink_wake_seconds_bucket", le="0.005") == 1
    assert value(samples, "lablink_wake_seconds_bucket", le="0.0025") == 0
    request = {"handler": "RequestVMHandler", "code": "5xx"}
    assert value(samples, "lablink_http_request_seconds_count", **request) == 1
    operation = {"kind": "launch", "outcome": "failed"}
    assert value(samples, "lablink_fleet_operation_seconds_sum", **operation) == 12.0
    assert value(samples, "lablink_healer_actions_total", action="reboot", outcome="done") == 1
    assert value(samples, "lablink_vms", status="assigned") == 2
    assert value(samples, "lablink_pool_vms", pool="silent") == 1
    assert value(samples, "lablink_waitlist_length") == 4


def test_two_instances_do_not_share_counts() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.assigned("new")
    samples = parse(second.exposition(READING)[0].decode())
    assert value(samples, "lablink_assignments_total", kind="new") == 0


# Each process imports prometheus_client after PROMETHEUS_MULTIPROC_DIR is set, as the
# forked server processes do; the parent's own import is left as it is.
_PROCESS = textwrap.dedent(
    """
    import os, sys
    from lablink_core.metrics import PrometheusMetrics, forget_process
    metrics = PrometheusMetrics()
    for _ in range(int(sys.argv[1])):
        metrics.assigned("new")
    metrics.waiting(int(sys.argv[2]))
    metrics.woken(0.01, 1)
    if sys.argv[3] == "forget":
        forget_process(os.getpid())
    """
)
_SCRAPE = textwrap.dedent(
    """
    from lablink_core.metrics import PoolReading, PrometheusMetrics
    print(PrometheusMetrics().exposition(PoolReading(waitlist=1))[0].decode())
    """
)


def _python(code: str, folder: Path, *args: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    run = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_processes_add_up_and_a_dead_one_leaves_the_live_gauge(tmp_path: Path) -> None:
    _python(_PROCESS, tmp_path, "3", "10", "keep")
    _python(_PROCESS, tmp_path, "4", "6", "forget")  # as the parent does when a child dies
    samples = parse(_python(_SCRAPE, tmp_path))
    assert value(samples, "lablink_assignments_total", kind="new") == 7
    assert value(samples, "lablink_vms_woken_total") == 2
    assert value(samples, "lablink_wake_seconds_count") == 2
    assert value(samples, "lablink_waiting_vms") == 10
    assert value(samples, "lablink_waitlist_length") == 1  # the database's view, once
