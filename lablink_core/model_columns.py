"""Typed column mixins of the tables revision 0002 added (the workshop's day): actions, logs,
the waitlist, schedules, leases, settings, admin sessions, throttling. Mapped into classes by
:func:`lablink_core.models.build_models`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Integer, Text, Time, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column


def now_column(nullable: bool = True) -> Any:
    """A timestamp column: nullable, or required with now() as its default."""
    if nullable:
        return mapped_column(DateTime(timezone=True), nullable=True)
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class VMActionColumns:
    """What the healer, the reclaimer, schedules, admins and researchers did to a VM, and why."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    user_email: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = now_column(nullable=False)


class VMLogColumns:
    """A line of a VM's own log or boot output (the last few hundred per VM are kept)."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    line: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[dt.datetime] = now_column(nullable=False)


class WaitlistColumns:
    """A researcher waiting for a VM; the ticket (hashed) becomes their seat token."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    ticket_hash: Mapped[str] = mapped_column(Text, nullable=False)
    crd_code: Mapped[str] = mapped_column(Text, nullable=False)
    crd_redirect_url: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default="waiting")
    hostname: Mapped[str | None] = mapped_column(Text)
    pin: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = now_column(nullable=False)
    last_seen_at: Mapped[dt.datetime] = now_column(nullable=False)
    ended_at: Mapped[dt.datetime | None] = now_column()


class ScheduleColumns:
    """A teardown of the fleet, once at a moment or daily at a local time."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(Text, nullable=False, server_default="destroy")
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    run_at: Mapped[dt.datetime | None] = now_column()
    time_of_day: Mapped[dt.time | None] = mapped_column(Time)
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default="UTC")
    next_run_at: Mapped[dt.datetime | None] = now_column()
    last_run_at: Mapped[dt.datetime | None] = now_column()
    last_outcome: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = now_column(nullable=False)


class LeaseColumns:
    """Which process runs a loop that must run in one process at a time, and until when."""

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    acquired_at: Mapped[dt.datetime] = now_column(nullable=False)


class SettingColumns:
    """A setting changed from the dashboard (it overrides the configuration file)."""

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = now_column(nullable=False)


class AdminSessionColumns:
    """A signed-in admin session (its token hashed), revocable on the server."""

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_name: Mapped[str] = mapped_column(Text, nullable=False)
    address: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = now_column(nullable=False)
    last_seen_at: Mapped[dt.datetime] = now_column(nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[dt.datetime | None] = now_column()


class ThrottleColumns:
    """Failed attempts per key (a login name or an address), shared by every process."""

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    window_start: Mapped[dt.datetime] = now_column(nullable=False)
    blocked_until: Mapped[dt.datetime | None] = now_column()
