"""Fleet plans: what an operation will do, decided under the fleet lock before it is
recorded. A planner reads the VM table and refuses (InvalidInput, NotFound) before anything
happens; the plan's ``run`` then does the work through the provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lablink_core.errors import InvalidInput, NotFound
from lablink_core.fleet.base import (
    FleetProvider,
    HealingProvider,
    LogCallback,
    choose_removals,
    is_assigned,
    next_names,
)
from lablink_core.fleet.table import FleetTable
from lablink_core.vms import VMRegistry

HEAL_ACTIONS = ("reboot", "replace")


@dataclass
class Plan:
    """What an operation will do, decided under the lock before it is recorded."""

    planned: int
    summary: str
    run: Callable[[LogCallback], None]
    retired: list[str] = field(default_factory=list)


class FleetPlanner:
    """Makes the plans of one fleet (its provider's VM rows, name prefix and size limit)."""

    def __init__(
        self,
        registry: VMRegistry,
        table: FleetTable,
        provider: FleetProvider,
        *,
        name_prefix: str,
        max_instances: int,
    ) -> None:
        self._registry = registry
        self._table = table
        self.provider = provider
        self.name_prefix = name_prefix
        self.max_instances = max_instances

    def vms(self) -> list[dict[str, Any]]:
        """The VM rows this fleet manages."""
        return [vm for vm in self._registry.list() if vm["provider"] == self.provider.name]

    def launch(self, count: int, target: int | None = None) -> Plan:
        existing = len(self.vms())
        if existing + count > self.max_instances:
            raise InvalidInput(
                f"The fleet has {existing} VMs; {count} more would pass the limit of "
                f"{self.max_instances} (fleet.max_instances).",
                field="count",
            )
        names = next_names(self._table.used_names(), self.name_prefix, count)

        def run(log: LogCallback) -> None:
            self._registry.add_booting(names, provider=self.provider.name)
            self.provider.create(names, log)

        summary = f"launching {count} VM{'s' if count != 1 else ''}: {names[0]} to {names[-1]}"
        if target is not None:
            summary = f"scaling from {existing} to {target}: " + summary
        return Plan(count, summary, run)

    def scale(self, count: int, force: bool) -> Plan:
        vms = self.vms()
        if count > len(vms):
            return self.launch(count - len(vms), target=count)
        victims = choose_removals(vms, len(vms) - count, force=force)
        summary = f"scaling from {len(vms)} to {count}"
        return self._removal(victims, summary)

    def remove(self, names: list[str], force: bool) -> Plan:
        vms = {vm["hostname"]: vm for vm in self.vms()}
        unknown = [name for name in names if name not in vms]
        if unknown:
            raise NotFound(
                f"Not VMs of the {self.provider.name} fleet: {', '.join(unknown)}",
                field="hostnames",
            )
        held = [name for name in names if is_assigned(vms[name])]
        if held and not force:
            raise InvalidInput(
                f"{', '.join(held)} {'is' if len(held) == 1 else 'are'} assigned to a "
                "researcher; use force to remove assigned VMs.",
                field="hostnames",
            )
        return self._removal(names, f"removing {', '.join(names)}")

    def _removal(self, victims: list[str], summary: str) -> Plan:
        plan = Plan(len(victims), summary, lambda log: None)

        def run(log: LogCallback) -> None:
            plan.retired = self._table.retire(victims)
            if victims:
                self.provider.delete(victims, log)
            self._registry.remove(victims)
            log(f"removed {len(victims)} VM{'s' if len(victims) != 1 else ''}", len(victims))

        plan.run = run
        return plan

    def destroy(self, force: bool) -> Plan:
        vms = self.vms()
        held = [vm["hostname"] for vm in vms if is_assigned(vm)]
        if held and not force:
            raise InvalidInput(
                f"{len(held)} of {len(vms)} VMs are assigned to researchers "
                f"({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}); "
                "use force to destroy them too."
            )
        names = [vm["hostname"] for vm in vms]
        plan = Plan(len(names), f"destroying all {len(names)} VMs", lambda log: None)

        def run(log: LogCallback) -> None:
            plan.retired = self._table.retire(names)
            self.provider.delete_all(log)
            self._registry.remove(names)
            log("destroyed every VM and the shared resources", len(names))

        plan.run = run
        return plan

    def heal(self, hostname: str, action: str, reason: str) -> Plan:
        """Reboot or replace one VM of the fleet (the healer's actions)."""
        if action not in HEAL_ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(HEAL_ACTIONS)}", field="action")
        if hostname not in {vm["hostname"] for vm in self.vms()}:
            raise NotFound(f"Not a VM of the {self.provider.name} fleet: {hostname}")
        provider = self.provider
        if not isinstance(provider, HealingProvider):
            raise InvalidInput(f"the {provider.name} provider cannot {action} a VM")

        def run(log: LogCallback) -> None:
            self._table.mark_healing(hostname, action, reason)
            if action == "reboot":
                provider.reboot(hostname, log)
            else:
                provider.replace(hostname, log)

        return Plan(1, f"{action} {hostname}: {reason}", run)
