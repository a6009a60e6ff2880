"""The live VM table: coalesced reads, per-session subscriptions, applying snapshots."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from dashboard.admin.frames import COLUMNS, changed_cells, vm_frame
from dashboard.admin.table import PATCH_LIMIT, LiveTableView
from dashboard.live import LiveVMTable
from lablink_core.listener import Notification, Subscriber
from tests.support.waiting import wait_until

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def row(name: str, **values: Any) -> dict[str, Any]:
    base = {
        "hostname": name,
        "status": "available",
        "user_email": None,
        "in_use": False,
        "health": None,
        "last_heard_at": NOW - dt.timedelta(seconds=3),
        "created_at": NOW - dt.timedelta(seconds=90),
        "unresponsive": False,
    }
    return {**base, **values}


class FakeSource:
    """A VM registry that counts reads and can be told what to return or to fail."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows = rows if rows is not None else [row("vm-000"), row("vm-001")]
        self.reads = 0
        self.notifications_seen: list[int] = []
        self.notifications = 0
        self.fail = False

    def list(self, *, unresponsive_after: float = 120.0) -> list[dict[str, Any]]:
        self.reads += 1
        self.notifications_seen.append(self.notifications)
        if self.fail:
            raise ConnectionError("database is down")
        return list(self.rows)


class FakeListener:
    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self.subscribers.append(subscriber)
        return lambda: self.subscribers.remove(subscriber)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def note(name: str = "vm-000") -> list[Notification]:
    return [Notification(name, "assigned", 1)]


# The schedule, with a fake clock (no thread) ------------------------------------------


def test_no_reads_are_scheduled_while_nobody_watches() -> None:
    clock = Clock()
    table = LiveVMTable(FakeSource(), clock=clock)
    table.on_notifications(note())
    assert table._due(clock()) is None


def test_a_burst_waits_for_the_settle_time_then_reads_once() -> None:
    clock = Clock()
    table = LiveVMTable(
        FakeSource(), clock=clock, settle=0.1, min_interval=1.0, periodic_interval=3600
    )
    table.subscribe(lambda frame: None)
    table._read_and_publish()
    clock.now += 5.0  # long after the last read
    table.on_notifications(note())
    assert table._due(clock()) == pytest.approx(clock.now + 0.1)
    for _ in range(500):
        clock.now += 0.0001
        table.on_notifications(note())
    # Later notifications of the burst do not push the read back, nor add reads.
    assert table._due(clock()) == pytest.approx(1005.1)


def test_change_driven_reads_are_at_least_min_interval_apart() -> None:
    clock = Clock()
    table = LiveVMTable(FakeSource(), clock=clock, settle=0.1, min_interval=1.0)
    table.subscribe(lambda frame: None)
    table.on_notifications(note())
    table._read_and_publish()  # a change-driven read at 1000.0
    clock.now += 0.2
    table.on_notifications(note())
    assert table._due(clock()) == pytest.approx(1001.0)


def test_a_periodic_read_does_not_delay_a_change() -> None:
    clock = Clock()
    table = LiveVMTable(FakeSource(), clock=clock, settle=0.1, min_interval=1.0)
    table.subscribe(lambda frame: None)
    table._read_and_publish()  # the newcomer's read at 1000.0
    clock.now += 5.0
    table._read_and_publish()  # a periodic read (nothing changed) at 1005.0
    clock.now += 0.2
    table.on_notifications(note())
    assert table._due(clock()) == pytest.approx(1005.3)


def test_without_changes_the_table_is_reread_periodically() -> None:
    clock = Clock()
    table = LiveVMTable(FakeSource(), clock=clock, periodic_interval=5.0)
    table.subscribe(lambda frame: None)
    table._read_and_publish()
    assert table._due(clock()) == pytest.approx(1005.0)


