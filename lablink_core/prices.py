"""What a fleet costs per hour: a small price table for common GPU instance types.

The prices are AWS on-demand Linux prices in US dollars per hour, us-east-1, as published
in 2025 (they change rarely, and differ a little by region). They are an estimate for the
admin pages ("about $1.58/h for these 3 VMs"), never a bill: storage, data transfer and
taxes are not included. ``fleet.hourly_prices`` in the configuration adds or overrides
types (``{"g4dn.xlarge": 0.60}``); a local fleet runs processes on the allocator's own
machine and costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

HOURLY_PRICES_USD: Mapping[str, float] = {
    # NVIDIA T4
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    # NVIDIA A10G
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    # NVIDIA L4
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.4xlarge": 1.3232,
    # NVIDIA V100
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
    # Small CPU types, for trying a fleet out
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
}
"""Instance type -> US dollars per hour (on-demand, Linux, us-east-1)."""


@dataclass(frozen=True)
class FleetCost:
    """The estimated hourly cost of ``count`` VMs of one type; ``each`` is None when the type
    is not in the price table (the pages then say so instead of guessing)."""

    provider: str
    machine_type: str
    count: int
    each: float | None

    @property
    def total(self) -> float | None:
        return None if self.each is None else self.each * self.count

    def describe(self) -> str:
        """One line for the pages, e.g. "3 g4dn.xlarge VMs at $0.53/h each: about $1.58/h"."""
        if self.provider == "local":
            return "Local fleet: no cloud charges."
        if self.each is None:
            return (
                f"No price known for {self.machine_type} (add it to fleet.hourly_prices to "
                "see an estimate)."
            )
        vms = f"{self.count} {self.machine_type} VM{'s' if self.count != 1 else ''}"
        return f"{vms} at {dollars(self.each)}/h each: about {dollars(self.total or 0.0)}/h"


def dollars(amount: float) -> str:
    """$0.53, $12.24, $0.0104 (small prices keep their significant digits)."""
    if 0 < amount < 0.1:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def price_table(overrides: Mapping[str, object] | None = None) -> dict[str, float]:
    """The built-in table with ``overrides`` (``fleet.hourly_prices``) applied on top."""
    table = dict(HOURLY_PRICES_USD)
    for machine_type, price in (overrides or {}).items():
        table[str(machine_type)] = checked_price(machine_type, price)
    return table


def checked_price(machine_type: object, price: object) -> float:
    """``price`` as a float; ValueError naming the type when it is not a price."""
    if isinstance(price, bool) or not isinstance(price, int | float):
        raise ValueError(f"the price of {machine_type} must be a number, got {price!r}")
    value = float(price)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"the price of {machine_type} must be 0 or more, got {price!r}")
    return value


def hourly_price(machine_type: str, overrides: Mapping[str, object] | None = None) -> float | None:
    """US dollars per hour of one VM of ``machine_type``, or None if unknown."""
    return price_table(overrides).get(machine_type.strip())


def fleet_cost(
    provider: str,
    machine_type: str,
    count: int,
    overrides: Mapping[str, object] | None = None,
) -> FleetCost:
    """The hourly cost of ``count`` VMs on ``provider`` ("local" costs nothing)."""
    if provider == "local":
        return FleetCost(provider, machine_type, count, 0.0)
    return FleetCost(provider, machine_type, count, hourly_price(machine_type, overrides))
