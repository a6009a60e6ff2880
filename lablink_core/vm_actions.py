"""Why things happened to VMs: every action of the healer, the reclaimer, a schedule, an
admin or a researcher, with its reason, in ``<table>_actions``. Admins see it per VM (the
instance table, ``/api/vms``); a researcher whose VM was taken back is told the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, text

from lablink_core.db import reconnecting
from lablink_core.models import checked_identifier

ACTORS = ("healer", "reclaim", "schedule", "admin", "researcher", "system")
_COLUMNS = "id, hostname, action, reason, actor, user_email, outcome, detail, at"


class ActionLog:
    """Writes and reads one VM table's action history."""

    def __init__(self, engine: Engine, table_name: str) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name) + "_actions"

    def record_in(
        self,
        connection: Connection,
        hostname: str,
        action: str,
        reason: str,
        *,
        actor: str,
        email: str | None = None,
        outcome: str | None = None,
        detail: str | None = None,
    ) -> int:
        """Record in the caller's transaction (so the action and its record commit together)."""
        if actor not in ACTORS:
            raise ValueError(f"actor must be one of {', '.join(ACTORS)}")
        value = connection.execute(
            text(
                f"INSERT INTO {self._table} "
                "(hostname, action, reason, actor, user_email, outcome, detail) "
                "VALUES (:hostname, :action, :reason, :actor, :email, :outcome, :detail) "
                "RETURNING id"
            ),
            {
                "hostname": hostname,
                "action": action,
                "reason": reason[:1000],
                "actor": actor,
                "email": email,
                "outcome": outcome,
                "detail": (detail or "")[:4000] or None,
            },
        ).scalar_one()
        return int(value)

    @reconnecting
    def record(self, hostname: str, action: str, reason: str, **kwargs: Any) -> int:
        """Record in a transaction of its own."""
        with self._engine.begin() as connection:
            return self.record_in(connection, hostname, action, reason, **kwargs)

    @reconnecting
    def for_vm(self, hostname: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest actions on one VM, newest first."""
        return self._select("WHERE hostname = :h", {"h": hostname, "n": limit})

    @reconnecting
    def latest(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest actions on any VM, newest first (the admin overview's feed)."""
        return self._select("", {"n": limit})

    @reconnecting
    def latest_by_vm(self, hostnames: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Each VM's latest action (for the instance table's reason column)."""
        where = "" if hostnames is None else "WHERE hostname = ANY(:names)"
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    f"SELECT DISTINCT ON (hostname) {_COLUMNS} FROM {self._table} {where} "
                    "ORDER BY hostname, id DESC"
                ),
                {"names": list(hostnames or [])},
            ).mappings()
            return {str(row["hostname"]): dict(row) for row in rows}

    @reconnecting
    def last_for_email(self, email: str, since_id: int = 0) -> dict[str, Any] | None:
        """What last happened to this researcher's VM (why it was taken back, say)."""
        rows = self._select(
            "WHERE user_email = :e AND id > :since", {"e": email, "since": since_id, "n": 1}
        )
        return rows[0] if rows else None

    def _select(self, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(f"SELECT {_COLUMNS} FROM {self._table} {where} ORDER BY id DESC LIMIT :n"),
                params,
            ).mappings()
            return [dict(row) for row in rows]
