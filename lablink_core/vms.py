"""The VM side of the table: registration, what a VM should run, status reports, listing.

Every statement a VM's call makes also checks its credential (``credential_hash = :proof``),
so an unknown hostname, a revoked credential and a wrong one all come out the same: nothing
matches, and the caller answers 401. Nothing here creates a row from a VM's call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Row, text

from lablink_core.crd import CrdCommand
from lablink_core.db import reconnecting, single_statement
from lablink_core.errors import NotFound
from lablink_core.models import checked_identifier
from lablink_core.reports import VMReport
from lablink_core.validation import validate_hostname
from lablink_core.vm_tasks import VMTask

__all__ = ["VMRegistry", "VMTask", "utc_now"]

_TASK_COLUMNS = (
    "hostname, generation, user_email, crd_code, crd_redirect_url, pin, "
    "credential_hash, credential_salt, previous_credential_hash, client_kind"
)
_LIST_COLUMNS = (
    "hostname, status, user_email, in_use, health, health_state, status_message, "
    "status_reason, provider, instance_id, client_kind, generation, waiting, crd_active, "
    "gpu_utilization, disk_free_pct, healing, heal_attempts, created_at, registered_at, "
    "ready_at, assigned_at, last_heard_at, last_activity_at"
)


def task_from_values(values: Sequence[Any]) -> VMTask:
    """A VMTask from a row of ``_TASK_COLUMNS``, in that order (a plain psycopg2 tuple too)."""
    hostname, generation, email, code, redirect_url, pin, hashed, salt, previous, kind = values
    crd = None
    if email is not None and code is not None:
        crd = CrdCommand(code=code, redirect_url=redirect_url)
    return VMTask(hostname, generation, crd, pin if crd else None, hashed, salt, kind, previous)


def _task(row: Row[Any]) -> VMTask:
    return task_from_values(tuple(row))


_REPORT = """
UPDATE {table} SET
    last_heard_at = now(),
    in_use = COALESCE(CAST(:in_use AS boolean), in_use),
    health = COALESCE(CAST(:health AS text), health),
    health_state = COALESCE(CAST(:gpu_state AS text), health_state),
    status_message = CASE WHEN :sets_message THEN CAST(:message AS text)
                          ELSE status_message END,
    crd_active = COALESCE(CAST(:crd_active AS boolean), crd_active),
    gpu_utilization = COALESCE(CAST(:gpu_utilization AS integer), gpu_utilization),
    boot_id = COALESCE(CAST(:boot_id AS text), boot_id),
    disk_free_pct = COALESCE(CAST(:disk_free_pct AS integer), disk_free_pct),
    last_activity_at = CASE
        WHEN CAST(:crd_active AS boolean) OR CAST(:gpu_utilization AS integer) >= :busy
        THEN now() ELSE last_activity_at END,
    status = CASE
        WHEN :status = 'connected' AND user_email IS NOT NULL THEN 'connected'
        WHEN :status = 'ready' AND user_email IS NULL
             AND status IN ('booting', 'error') THEN 'available'
        WHEN :status = 'error' AND user_email IS NULL
             AND status <> 'recycling' THEN 'error'
        ELSE status END,
    ready_at = CASE WHEN :status = 'ready' AND ready_at IS NULL THEN now() ELSE ready_at END,
    healing = CASE WHEN :status IN ('ready', 'connected') THEN NULL ELSE healing END,
    previous_credential_hash = NULL
