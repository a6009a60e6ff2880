"""The healer: VMs that are errored, unhealthy, stuck booting, silent, gone, or recycled are
rebooted, then replaced, and after a configured number of tries marked ``error`` and left out
of the pool. It runs in one process at a time (see :mod:`lablink_core.maintenance`).

Deciding is a pure function of a VM's row and the time (:func:`decide`), so the rules are
tested without a database; acting goes through the fleet (a recorded "heal" operation under
the fleet lock) and every action is written to the action log with its reason. An assigned
VM that is rebooted keeps its researcher; the reason is in ``status_reason`` for their page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, text

from lablink_core.config import HealthConfig
from lablink_core.errors import LablinkError, OperationInProgress
from lablink_core.metrics import Metrics
from lablink_core.models import checked_identifier
from lablink_core.vm_actions import ActionLog

log = logging.getLogger(__name__)

HEALED_PROVIDERS = ("local", "aws")


@dataclass(frozen=True)
class HealDecision:
    """What to do about one VM: reboot, replace, give_up, or recovered (reset the count)."""

    hostname: str
    action: str
    reason: str


def _minutes(delta: dt.timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{delta.total_seconds():.0f} s"


def why_unwell(
    vm: Mapping[str, Any], now: dt.datetime, config: HealthConfig, present: bool | None
) -> str | None:
    """Why this VM needs healing, or None. ``present``: whether the provider still has its
    machine (None when that is not cheap to know)."""
    if vm["status"] == "recycling":
        return "recycled after its researcher released it"
    if present is False:
        return "its machine is gone"
    if vm["status"] == "error":
        return f"it reported an error: {vm.get('status_message') or 'no details'}"
    if vm.get("health_state") == "unhealthy":
        return f"its GPU is unhealthy ({vm.get('health') or 'no details'})"
    started = vm.get("healing_since") or vm["created_at"]
    boot_limit = dt.timedelta(seconds=config.boot_timeout_seconds)
    if vm["status"] == "booting" and now - started > boot_limit:
        return f"still booting after {_minutes(now - started)}"
    heard = vm.get("last_heard_at")
    silence = dt.timedelta(seconds=config.silence_limit_seconds)
    if heard is not None and now - heard > silence:
        return f"silent for {_minutes(now - heard)}"
    return None


def decide(
    vm: Mapping[str, Any], now: dt.datetime, config: HealthConfig, present: bool | None = None
) -> HealDecision | None:
    """The healer's next step for ``vm`` at ``now``, or None to leave it alone."""
    name, attempts = vm["hostname"], int(vm.get("heal_attempts") or 0)
    budget = config.reboots + config.replacements
    reason = why_unwell(vm, now, config, present)
    grace = dt.timedelta(seconds=config.boot_timeout_seconds)
    since = vm.get("healing_since")
    in_grace = since is not None and now - since < grace
    if reason is None:
        if attempts and not vm.get("healing") and not in_grace:
            return HealDecision(name, "recovered", "well again since its last repair")
        return None
    if in_grace and present is not False:
        return None  # an action is under way: give the VM time to come back
    if vm["status"] == "recycling":
        return HealDecision(name, "replace", reason)
    if attempts < config.reboots:
        return HealDecision(name, "reboot", reason)
    if attempts < budget:
        return HealDecision(name, "replace", reason)
    if attempts == budget:
        return HealDecision(name, "give_up", f"{reason}; {budget} repairs did not help")
    return None  # given up already: an admin decides


class HealingFleet(Protocol):
    """What the healer needs of :class:`lablink_core.fleet.Fleet`."""

    def heal(self, hostname: str, action: str, *, reason: str, actor: str = ...) -> Any: ...

    def present(self) -> set[str] | None: ...

    @property
    def provider_name(self) -> str: ...


class Healer:
    """One pass over a VM table's fleet VMs: decide, act, record."""

    def __init__(
        self,
        engine: Engine,
        table_name: str,
        fleet: HealingFleet | None,
        actions: ActionLog,
        config: HealthConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics or Metrics()
        self._table = checked_identifier(table_name)
        self._fleet = fleet
        self._actions = actions
        self.config = config

    def pass_once(self, now: dt.datetime) -> list[HealDecision]:
        """Decide about every fleet VM and carry out what was decided; returns the decisions
        acted on (a heal refused because another fleet operation runs is retried later)."""
        present = self._fleet.present() if self._fleet is not None else None
        done = []
        for vm in self._vms():
            is_there = None if present is None else vm["hostname"] in present
            decision = decide(vm, now, self.config, is_there)
            if decision is not None and self._carry_out(vm, decision):
                done.append(decision)
        return done

    def _vms(self) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT hostname, status, user_email, health, health_state, status_message, "
                    "provider, created_at, last_heard_at, healing, healing_since, heal_attempts "
                    f"FROM {self._table} WHERE provider = ANY(:providers) ORDER BY hostname"
                ),
                {"providers": self._providers()},
            ).mappings()
            return [dict(row) for row in rows]

    def _providers(self) -> list[str]:
        # A fleet heals only its own provider's VMs: another provider's rows (left from an
        # earlier configuration, or enrolled by hand as "aws") are not machines it can see,
        # and "its machine is gone" would be wrong about each of them on every pass.
        if self._fleet is None:
            return list(HEALED_PROVIDERS)
        return [name for name in HEALED_PROVIDERS if name == self._fleet.provider_name]

    def _carry_out(self, vm: Mapping[str, Any], decision: HealDecision) -> bool:
        name, email = decision.hostname, vm.get("user_email")
        if decision.action in ("recovered", "give_up"):
            self._settle(name, decision)
        elif self._fleet is None:
            return False
        else:
            try:
                self._fleet.heal(name, decision.action, reason=decision.reason, actor="healer")
            except OperationInProgress:
                return False
            except LablinkError as error:
                log.warning("could not %s %s: %s", decision.action, name, error.message)
                self._record(decision, email, "failed", error.message)
                return True
        log.info("healer: %s %s (%s)", decision.action, name, decision.reason)
        self._record(decision, email, "done")
        return True

    def _record(
        self, decision: HealDecision, email: str | None, outcome: str, detail: str | None = None
    ) -> None:
        self._metrics.healer_action(decision.action, outcome)
        self._actions.record(
            decision.hostname,
            decision.action,
            decision.reason,
            actor="healer",
            email=email,
            outcome=outcome,
            detail=detail,
        )

    def _settle(self, hostname: str, decision: HealDecision) -> None:
        """Reset the repair count of a recovered VM, or give one up: out of the pool as
        ``error`` (its researcher, if any, loses it: the page says why)."""
        if decision.action == "recovered":
            statement = f"UPDATE {self._table} SET heal_attempts = 0 WHERE hostname = :h"
        else:
            statement = (
                f"UPDATE {self._table} SET status = 'error', status_reason = :reason, "
                "heal_attempts = heal_attempts + 1, healing = NULL, user_email = NULL, "
                "crd_code = NULL, crd_redirect_url = NULL, pin = NULL, seat_token_hash = NULL, "
                "in_use = false, assigned_at = NULL, "
                "generation = CASE WHEN user_email IS NULL THEN generation "
                "ELSE generation + 1 END WHERE hostname = :h"
            )
        with self._engine.begin() as connection:
            connection.execute(text(statement), {"h": hostname, "reason": decision.reason})
