"""The core services a researcher page uses, gathered by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lablink_core.access import AccessPolicy
from lablink_core.allocation import Allocator
from lablink_core.metrics import Metrics
from lablink_core.reclaim import SessionClock
from lablink_core.vm_actions import ActionLog
from lablink_core.waitlist import Waitlist


@dataclass(frozen=True)
class ResearcherServices:
    """The core services the researcher page uses."""

    allocator: Allocator
    waitlist: Waitlist | None = None
    sessions: SessionClock | None = None
    actions: ActionLog | None = None
    access: AccessPolicy | None = None
    warning_minutes: float = 10.0
    # Raises RateLimited when this page's address (or the email) asks too fast.
    limit: Callable[[str | None], None] = lambda email: None
    metrics: Metrics = field(default_factory=Metrics)