def test_a_newcomer_gets_a_stale_snapshot_reread_at_once() -> None:
    clock = Clock()
    table = LiveVMTable(FakeSource(), clock=clock, periodic_interval=5.0, settle=0.1)
    table.subscribe(lambda frame: None)
    table._read_and_publish()
    clock.now += 60
    table.subscribe(lambda frame: None)
    due = table._due(clock())
    assert due is not None
    assert due <= clock.now + 0.1


# The thread, for real ------------------------------------------------------------------


@pytest.fixture
def running_table() -> Any:
    tables: list[LiveVMTable] = []

    def make(source: FakeSource, **params: Any) -> LiveVMTable:
        listener = FakeListener()
        table = LiveVMTable(source, listener, **params).start()
        table.fake_listener = listener  # type: ignore[attr-defined]
        tables.append(table)
        return table

    yield make
    for table in tables:
        table.close()


def test_a_burst_of_notifications_costs_one_read(running_table: Any) -> None:
    source = FakeSource()
    table = running_table(source, settle=0.3, min_interval=0.3, periodic_interval=3600)
    frames: list[pd.DataFrame] = []
    table.subscribe(frames.append)
    wait_until(lambda: len(frames) == 1, message="the first read")
    for _ in range(200):
        source.notifications += 1
        table.on_notifications(note())
    wait_until(lambda: len(frames) == 2, message="the burst's read")
    table.close()  # joins the thread: no read can still be on its way
    assert source.reads == 2
    assert source.notifications_seen == [0, 200]


def test_subscribe_and_unsubscribe(running_table: Any) -> None:
    source = FakeSource()
    table = running_table(source, settle=0.0, min_interval=0.0, periodic_interval=3600)
    assert table.fake_listener.subscribers == [table]
    seen_a: list[int] = []
    seen_b: list[int] = []
    stop_a = table.subscribe(lambda frame: seen_a.append(len(frame)))
    stop_b = table.subscribe(lambda frame: seen_b.append(len(frame)))
    assert table.subscriber_count == 2
    wait_until(lambda: seen_a and seen_b, message="both subscribers served")
    stop_a()
    stop_a()  # a second call is harmless
    assert table.subscriber_count == 1
    count_a = len(seen_a)
    source.rows = [row("vm-000")]
    table.on_notifications(note())
    wait_until(lambda: seen_b[-1] == 1, message="the remaining subscriber served")
    assert len(seen_a) == count_a
    stop_b()
    assert table.subscriber_count == 0
    table.close()
    assert table.fake_listener.subscribers == []


def test_a_failing_subscriber_does_not_stop_the_others(running_table: Any) -> None:
    table = running_table(FakeSource(), settle=0.0, min_interval=0.0, periodic_interval=3600)

    def broken(frame: pd.DataFrame) -> None:
        raise RuntimeError("session gone")

    served = threading.Event()
    table.subscribe(broken)
    table.subscribe(lambda frame: served.set())
    assert served.wait(10)


def test_a_failed_read_keeps_the_snapshot_and_is_retried(running_table: Any) -> None:
    source = FakeSource()
    table = running_table(source, settle=0.0, min_interval=0.0, periodic_interval=0.05)
    frames: list[pd.DataFrame] = []
    table.subscribe(frames.append)
    wait_until(lambda: frames, message="the first read")
    source.fail = True
    reads = source.reads
    wait_until(lambda: source.reads >= reads + 2, message="retries")
    assert list(table.snapshot.index) == ["vm-000", "vm-001"]
    source.fail = False
    source.rows = [row("vm-009")]
    wait_until(lambda: list(table.snapshot.index) == ["vm-009"], message="recovery")


def test_resync_triggers_a_read(running_table: Any) -> None:
    source = FakeSource()
    table = running_table(source, settle=0.0, min_interval=0.0, periodic_interval=3600)
    frames: list[pd.DataFrame] = []
    table.subscribe(frames.append)
    wait_until(lambda: frames, message="the first read")
    table.fake_listener.subscribers[0].on_resync()
    wait_until(lambda: len(frames) == 2, message="the resync read")


