"""Typed SQLAlchemy models.

The VM table's name comes from the configuration (``db.table_name``), so the mapped classes
are built per name by :func:`build_models`; their columns are declared once, in the mixins.
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
    DateTime,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def checked_identifier(name: str) -> str:
    """A table or channel name that is safe to put into SQL text (the config checks it too)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain lowercase SQL identifier: {name!r}")
    return name


VM_STATUSES = ("booting", "available", "assigned", "connected", "error", "recycling")


def _now_column(nullable: bool = True) -> Any:
    if nullable:
        return mapped_column(DateTime(timezone=True), nullable=True)
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


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
    created_at: Mapped[dt.datetime] = _now_column(nullable=False)
    registered_at: Mapped[dt.datetime | None] = _now_column()
    ready_at: Mapped[dt.datetime | None] = _now_column()
    assigned_at: Mapped[dt.datetime | None] = _now_column()
    last_heard_at: Mapped[dt.datetime | None] = _now_column()


class VMEventColumns:
    """History of registrations, assignments and status changes, written by the trigger."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = _now_column(nullable=False)


class SecretColumns:
    """Server secrets generated once and kept, so credentials survive restarts."""

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = _now_column(nullable=False)


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
    started_at: Mapped[dt.datetime] = _now_column(nullable=False)
    ended_at: Mapped[dt.datetime | None] = _now_column()


class LocalProcessColumns:
    """A local VM process, so that a restarted server can find and stop what it started."""

    hostname: Mapped[str] = mapped_column(Text, primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    owner_pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[dt.datetime] = _now_column(nullable=False)


@dataclass(frozen=True)
class Models:
    """The mapped classes and metadata for one VM table name."""

    metadata: MetaData
    vm: type[VMColumns]
    event: type[VMEventColumns]
    secret: type[SecretColumns]
    fleet_operation: type[FleetOperationColumns]
    local_process: type[LocalProcessColumns]
    table_name: str


def _vm_table_args(table: str) -> tuple[Any, ...]:
    statuses = ", ".join(f"'{s}'" for s in VM_STATUSES)
    return (
        CheckConstraint(f"status IN ({statuses})", name=f"ck_{table}_status"),
        # An assigned row always names its user; a free row never does.
        CheckConstraint(
            "(user_email IS NULL) = (status NOT IN ('assigned', 'connected'))",
            name=f"ck_{table}_holder",
        ),
        Index(
            f"ix_{table}_free",
            "registered_at",
            postgresql_where=text("status = 'available' AND user_email IS NULL"),
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
    event_args = (Index(f"ix_{table_name}_events_at", "at"),)
    return Models(
        metadata=Base.metadata,
        vm=cast(type[VMColumns], vm),
        event=cast(
            type[VMEventColumns],
            mapped("VMEvent", VMEventColumns, f"{table_name}_events", event_args),
        ),
        secret=cast(type[SecretColumns], mapped("Secret", SecretColumns, "lablink_secrets")),
        fleet_operation=cast(
            type[FleetOperationColumns],
            mapped("FleetOperation", FleetOperationColumns, "lablink_fleet_operations"),
        ),
        local_process=cast(
            type[LocalProcessColumns],
            mapped("LocalProcess", LocalProcessColumns, "lablink_local_processes"),
        ),
        table_name=table_name,
    )
