"""Typed SQLAlchemy models of the schema at head.

The DDL lives in :mod:`lablink_core.ddl` (one module per revision); these classes describe
the result, and a test holds them against a migrated database. The VM table's name comes from
the configuration (``db.table_name``), so the mapped classes are built per name by
:func:`build_models`; their columns are declared once, in the mixins.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    MetaData,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lablink_core.model_columns import (
    AdminSessionColumns,
    LeaseColumns,
    ScheduleColumns,
    SettingColumns,
    ThrottleColumns,
    VMActionColumns,
    VMLogColumns,
    WaitlistColumns,
    now_column,
)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def checked_identifier(name: str) -> str:
    """A table or channel name that is safe to put into SQL text (the config checks it too)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain lowercase SQL identifier: {name!r}")
    return name


VM_STATUSES = ("booting", "available", "assigned", "connected", "error", "recycling")
HEALTH_STATES = ("healthy", "unhealthy", "unknown")
CLIENT_KINDS = ("lablink", "original")
HEALING_ACTIONS = ("rebooting", "replacing")
# A VM the claim may take (plus "heard recently", which depends on the clock): the predicate
# of the partial index the claim reads, so the two must stay word for word the same.
ASSIGNABLE_WHERE = (
    "status = 'available' AND user_email IS NULL AND health_state <> 'unhealthy' "
    "AND credential_hash IS NOT NULL AND healing IS NULL AND previous_credential_hash IS NULL"
)
WAITLIST_STATES = ("waiting", "assigned", "expired", "left")


class VMColumns:
    """One client VM: its lifecycle, who holds it, and what it last reported."""

    hostname: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="available")
    user_email: Mapped[str | None] = mapped_column(Text)
    crd_code: Mapped[str | None] = mapped_column(Text)
    crd_redirect_url: Mapped[str | None] = mapped_column(Text)
    pin: Mapped[str | None] = mapped_column(Text)
    seat_token_hash: Mapped[str | None] = mapped_column(Text)
    # Bumped on every assignment change, so a waiting VM can tell a new command from the old.
    generation: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    in_use: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    health: Mapped[str | None] = mapped_column(Text)
    status_message: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(Text, nullable=False, server_default="manual")
    instance_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = now_column(nullable=False)
    registered_at: Mapped[dt.datetime | None] = now_column()
    ready_at: Mapped[dt.datetime | None] = now_column()
    assigned_at: Mapped[dt.datetime | None] = now_column()
    last_heard_at: Mapped[dt.datetime | None] = now_column()
    # Credentials: stored hashed; the salt lets any process rebuild the current one to hand
    # it to its VM after a rotation. NULL means none is valid (never issued, or revoked).
    credential_hash: Mapped[str | None] = mapped_column(Text)
    credential_salt: Mapped[str | None] = mapped_column(Text)
    # Kept after a rotation until the VM has used the new one (see ddl.v0003).
    previous_credential_hash: Mapped[str | None] = mapped_column(Text)
    credential_issued_at: Mapped[dt.datetime | None] = now_column()
    enrolment_hash: Mapped[str | None] = mapped_column(Text)
    enrolment_expires_at: Mapped[dt.datetime | None] = now_column()
    client_kind: Mapped[str] = mapped_column(Text, nullable=False, server_default="lablink")
    health_state: Mapped[str] = mapped_column(Text, nullable=False, server_default="unknown")
    # Set while the VM long-polls /vm_startup, so the claim prefers VMs waiting right now.
    waiting: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    boot_id: Mapped[str | None] = mapped_column(Text)
    crd_active: Mapped[bool | None] = mapped_column(Boolean)
    gpu_utilization: Mapped[int | None] = mapped_column(Integer)
    disk_free_pct: Mapped[int | None] = mapped_column(Integer)
    last_activity_at: Mapped[dt.datetime | None] = now_column()
    extended_until: Mapped[dt.datetime | None] = now_column()
    extensions_used: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    heal_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    healing: Mapped[str | None] = mapped_column(Text)
    healing_since: Mapped[dt.datetime | None] = now_column()
    status_reason: Mapped[str | None] = mapped_column(Text)


