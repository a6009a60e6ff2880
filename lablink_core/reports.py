"""What VMs tell the allocator about themselves, validated into one :class:`VMReport`.

Two clients speak to us. Ours posts everything to ``/api/vm/status``. The original LabLink
client (CRD era) has four routes, each carrying a part: ``/api/heartbeat``,
``/api/update_inuse_status``, ``/api/gpu_health`` and ``/api/vm-status``. Each parser below
returns a report in which only what that message said is set; the rest is left as it was.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lablink_core.errors import InvalidInput

REPORTED_STATUSES = ("booting", "ready", "connected", "error")
GPU_STATES = ("healthy", "unhealthy", "unknown")
MAX_MESSAGE_LENGTH = 500
MAX_HEALTH_LENGTH = 200
_BOOT_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
# The original client's words for its status, in ours (None: it says nothing about it).
_ORIGINAL_STATUSES = {
    "initializing": "booting",
    "running": "ready",
    "rebooting": None,
    "error": "error",
}
_ORIGINAL_GPU = {"Healthy": "healthy", "Unhealthy": "unhealthy", "N/A": "unknown"}
# Our client's health text when it could not tell (the GPU is not known to be broken).
_UNKNOWN_HEALTH = ("no gpu", "nvidia-smi not found", "health check failed")
_UNHEALTHY_HEALTH = ("nvidia-smi failed", "nvidia-smi timed out", "listed no gpu")


@dataclass(frozen=True)
class VMReport:
    """A VM's account of itself. ``None`` fields (and ``message`` unless ``sets_message``)
    leave the stored value as it was."""

    status: str | None = None  # one of REPORTED_STATUSES
    in_use: bool | None = None
    health: str | None = None  # free text, shown to admins
    gpu_state: str | None = None  # one of GPU_STATES
    message: str | None = None
    sets_message: bool = False
    crd_active: bool | None = None  # a remote desktop client is connected now
    gpu_utilization: int | None = None  # percent
    boot_id: str | None = None
    disk_free_pct: int | None = None


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


def _optional_bool(value: object, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(f"{field} must be true or false", field=field)


def _optional_percent(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidInput(f"{field} must be a number from 0 to 100", field=field)
    return round(value)


def _optional_boot_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _BOOT_ID.fullmatch(value):
        raise InvalidInput("boot_id must be the kernel's boot id", field="boot_id")
    return value.lower()


def _choice(value: object, field: str, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise InvalidInput(f"{field} must be one of {', '.join(choices)}", field=field)
    return str(value)


def gpu_state_from_health(health: str | None) -> str | None:
    """Our older clients send only a line of text: read healthy, unhealthy or unknown off it."""
    if health is None:
        return None
    lowered = health.lower()
    if any(mark in lowered for mark in _UNHEALTHY_HEALTH):
        return "unhealthy"
    if any(mark in lowered for mark in _UNKNOWN_HEALTH):
        return "unknown"
    return "healthy" if health.strip() else "unknown"


def parse_status_report(body: Mapping[str, Any]) -> VMReport:
    """Our client's ``POST /api/vm/status``."""
    status = body.get("status")
    if status not in REPORTED_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(REPORTED_STATUSES)}", field="status")
    in_use = _optional_bool(body.get("in_use", False), "in_use")
    health = _optional_text(body.get("health"), "health", MAX_HEALTH_LENGTH)
    gpu_state = _choice(body.get("gpu_state"), "gpu_state", GPU_STATES)
    return VMReport(
        status=str(status),
        in_use=bool(in_use),
        health=health,
        gpu_state=gpu_state or gpu_state_from_health(health),
        message=_optional_text(body.get("message"), "message", MAX_MESSAGE_LENGTH),
        sets_message=True,
        crd_active=_optional_bool(body.get("crd_active"), "crd_active"),
        gpu_utilization=_optional_percent(body.get("gpu_utilization"), "gpu_utilization"),
        boot_id=_optional_boot_id(body.get("boot_id")),
        disk_free_pct=_optional_percent(body.get("disk_free_pct"), "disk_free_pct"),
    )


def _timestamp(value: object) -> None:
    if value is None:
        return
    try:
        dt.datetime.fromisoformat(str(value))
    except ValueError as error:
        raise InvalidInput("timestamp must be ISO 8601", field="timestamp") from error


def parse_original_heartbeat(body: Mapping[str, Any]) -> VMReport:
    """``POST /api/heartbeat``: vm_id, boot_id, timestamp, crd_active, disk_free_pct."""
    _timestamp(body.get("timestamp"))
    return VMReport(
        crd_active=_optional_bool(body.get("crd_active"), "crd_active"),
        boot_id=_optional_boot_id(body.get("boot_id")),
        disk_free_pct=_optional_percent(body.get("disk_free_pct"), "disk_free_pct"),
    )


def parse_original_in_use(body: Mapping[str, Any]) -> VMReport:
    """``POST /api/update_inuse_status``: hostname and status (true while its software runs)."""
    in_use = _optional_bool(body.get("status"), "status")
    if in_use is None:
        raise InvalidInput("status must be true or false", field="status")
    return VMReport(in_use=in_use)


def parse_original_gpu_health(body: Mapping[str, Any]) -> VMReport:
    """``POST /api/gpu_health``: hostname and gpu_status (Healthy, Unhealthy or N/A)."""
    value = body.get("gpu_status")
    if value not in _ORIGINAL_GPU:
        raise InvalidInput("gpu_status must be Healthy, Unhealthy or N/A", field="gpu_status")
    return VMReport(health=f"GPU {value}", gpu_state=_ORIGINAL_GPU[str(value)])


def parse_original_vm_status(body: Mapping[str, Any]) -> VMReport:
    """``POST /api/vm-status``: hostname and status (initializing, running, rebooting, error)."""
    value = body.get("status")
    if value not in _ORIGINAL_STATUSES:
        choices = ", ".join(_ORIGINAL_STATUSES)
        raise InvalidInput(f"status must be one of {choices}", field="status")
    messages = {"rebooting": "the VM is rebooting", "error": "the VM's client reported an error"}
    return VMReport(
        status=_ORIGINAL_STATUSES[str(value)],
        message=messages.get(str(value)),
        sets_message=value != "initializing",
    )
