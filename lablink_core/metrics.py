"""What the allocator counts and times, for ``/metrics`` (the Prometheus text format).

:class:`Metrics` is the interface and does nothing: the CLI, the notebooks and most tests use
it as it is. :class:`PrometheusMetrics` records into ``prometheus_client``, imported only when
it is built, so that ``PROMETHEUS_MULTIPROC_DIR`` (set by ``lablink serve --processes N``
before it forks) is seen: then every process writes its values to files in that folder and a
scrape of any one process adds them all up. What the database knows (VMs by status, the
free pool, the waitlist) is read at scrape time and is the same from every process.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request times run from a millisecond to a VM's long poll of a minute or more.
REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0,
)  # fmt: skip
WAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FLEET_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class PoolReading:
    """What the database says at scrape time."""

    vms_by_status: dict[str, int] = field(default_factory=dict)
    free: int = 0
    silent: int = 0
    unhealthy: int = 0
    waitlist: int = 0


class Metrics:
    """The events the allocator reports; this base class ignores them all."""

    def assigned(self, kind: str, count: int = 1) -> None:
        """``count`` researchers got a VM: ``new``, ``renewal`` (a fresh CRD command for the
        same VM) or ``waitlist`` (handed to the head of the queue)."""

    def refused(self, where: str, reason: str) -> None:
        """A request was refused; ``reason`` is the error code the caller was given."""

    def waiting(self, delta: int) -> None:
        """Long polls on ``/vm_startup`` in this process went up or down by ``delta``."""

    def woken(self, seconds: float, count: int) -> None:
        """``count`` waiting VMs were handed their task ``seconds`` after the NOTIFY came."""

    def request(self, handler: str, status: int, seconds: float) -> None:
        """An HTTP request to the API finished."""

    def fleet_operation(self, kind: str, outcome: str, seconds: float) -> None:
        """A fleet operation (launch, scale, destroy, heal, ...) ended."""

    def healer_action(self, action: str, outcome: str) -> None:
        """The healer acted on a VM (reboot, replace, give_up, recovered)."""

    def exposition(self, reading: PoolReading) -> tuple[bytes, str]:
        """The body and content type of a scrape."""
        return b"# metrics are not recorded by this process\n", "text/plain; charset=utf-8"


def _prometheus() -> Any:
    client = importlib.import_module("prometheus_client")
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        # prometheus_client picks its value store when it is first imported; a process that
        # imported it before the folder was set would keep per-process values that no
        # scrape could add up, so pick again (it reads the variable).
        values: Any = importlib.import_module("prometheus_client.values")
        values.ValueClass = values.get_value_class()
    return client


class PrometheusMetrics(Metrics):
    """Metrics in ``prometheus_client``, one registry per instance (tests build many)."""

    def __init__(self) -> None:
        client = _prometheus()
        self._client = client
        self._registry = client.CollectorRegistry(auto_describe=True)
        self._build(client, self._registry)

    def _build(self, client: Any, registry: Any) -> None:
        counter, histogram = client.Counter, client.Histogram
        self._assigned = counter(
            "lablink_assignments", "VMs given to researchers, by kind", ["kind"], registry=registry
        )
        self._refused = counter(
            "lablink_refusals",
            "Requests refused, by where (API handler or page) and reason (the error code)",
            ["where", "reason"],
            registry=registry,
        )
        self._waiting = client.Gauge(
            "lablink_waiting_vms",
            "Long polls on /vm_startup held now (summed over live processes)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._woken = counter("lablink_vms_woken", "Waiting VMs handed a task", registry=registry)
        self._wake = histogram(
            "lablink_wake_seconds",
            "From a NOTIFY reaching a process to its woken VMs holding their task, per batch",
            buckets=WAKE_BUCKETS,
            registry=registry,
        )
        self._requests = histogram(
            "lablink_http_request_seconds",
            "API request time, by handler and status class",
            ["handler", "code"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self._fleet = histogram(
            "lablink_fleet_operation_seconds",
            "Fleet operation time, by kind and outcome (succeeded, failed)",
            ["kind", "outcome"],
            buckets=FLEET_BUCKETS,
            registry=registry,
        )
        self._healer = counter(
            "lablink_healer_actions",
            "What the healer did, by action and outcome (done, failed)",
            ["action", "outcome"],
            registry=registry,
        )

    def assigned(self, kind: str, count: int = 1) -> None:
        self._assigned.labels(kind).inc(count)

    def refused(self, where: str, reason: str) -> None:
        self._refused.labels(where, reason).inc()

    def waiting(self, delta: int) -> None:
        self._waiting.inc(delta)

    def woken(self, seconds: float, count: int) -> None:
        self._woken.inc(count)
        self._wake.observe(seconds)

    def request(self, handler: str, status: int, seconds: float) -> None:
        self._requests.labels(handler, f"{status // 100}xx").observe(seconds)

    def fleet_operation(self, kind: str, outcome: str, seconds: float) -> None:
        self._fleet.labels(kind, outcome).observe(seconds)

    def healer_action(self, action: str, outcome: str) -> None:
        self._healer.labels(action, outcome).inc()

    def exposition(self, reading: PoolReading) -> tuple[bytes, str]:
        client = self._client
        events = self._registry
        folder = os.environ.get(MULTIPROCESS_DIR_ENV)
        if folder:
            events = client.CollectorRegistry()
            importlib.import_module("prometheus_client.multiprocess").MultiProcessCollector(
                events, path=folder
            )
        pool = client.CollectorRegistry()
        pool.register(_PoolCollector(reading))
        body = client.generate_latest(events) + client.generate_latest(pool)
        return body, str(client.CONTENT_TYPE_LATEST)


class _PoolCollector:
    """The database's view as gauges, made afresh for each scrape."""

    def __init__(self, reading: PoolReading) -> None:
        self.reading = reading

    def collect(self) -> Any:
        family = importlib.import_module("prometheus_client.core").GaugeMetricFamily
        by_status = family("lablink_vms", "VMs in the table, by status", labels=["status"])
        for status, count in sorted(self.reading.vms_by_status.items()):
            by_status.add_metric([status], count)
        yield by_status
        pool = family(
            "lablink_pool_vms", "Free VMs, by whether they can be assigned", labels=["pool"]
        )
        for name in ("free", "silent", "unhealthy"):
            pool.add_metric([name], getattr(self.reading, name))
        yield pool
        yield family(
            "lablink_waitlist_length", "Researchers waiting in the queue", self.reading.waitlist
        )


def forget_process(pid: int) -> None:
    """A server process died: drop its share of the live gauges (its counters stay, so
    totals never go down)."""
    folder = os.environ.get(MULTIPROCESS_DIR_ENV)
    if folder:
        importlib.import_module("prometheus_client.multiprocess").mark_process_dead(pid, folder)