WHERE hostname = :hostname AND credential_hash = :proof
"""


class VMRegistry:
    """Registers VMs, answers what each should run, and records what they report."""

    def __init__(self, engine: Engine, table_name: str, *, busy_percent: int = 10) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name)
        self.busy_percent = busy_percent
        self.tasks_statement = text(
            f"SELECT {_TASK_COLUMNS} FROM {self._table} WHERE hostname = ANY(:names)"
        )

    @property
    def table_name(self) -> str:
        return self._table

    @reconnecting
    def register(self, hostname: object, proof: str, client_kind: str = "lablink") -> VMTask | None:
        """A poll of /vm_startup: the VM is alive and waiting; its task, or None if the
        hostname and credential match no VM."""
        name = validate_hostname(hostname)
        statement = text(
            f"""
            UPDATE {self._table} AS vm SET
                last_heard_at = now(), waiting = true, client_kind = :client_kind,
                registered_at = COALESCE(vm.registered_at, now()),
                ready_at = CASE WHEN vm.status = 'booting' THEN now() ELSE vm.ready_at END,
                status = CASE WHEN vm.status = 'booting' THEN 'available' ELSE vm.status END,
                healing = NULL,
                -- A call with the new credential acknowledges a rotation.
                previous_credential_hash = CASE WHEN credential_hash = :proof THEN NULL
                                                ELSE previous_credential_hash END
            WHERE hostname = :hostname
                AND (credential_hash = :proof OR previous_credential_hash = :proof)
            RETURNING {_TASK_COLUMNS}
            """
        )
        params = {"hostname": name, "proof": proof, "client_kind": client_kind}
        with single_statement(self._engine) as connection:
            row = connection.execute(statement, params).first()
        return None if row is None else _task(row)

    @reconnecting
    def tasks(self, hostnames: Sequence[str]) -> dict[str, VMTask]:
        """Current tasks of many VMs in one query (the listener wakes waiters in batches)."""
        if not hostnames:
            return {}
        with single_statement(self._engine) as connection:
            rows = connection.execute(self.tasks_statement, {"names": list(hostnames)}).all()
        return {row.hostname: _task(row) for row in rows}

    @reconnecting
    def report(self, hostname: object, proof: str, report: VMReport) -> bool:
        """Record a VM's report and heartbeat without touching its assignment. False when
        the hostname and credential match no VM."""
        name = validate_hostname(hostname)
        params = {
            "hostname": name,
            "proof": proof,
            "busy": self.busy_percent,
            "status": report.status,
            "in_use": report.in_use,
            "health": report.health,
            "gpu_state": report.gpu_state,
            "message": report.message,
            "sets_message": report.sets_message,
            "crd_active": report.crd_active,
            "gpu_utilization": report.gpu_utilization,
            "boot_id": report.boot_id,
            "disk_free_pct": report.disk_free_pct,
        }
        with single_statement(self._engine) as connection:
            result = connection.execute(text(_REPORT.format(table=self._table)), params)
        return result.rowcount == 1

    @reconnecting
    def touch_waiting(self, hostnames: Sequence[str]) -> int:
        """VMs waiting on this process right now are alive: the process vouches for them."""
        if not hostnames:
            return 0
        with single_statement(self._engine) as connection:
            result = connection.execute(
                text(
                    f"UPDATE {self._table} SET last_heard_at = now(), waiting = true "
                    "WHERE hostname = ANY(:names)"
                ),
                {"names": list(hostnames)},
            )
        return int(result.rowcount)

    @reconnecting
    def stop_waiting(self, hostname: str) -> None:
        """The VM hung up its long poll (the claim then prefers VMs still waiting)."""
        with single_statement(self._engine) as connection:
            connection.execute(
                text(f"UPDATE {self._table} SET waiting = false WHERE hostname = :h"),
                {"h": hostname},
            )

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
        """Forget VMs that a fleet destroyed (their credentials die with their rows)."""
        names = [validate_hostname(h) for h in hostnames]
        with self._engine.begin() as connection:
            result = connection.execute(
                text(f"DELETE FROM {self._table} WHERE hostname = ANY(:names)"), {"names": names}
            )
        return int(result.rowcount)

    def _select(self, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        statement = text(
            f"""
            SELECT {_LIST_COLUMNS},
                   (last_heard_at IS NOT NULL
                    AND last_heard_at < now() - make_interval(secs => :silence)) AS unresponsive,
                   (credential_hash IS NULL) AS credential_revoked
            FROM {self._table} WHERE {where} ORDER BY created_at, hostname
            """
        )
        with single_statement(self._engine) as connection:
            rows = connection.execute(statement, params).mappings().all()
        return [dict(row) for row in rows]

    @reconnecting
    def list(self, *, unresponsive_after: float = 120.0) -> list[dict[str, Any]]:
        """Every VM as a plain dict (no secrets), with ``unresponsive`` derived from the last
        time it was heard from: such a VM is out of the free pool until it speaks again."""
        return self._select("true", {"silence": unresponsive_after})

    @reconnecting
    def get(self, hostname: object, *, unresponsive_after: float = 120.0) -> dict[str, Any]:
        """One VM as :meth:`list` shows it; NotFound if there is none."""
        name = validate_hostname(hostname)
        rows = self._select("hostname = :h", {"silence": unresponsive_after, "h": name})
        if not rows:
            raise NotFound(f"No VM named {name}.", field="hostname")
        return rows[0]

    @reconnecting
    def counts(self) -> dict[str, int]:
        """How many VMs are in each status."""
        with single_statement(self._engine) as connection:
            rows = connection.execute(
                text(f"SELECT status, count(*) AS n FROM {self._table} GROUP BY status")
            ).all()
        return {str(row.status): int(row.n) for row in rows}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