# Frames and views ----------------------------------------------------------------------


def test_vm_frame_columns_and_ages() -> None:
    frame = vm_frame(
        [row("vm-000", user_email="ada@example.org", status="assigned", last_heard_at=None)],
        now=NOW,
    )
    assert tuple(frame.columns) == COLUMNS
    assert list(frame.index) == ["vm-000"]
    record = frame.iloc[0]
    assert record["user_email"] == "ada@example.org"
    assert pd.isna(record["last_heard_s"])
    assert record["age_s"] == 90.0
    assert vm_frame([]).empty


def make_view(rows: list[dict[str, Any]]) -> tuple[LiveTableView, LiveVMTable, FakeSource]:
    source = FakeSource(rows)
    table = LiveVMTable(source)
    table.refresh()
    view = LiveTableView(table)
    view.apply(vm_frame(rows, now=NOW))
    return view, table, source


def test_a_small_change_is_patched_in_place() -> None:
    view, table, source = make_view([row(f"vm-{i:03d}") for i in range(300)])
    before = view.tabulator.value
    source.rows[5] = row("vm-005", status="assigned", user_email="ada@example.org")
    view.apply(vm_frame(source.rows, now=NOW))
    assert view.tabulator.value is before  # patched, not replaced
    assert view.tabulator.value.loc["vm-005", "user_email"] == "ada@example.org"
    assert table.snapshot.loc["vm-005", "status"] == "available"  # the shared frame is intact


def test_a_large_change_swaps_the_value_and_keeps_the_selection_by_hostname() -> None:
    view, _, _ = make_view([row(f"vm-{i:03d}") for i in range(300)])
    view.tabulator.selection = [1, 2, 250]
    assert view.selected_hostnames() == ["vm-001", "vm-002", "vm-250"]
    rows = [row(f"vm-{i:03d}", health="ok") for i in range(300) if i != 0]
    assert sum(len(v) for v in changed_cells(view.tabulator.value.iloc[1:], vm_frame(rows))) > 0
    view.apply(vm_frame(rows, now=NOW))
    assert view.selected_hostnames() == ["vm-001", "vm-002", "vm-250"]
    assert len(view.tabulator.value) == 299


def test_changed_cells_reports_only_differences() -> None:
    old = vm_frame([row("a"), row("b", last_heard_at=None)], now=NOW)
    new = vm_frame([row("a", in_use=True), row("b", last_heard_at=None)], now=NOW)
    assert changed_cells(old, new) == {"in_use": [("a", True)]}
    assert PATCH_LIMIT >= 1


def test_a_view_outside_a_server_applies_updates_at_once_and_detaches() -> None:
    view, table, source = make_view([row("vm-000")])
    detach = view.attach()
    assert table.subscriber_count == 1
    source.rows = [row("vm-000"), row("vm-001")]
    table.refresh()
    assert list(view.tabulator.value.index) == ["vm-000", "vm-001"]
    detach()
    detach()
    assert table.subscriber_count == 0


def test_the_difference_is_computed_once_for_all_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.live as live

    calls: list[int] = []
    real = live.row_changes

    def counting(old: pd.DataFrame, new: pd.DataFrame) -> Any:
        calls.append(1)
        return real(old, new)

    monkeypatch.setattr(live, "row_changes", counting)
    source = FakeSource([row(f"vm-{i:03d}") for i in range(50)])
    table = LiveVMTable(source)
    table.refresh()
    views = [LiveTableView(table) for _ in range(5)]
    for view in views:
        view.attach()
    source.rows[3] = row("vm-003", status="assigned", user_email="ada@example.org")
    table.refresh()
    assert len(calls) == 1
    assert all(v.tabulator.value.loc["vm-003", "user_email"] == "ada@example.org" for v in views)
