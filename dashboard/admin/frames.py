"""The live table's rows as a DataFrame, and the difference between two such frames."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from dashboard.states import vm_state

TITLES = {  # column -> title, in display order
    "hostname": "Hostname",
    "status": "State",
    "user_email": "Researcher",
    "in_use": "Desktop",
    "health": "GPU",
    "last_heard_s": "Heard",
    "age_s": "Age (s)",
    "reason": "Why",
}
COLUMNS = tuple(TITLES)
TEXT_COLUMNS = ("hostname", "status", "user_email", "health", "reason")


def _seconds_since(moment: object, now: dt.datetime) -> float:
    if not isinstance(moment, dt.datetime):
        return math.nan
    return float(max(0, round((now - moment).total_seconds())))


def _health(row: Mapping[str, Any]) -> str:
    health = str(row.get("health") or "")
    used = row.get("gpu_utilization")
    if isinstance(used, int) and not isinstance(used, bool):
        return f"{health} (GPU {used} %)" if health else f"GPU {used} %"
    return health


def vm_record(
    row: Mapping[str, Any], action: Mapping[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    """One row of the table: the state a person reads (see :mod:`dashboard.states`)."""
    state = vm_state(row, action, now)
    return {
        "hostname": str(row["hostname"]),
        "status": state.key,
        "user_email": str(row.get("user_email") or ""),
        "in_use": bool(row.get("in_use") or row.get("crd_active")),
        "health": _health(row),
        "last_heard_s": _seconds_since(row.get("last_heard_at"), now),
        "age_s": _seconds_since(row.get("created_at"), now),
        "reason": state.reason,
    }


def vm_frame(
    rows: Sequence[Mapping[str, Any]],
    now: dt.datetime | None = None,
    actions: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """The table's rows as a DataFrame indexed by hostname, with ages in whole seconds;
    ``actions`` (hostname -> latest action) gives the reasons rows do not carry."""
    now = now or dt.datetime.now(dt.UTC)
    latest = actions or {}
    records = [vm_record(row, latest.get(str(row["hostname"])), now) for row in rows]
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    text = dict.fromkeys(TEXT_COLUMNS, object)
    frame = frame.astype({**text, "in_use": bool})
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
