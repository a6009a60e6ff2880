"""The agent's settings: `AgentConfig`, and how it is read from the environment.

Each setting has a LabLink name and, where the original (CRD-era) LabLink client had one,
that name as a fallback, so an existing image's environment keeps working:

=========================  ========================  ========================================
setting                    variable                  fallback (original client)
=========================  ========================  ========================================
allocator URL              LABLINK_ALLOCATOR_URL     ALLOCATOR_URL
VM credential              LABLINK_VM_CREDENTIAL     API_TOKEN
hostname                   LABLINK_HOSTNAME          VM_NAME (then the machine's host name)
repository to clone        LABLINK_REPOSITORY        TUTORIAL_REPO_TO_CLONE
=========================  ========================  ========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lablink_core.client.credential_store import is_credential
from lablink_core.client.repository import configured_repository
from lablink_core.errors import InvalidInput
from lablink_core.validation import validate_hostname

DEFAULT_RECORD: Final = "crd-record.jsonl"
DEFAULT_BOOT_LOG: Final = Path("/var/log/cloud-init-output.log")
FALLBACKS: Final = {
    "LABLINK_ALLOCATOR_URL": "ALLOCATOR_URL",
    "LABLINK_VM_CREDENTIAL": "API_TOKEN",
    "LABLINK_HOSTNAME": "VM_NAME",
    "LABLINK_REPOSITORY": "TUTORIAL_REPO_TO_CLONE",
}


@dataclass(frozen=True)
class AgentConfig:
    allocator_url: str
    hostname: str
    credential: str = field(default="", repr=False)  # out of repr so it never lands in a log
    dry_run: bool = False
    record_path: Path | None = None
    heartbeat_seconds: float = 15.0
    poll_timeout: float = 75.0
    max_backoff: float = 30.0
    credential_file: Path | None = None
    enrolment_token: str = field(default="", repr=False)
    repository: str | None = None
    desktop_dir: Path | None = None
    desktop_user: str | None = None
    boot_log: Path | None = None
    desktop_state_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.allocator_url.startswith(("http://", "https://")):
            raise InvalidInput(
                "allocator URL must start with http:// or https://", field="allocator_url"
            )
        if validate_hostname(self.hostname) != self.hostname:
            raise InvalidInput("hostname must be lowercase", field="hostname")
        # Both go into HTTP requests: whitespace or control characters would break them.
        if self.credential and not is_credential(self.credential):
            raise InvalidInput(
                "credential must be printable ASCII without spaces", field="credential"
            )
        if self.enrolment_token and not is_credential(self.enrolment_token):
            raise InvalidInput(
                "enrolment token must be printable ASCII without spaces", field="enrolment_token"
            )
        if not (self.credential or self.enrolment_token or self.credential_file):
            raise InvalidInput("a credential is required", field="credential")
        for name in ("heartbeat_seconds", "poll_timeout", "max_backoff"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive", field=name)

    @property
    def desktop_state_path(self) -> Path:
        """Dry run: the file whose content says whether a client is connected."""
        if self.desktop_state_file is not None:
            return self.desktop_state_file
        record = self.record_path or Path(DEFAULT_RECORD)
        return record.with_name(record.name + ".desktop")


def setting(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or its original-client fallback's; blank counts as unset."""
    for key in (name, FALLBACKS.get(name)):
        value = environ.get(key) if key else None
        if value and value.strip():
            return value.strip()
    return None


def default_credential_file(environ: Mapping[str, str], record: Path | None) -> Path:
    """LABLINK_CREDENTIAL_FILE, else beside the dry-run record (so local VMs sharing a home
    keep apart), else $XDG_STATE_HOME/lablink/credential (~/.local/state/lablink/credential)."""
    configured = setting(environ, "LABLINK_CREDENTIAL_FILE")
    if configured:
        return Path(configured).expanduser()
    if record is not None:
        return record.with_name(record.name + ".credential")
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(state) / "lablink" / "credential"


def boot_log(environ: Mapping[str, str]) -> Path | None:
    configured = setting(environ, "LABLINK_BOOT_LOG")
    if configured:
        return Path(configured)
    return DEFAULT_BOOT_LOG if os.access(DEFAULT_BOOT_LOG, os.R_OK) else None


def repository(environ: Mapping[str, str]) -> str | None:
    return configured_repository(setting(environ, "LABLINK_REPOSITORY"))


def optional_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = setting(environ, name)
    return Path(value).expanduser() if value else None