class VMEventColumns:
    """History of registrations, assignments and status changes, written by the trigger."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = now_column(nullable=False)


class SecretColumns:
    """Server secrets generated once and kept, so credentials survive restarts."""

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = now_column(nullable=False)


class FleetOperationColumns:
    """One launch/scale/destroy, visible to every admin session and server process."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    provider: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default="running")
    target: Mapped[int | None] = mapped_column(Integer)
    planned: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    done: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    log: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = now_column(nullable=False)
    ended_at: Mapped[dt.datetime | None] = now_column()
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)


class LocalProcessColumns:
    """A local VM process, so that a restarted server can find and stop what it started."""

    hostname: Mapped[str] = mapped_column(Text, primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    owner_pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[dt.datetime] = now_column(nullable=False)


@dataclass(frozen=True)
class Models:
    """The mapped classes and metadata for one VM table name."""

    metadata: MetaData
    vm: type[VMColumns]
    event: type[VMEventColumns]
    secret: type[SecretColumns]
    fleet_operation: type[FleetOperationColumns]
    local_process: type[LocalProcessColumns]
    action: type[VMActionColumns]
    log: type[VMLogColumns]
    waitlist: type[WaitlistColumns]
    schedule: type[ScheduleColumns]
    lease: type[LeaseColumns]
    setting: type[SettingColumns]
    admin_session: type[AdminSessionColumns]
    throttle: type[ThrottleColumns]
    table_name: str


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _vm_table_args(table: str) -> tuple[Any, ...]:
    return (
        CheckConstraint(_in("status", VM_STATUSES), name=f"ck_{table}_status"),
        # An assigned row always names its user; a free row never does.
        CheckConstraint(
            "(user_email IS NULL) = (status NOT IN ('assigned', 'connected'))",
            name=f"ck_{table}_holder",
        ),
        CheckConstraint(_in("health_state", HEALTH_STATES), name=f"ck_{table}_health_state"),
        CheckConstraint(_in("client_kind", CLIENT_KINDS), name=f"ck_{table}_client_kind"),
        CheckConstraint(_in("healing", HEALING_ACTIONS), name=f"ck_{table}_healing"),
        # What the claim reads: free, healthy, credentialed VMs, waiting ones first.
        Index(
            f"ix_{table}_assignable",
            text("waiting DESC"),
            text("last_heard_at DESC"),
            postgresql_where=text(ASSIGNABLE_WHERE),
        ),
        # One email holds at most one VM: the database says so, not Python.
        Index(
            f"uq_{table}_user_email",
            "user_email",
            unique=True,
            postgresql_where=text("user_email IS NOT NULL"),
        ),
    )


@functools.cache
def build_models(table_name: str = "vms") -> Models:
    """Mapped classes for a VM table called ``table_name`` (cached: one set per name)."""

    class Base(DeclarativeBase):
        pass

    def mapped(name: str, mixin: type, table: str, args: tuple[Any, ...] = ()) -> type:
        attrs: dict[str, Any] = {"__tablename__": table, "__table_args__": args}
        return type(name, (mixin, Base), attrs)

    vm = mapped("VM", VMColumns, table_name, _vm_table_args(table_name))
    t = table_name

    def typed(name: str, mixin: type, table: str, args: tuple[Any, ...] = ()) -> Any:
        return mapped(name, mixin, table, args)

    return Models(
        metadata=Base.metadata,
        vm=cast(type[VMColumns], vm),
        event=typed("VMEvent", VMEventColumns, f"{t}_events", (Index(f"ix_{t}_events_at", "at"),)),
        secret=typed("Secret", SecretColumns, "lablink_secrets"),
        fleet_operation=typed("FleetOperation", FleetOperationColumns, "lablink_fleet_operations"),
        local_process=typed("LocalProcess", LocalProcessColumns, "lablink_local_processes"),
        action=typed("VMAction", VMActionColumns, f"{t}_actions"),
        log=typed("VMLog", VMLogColumns, f"{t}_logs"),
        waitlist=typed("WaitlistEntry", WaitlistColumns, f"{t}_waitlist"),
        schedule=typed("Schedule", ScheduleColumns, "lablink_schedules"),
        lease=typed("Lease", LeaseColumns, "lablink_leases"),
        setting=typed("Setting", SettingColumns, "lablink_settings"),
        admin_session=typed("AdminSession", AdminSessionColumns, "lablink_admin_sessions"),
        throttle=typed("Throttle", ThrottleColumns, "lablink_throttle"),
        table_name=table_name,
    )
