"""The few writes to the VM table that only the fleet makes: names ever used, VMs retired
before they go, marked stopped with their process or while a heal action runs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, text

from lablink_core.models import checked_identifier


class FleetTable:
    """The few writes to the VM table that only the fleet makes."""

    def __init__(self, engine: Engine, table_name: str, name_prefix: str) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name)
        self.name_prefix = name_prefix

    def used_names(self) -> list[str]:
        """Every name the table has ever held (its event history remembers the deleted),
        so a destroyed VM's name, and so its credential, is never given to a new VM."""
        pattern = self.name_prefix.replace("_", r"\_") + "-%"
        statement = text(
            f"SELECT hostname FROM {self._table} WHERE hostname LIKE :pattern "  # noqa: S608
            f"UNION SELECT DISTINCT hostname FROM {self._table}_events "
            "WHERE hostname LIKE :pattern"
        )
        with self._engine.connect() as connection:
            return list(connection.execute(statement, {"pattern": pattern}).scalars())

    def retire(self, names: Sequence[str]) -> list[str]:
        """Mark unassigned VMs about to go as 'recycling', so no researcher gets one now."""
        statement = text(
            f"UPDATE {self._table} SET status = 'recycling' "  # noqa: S608
            "WHERE hostname = ANY(:names) AND user_email IS NULL RETURNING hostname"
        )
        with self._engine.begin() as connection:
            return list(connection.execute(statement, {"names": list(names)}).scalars())

    def mark_healing(self, hostname: str, action: str, reason: str) -> None:
        """A heal action starts: the VM is out of the pool until it is back (its next poll
        or "ready" report clears ``healing``). A recycled VM's replacement is a new start,
        not a repair, so it does not count as one."""
        statement = text(
            f"UPDATE {self._table} SET waiting = false, healing_since = now(), "  # noqa: S608
            "healing = :healing, status_reason = :reason, "
            "heal_attempts = CASE WHEN status = 'recycling' THEN 0 ELSE heal_attempts + 1 END, "
            "status = CASE WHEN status = 'recycling' THEN 'booting' ELSE status END "
            "WHERE hostname = :hostname"
        )
        healing = "rebooting" if action == "reboot" else "replacing"
        with self._engine.begin() as connection:
            connection.execute(
                statement, {"hostname": hostname, "healing": healing, "reason": reason}
            )

    def mark_stopped(self, names: Sequence[str], message: str) -> None:
        """VMs whose process is gone: not waiting, assigned ones no longer "connected"."""
        if not names:
            return
        statement = text(
            f"UPDATE {self._table} SET waiting = false, status_message = :message, "  # noqa: S608
            "status = CASE WHEN status = 'connected' THEN 'assigned' "
            "WHEN status = 'available' THEN 'booting' ELSE status END "
            "WHERE hostname = ANY(:names)"
        )
        with self._engine.begin() as connection:
            connection.execute(statement, {"names": list(names), "message": message})

    def unretire(self, names: Sequence[str]) -> None:
        """After a failure: VMs still there go back to 'booting' (their next poll makes them
        available again)."""
        if not names:
            return
        statement = text(
            f"UPDATE {self._table} SET status = 'booting' "  # noqa: S608
            "WHERE hostname = ANY(:names) AND status = 'recycling' AND user_email IS NULL"
        )
        with self._engine.begin() as connection:
            connection.execute(statement, {"names": list(names)})
