"""The fleet's estimated hourly cost: the built-in price table, overrides from the
configuration, a local fleet costing nothing, and unknown types saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from lablink_core.config import ConfigError, load_config
from lablink_core.prices import HOURLY_PRICES_USD, dollars, fleet_cost, hourly_price, price_table


def test_common_gpu_types_have_a_price() -> None:
    for machine_type in ("g4dn.xlarge", "g5.xlarge", "p3.2xlarge"):
        assert HOURLY_PRICES_USD[machine_type] > 0
    assert hourly_price(" g4dn.xlarge ") == HOURLY_PRICES_USD["g4dn.xlarge"]
    assert hourly_price("x9.mega") is None


def test_a_local_fleet_costs_nothing() -> None:
    cost = fleet_cost("local", "g4dn.xlarge", 3)
    assert cost.total == 0.0
    assert cost.describe() == "Local fleet: no cloud charges."


def test_an_aws_fleet_costs_count_times_the_price() -> None:
    cost = fleet_cost("aws", "g4dn.xlarge", 3)
    assert cost.total == pytest.approx(3 * 0.526)
    assert cost.describe() == "3 g4dn.xlarge VMs at $0.53/h each: about $1.58/h"
    assert dollars(0.0104) == "$0.0104" and dollars(1234.5) == "$1,234.50"


def test_an_unknown_type_says_how_to_add_it() -> None:
    cost = fleet_cost("aws", "x9.mega", 2)
    assert cost.total is None
    assert "fleet.hourly_prices" in cost.describe()


def test_overrides_come_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "lablink.yaml"
    path.write_text("fleet:\n  hourly_prices: {g4dn.xlarge: 0.6, x9.mega: 12}\n")
    prices = load_config(path, environ={}).fleet.hourly_prices
    assert price_table(prices)["g4dn.xlarge"] == 0.6
    assert fleet_cost("aws", "x9.mega", 2, prices).total == 24.0
    assert price_table(prices)["g5.xlarge"] == HOURLY_PRICES_USD["g5.xlarge"]


@pytest.mark.parametrize("bad", ["-1", "cheap", "true"])
def test_a_bad_price_is_named_in_the_configuration_error(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "lablink.yaml"
    path.write_text(f"fleet:\n  hourly_prices: {{g4dn.xlarge: {bad}}}\n")
    with pytest.raises(ConfigError, match=r"fleet.hourly_prices: .*g4dn.xlarge"):
        load_config(path, environ={})
