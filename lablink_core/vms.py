"""The VM side of the table: registration, what a VM should run, status reports, listing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, text

from lablink_core.crd import CrdCommand
from lablink_core.db import reconnecting
from lablink_core.errors import InvalidInput, NotFound
from lablink_core.models import checked_identifier
from lablink_core.validation import validate_hostname

REPORTED_STATUSES = ("booting", "ready", "connected", "error")
MAX_MESSAGE_LENGTH = 500
MAX_HEALTH_LENGTH = 200


@dataclass(frozen=True)
class VMTask:
    """What a VM should be doing: nothing yet, or run CRD with this code and PIN."""

    hostname: str
    generation: int
    crd: CrdCommand | None
    pin: str | None

    @property
    def assigned(self) -> bool:
        return self.crd is not None

    def as_json(self) -> dict[str, Any]:
        if self.crd is None:
            return {"hostname": self.hostname, "assigned": False, "generation": self.generation}
        return {
            "hostname": self.hostname,
            "assigned": True,
            "generation": self.generation,
            "crd_command": self.crd.canonical(),
            "code": self.crd.code,
            "redirect_url": self.crd.redirect_url,
            "pin": self.pin,
        }


@dataclass(frozen=True)
class VMStatusReport:
    """A VM's own account of itself, validated."""

    status: str
    in_use: bool = False
    health: str | None = None
    message: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> VMStatusReport:
        status = body.get("status")
        if status not in REPORTED_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(REPORTED_STATUSES)}", field="status"
            )
        in_use = body.get("in_use", False)
        if not isinstance(in_use, bool):
            raise InvalidInput("in_use must be true or false", field="in_use")
        health = _optional_text(body.get("health"), "health", MAX_HEALTH_LENGTH)
        message = _optional_text(body.get("message"), "message", MAX_MESSAGE_LENGTH)
        return cls(str(status), in_use, health, message)


def _optional_text(value: object, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{field} must be at most {limit} characters", field=field)
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def _task(row: Row[Any]) -> VMTask:
    crd = None
    if row.user_email is not None and row.crd_code is not None:
        crd = CrdCommand(code=row.crd_code, redirect_url=row.crd_redirect_url)
    return VMTask(row.hostname, row.generation, crd, row.pin if crd else None)


_TASK_COLUMNS = "hostname, generation, user_email, crd_code, crd_redirect_url, pin"


class VMRegistry:
    """Registers VMs, answers what each should run, and records what they report."""

    def __init__(self, engine: Engine, table_name: str) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name)

    @property
    def table_name(self) -> str:
        return self._table

    @reconnecting
    def register(self, hostname: object, *, provider: str = "manual") -> VMTask:
        """First contact (or a poll) from a VM: insert or refresh it, return its task."""
        name = validate_hostname(hostname)
        statement = text(
            f"""
            INSERT INTO {self._table} AS vm
                (hostname, status, provider, registered_at, ready_at, last_heard_at)
            VALUES (:hostname, 'available', :provider, now(), now(), now())
            ON CONFLICT (hostname) DO UPDATE SET
                last_heard_at = now(),
                registered_at = COALESCE(vm.registered_at, now()),
                ready_at = CASE WHEN vm.status = 'booting' THEN now() ELSE vm.ready_at END,
                status = CASE WHEN vm.status = 'booting' THEN 'available' ELSE vm.status END
            RETURNING {_TASK_COLUMNS}
            """
        )
        with self._engine.begin() as connection:
            row = connection.execute(statement, {"hostname": name, "provider": provider}).one()
        return _task(row)

    @reconnecting
    def tasks(self, hostnames: Sequence[str]) -> dict[str, VMTask]:
        """Current tasks of many VMs in one query (the listener wakes waiters in batches)."""
        if not hostnames:
            return {}
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(f"SELECT {_TASK_COLUMNS} FROM {self._table} WHERE hostname = ANY(:names)"),
                {"names": list(hostnames)},
            ).all()
        return {row.hostname: _task(row) for row in rows}

    @reconnecting
    def report(self, hostname: object, report: VMStatusReport) -> None:
        """Record a VM's status report and heartbeat without touching its assignment."""
        name = validate_hostname(hostname)
        statement = text(
            f"""
            UPDATE {self._table} SET
                last_heard_at = now(), in_use = :in_use, health = :health,
                status_message = :message,
                status = CASE
                    WHEN :status = 'connected' AND user_email IS NOT NULL THEN 'connected'
                    WHEN :status = 'ready' AND user_email IS NULL
                         AND status IN ('booting', 'error') THEN 'available'
                    WHEN :status = 'error' AND user_email IS NULL
                         AND status <> 'recycling' THEN 'error'
                    ELSE status END,
                ready_at = CASE WHEN :status = 'ready' AND ready_at IS NULL THEN now()
                                ELSE ready_at END
            WHERE hostname = :hostname
            """
        )
        params = {
            "hostname": name,
            "status": report.status,
            "in_use": report.in_use,
            "health": report.health,
            "message": report.message,
        }
        with self._engine.begin() as connection:
            if connection.execute(statement, params).rowcount == 0:
                raise NotFound(f"No VM named {name} is registered; call /vm_startup first.")

    @reconnecting
    def add_booting(self, hostnames: Iterable[str], *, provider: str) -> None:
        """Rows for VMs a fleet just launched, before they call in."""
        rows = [{"hostname": validate_hostname(h), "provider": provider} for h in hostnames]
        if not rows:
            return
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"INSERT INTO {self._table} (hostname, status, provider) "
                    "VALUES (:hostname, 'booting', :provider) ON CONFLICT (hostname) DO NOTHING"
                ),
                rows,
            )

    @reconnecting
    def remove(self, hostnames: Iterable[str]) -> int:
        """Forget VMs that a fleet destroyed."""
        names = [validate_hostname(h) for h in hostnames]
        with self._engine.begin() as connection:
            result = connection.execute(
                text(f"DELETE FROM {self._table} WHERE hostname = ANY(:names)"), {"names": names}
            )
        return int(result.rowcount)

    @reconnecting
    def list(self, *, unresponsive_after: float = 120.0) -> list[dict[str, Any]]:
        """Every VM as a plain dict, with ``unresponsive`` derived from the last heartbeat."""
        statement = text(
            f"""
            SELECT hostname, status, user_email, in_use, health, status_message, provider,
                   instance_id, generation, created_at, registered_at, ready_at, assigned_at,
                   last_heard_at,
                   (last_heard_at IS NOT NULL
                    AND last_heard_at < now() - make_interval(secs => :silence)) AS unresponsive
            FROM {self._table} ORDER BY created_at, hostname
            """
        )
        with self._engine.connect() as connection:
            rows = connection.execute(statement, {"silence": unresponsive_after}).mappings().all()
        return [dict(row) for row in rows]

    @reconnecting
    def counts(self) -> dict[str, int]:
        """How many VMs are in each status."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(f"SELECT status, count(*) AS n FROM {self._table} GROUP BY status")
            ).all()
        return {str(row.status): int(row.n) for row in rows}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
