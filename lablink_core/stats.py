"""Numbers for the admin overview: VMs per status, assignments per minute, start-up times."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from lablink_core.models import checked_identifier

# SQL text here interpolates only table names that pass checked_identifier(); values are bound.


def status_counts(engine: Engine, table_name: str) -> dict[str, int]:
    """How many VMs are in each status right now."""
    table = checked_identifier(table_name)
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT status, count(*) AS n FROM {table} GROUP BY status ORDER BY status")  # noqa: S608
        ).all()
    return {str(row.status): int(row.n) for row in rows}


def assignments_per_minute(
    engine: Engine, table_name: str, *, since: dt.datetime | None = None
) -> list[tuple[dt.datetime, int]]:
    """New assignments per minute from the event history, oldest first.

    The trigger also writes 'assigned' when a researcher renews the CRD command of the VM
    they already hold; those are skipped: an assignment counts when the VM's previous
    assignment-related event was not itself 'assigned'.
    """
    table = checked_identifier(f"{table_name}_events")
    statement = text(
        f"""
        SELECT date_trunc('minute', at) AS minute, count(*) AS n
        FROM (
            SELECT at, kind,
                   lag(kind) OVER (PARTITION BY hostname ORDER BY id) AS previous
            FROM {table}
            WHERE kind IN ('created', 'assigned', 'released', 'deleted')
        ) AS history
        WHERE kind = 'assigned' AND previous IS DISTINCT FROM 'assigned'
              AND (CAST(:since AS timestamptz) IS NULL OR at >= :since)
        GROUP BY 1 ORDER BY 1
        """  # noqa: S608
    )
    with engine.connect() as connection:
        rows = connection.execute(statement, {"since": since}).all()
    return [(row.minute, int(row.n)) for row in rows]


def startup_seconds(engine: Engine, table_name: str) -> list[float]:
    """Seconds from launch (row created as 'booting') to ready, for fleet-launched VMs.

    VMs registered by hand have no launch time (their row appears when they call in), so
    only rows of a fleet provider count.
    """
    table = checked_identifier(table_name)
    statement = text(
        f"""
        SELECT EXTRACT(EPOCH FROM ready_at - created_at) AS seconds
        FROM {table}
        WHERE ready_at IS NOT NULL AND provider <> 'manual'
        ORDER BY 1
        """  # noqa: S608
    )
    with engine.connect() as connection:
        values = connection.execute(statement).scalars().all()
    return [max(0.0, float(value)) for value in values]
