"""The live table's rows as a DataFrame, and the difference between two such frames."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

TITLES = {  # column -> title, in display order
    "hostname": "Hostname",
    "status": "Status",
    "user_email": "User email",
    "in_use": "In use",
    "health": "Health",
    "last_heard_s": "Last heard (s ago)",
    "age_s": "Age (s)",
    "unresponsive": "Unresponsive",
}
COLUMNS = tuple(TITLES)


def _seconds_since(moment: object, now: dt.datetime) -> float:
    if not isinstance(moment, dt.datetime):
        return math.nan
    return float(max(0, round((now - moment).total_seconds())))


def vm_frame(rows: Sequence[dict[str, Any]], now: dt.datetime | None = None) -> pd.DataFrame:
    """The table's rows as a DataFrame indexed by hostname, with ages in whole seconds."""
    now = now or dt.datetime.now(dt.UTC)
    records = [
        {
            "hostname": str(row["hostname"]),
            "status": str(row.get("status") or ""),
            "user_email": str(row.get("user_email") or ""),
            "in_use": bool(row.get("in_use")),
            "health": str(row.get("health") or ""),
            "last_heard_s": _seconds_since(row.get("last_heard_at"), now),
            "age_s": _seconds_since(row.get("created_at"), now),
            "unresponsive": bool(row.get("unresponsive")),
        }
        for row in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    text = dict.fromkeys(("hostname", "status", "user_email", "health"), object)
    frame = frame.astype({**text, "in_use": bool, "unresponsive": bool})
    frame = frame.astype({"last_heard_s": float, "age_s": float})
    frame.index = pd.Index(frame["hostname"].to_numpy(), name="vm", dtype=object)
    return frame


def changed_cells(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, list[tuple[Any, Any]]]:
    """Per column, (hostname, new value) for every cell that differs (same rows assumed)."""
    patch: dict[str, list[tuple[Any, Any]]] = {}
    for column in new.columns:
        before, after = old[column], new[column]
        differs = ~((before == after) | (before.isna() & after.isna()))
        if differs.any():
            patch[column] = list(after[differs].items())
    return patch


def row_changes(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, list[tuple[Any, Any]]] | None:
    """:func:`changed_cells` when both frames hold the same rows and columns, else None."""
    if not old.index.equals(new.index) or list(old.columns) != list(new.columns):
        return None
    return changed_cells(old, new)
