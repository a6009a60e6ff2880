"""Benchmark 5: what the allocator adds on top of Terraform when it launches AWS VMs.

For each fleet size, the wall time of ``Fleet.launch(n)`` (AwsProvider: the fleet lock,
recorded operation, rows, streamed ``apply -json`` events, outputs, reconcile) against a bare
``terraform apply`` of the same config with the same variables and parallelism, both against
moto on an empty account; then both are destroyed. ``terraform init`` is done before timing.
Needs terraform, the hashicorp/aws mirror and moto. Run alone: `python bench/fleet.py [--quick]`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine

from bench.database import TABLE, DatabaseServer, database_server, scratch_database
from bench.moto_server import Moto, TimedCommands, mirror, missing_parts
from bench.report import result, table_markdown, target
from lablink_core.config import load_config
from lablink_core.credentials import new_enrolment_token
from lablink_core.db import make_engine
from lablink_core.fleet import Fleet
from lablink_core.fleet.aws import CLIENT_CONFIG_DIR, AwsProvider, state_dir
from lablink_core.fleet.base import next_names
from lablink_core.fleet.terraform import TerraformRunner
from lablink_core.vms import VMRegistry

NAME = "fleet"
PARALLELISM = 50
PREFIX = "lablink-vm"
COLUMNS = [
    ("vms", "VMs"),
    ("round", "round"),
    ("bare_apply_s", "bare terraform apply s"),
    ("fleet_launch_s", "Fleet.launch s"),
    ("overhead_pct", "overhead %"),
    ("fleet_apply_s", "its terraform apply s"),
    ("outside_apply_s", "launch outside apply s"),
    ("outside_pct", "outside apply %"),
    ("bare_destroy_s", "bare destroy s"),
    ("fleet_destroy_s", "Fleet.destroy_all s"),
    ("errors", "errors"),
]


def _provider(
    moto: Moto, work: Path, *, init: bool = True, commands: TimedCommands | None = None
) -> AwsProvider:
    config = load_config(environ={"LABLINK_MACHINE_MACHINE_TYPE": "t3.micro"})
    runner = TerraformRunner(
        source_dir=CLIENT_CONFIG_DIR,
        work_dir=state_dir(work, PREFIX),
        env=moto.env(),
        plugin_dir=mirror(),
        parallelism=PARALLELISM,
        runner=commands,
    )
    if init:
        runner.ensure_init()
    return AwsProvider(
        runner=runner,
        # Tokens as the enrolment service makes them; no VM exchanges them here.
        issue_enrolment=lambda names: {name: new_enrolment_token() for name in names},
        config=config,
        allocator_url="http://203.0.113.7:5000",
    )


def _terraform(verb: str, folder: Path, env: dict[str, str]) -> float:
    """A bare terraform command (as a person would type it); its wall time."""
    argv = ["terraform", verb, "-input=false", "-no-color"]
    if verb != "init":
        argv += ["-auto-approve", f"-parallelism={PARALLELISM}"]
    else:
        argv.append(f"-plugin-dir={mirror()}")
    began = time.perf_counter()
    subprocess.run(argv, cwd=folder, env=env, check=True, capture_output=True, timeout=900)
    return time.perf_counter() - began


def _bare_env(moto: Moto, variables: dict[str, object]) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    env.update(moto.env(), TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    for name, value in variables.items():
        env[f"TF_VAR_{name}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def bare(moto: Moto, work: Path, count: int) -> tuple[float, float, int]:
    """Bare apply then destroy of ``count`` VMs: (apply s, destroy s, errors)."""
    folder = work / "bare"
    folder.mkdir()
    for source in [*CLIENT_CONFIG_DIR.glob("*.tf"), *CLIENT_CONFIG_DIR.glob("*.tftpl")]:
        shutil.copy(source, folder / source.name)
    names = set(next_names([], PREFIX, count))
    env = _bare_env(moto, _provider(moto, work, init=False).variables(names, fresh=names))
    _terraform("init", folder, env)
    applied = _terraform("apply", folder, env)
    errors = int(moto.running_instances() != count)
    destroyed = _terraform("destroy", folder, env)
    return applied, destroyed, errors + int(moto.running_instances() != 0)


def allocator(
    moto: Moto, work: Path, server: DatabaseServer, count: int
) -> tuple[float, float, float, int]:
    """Fleet.launch then Fleet.destroy_all of ``count`` VMs on a fresh database (so the VM
    names are the bare side's): (launch s, the launch's terraform apply s, destroy s, errors)."""
    commands = TimedCommands()
    provider = _provider(moto, work, commands=commands)
    with scratch_database(server) as url:
        engine = make_engine(url, pool_size=5)
        return _launch_and_destroy(moto, engine, provider, commands, count)


def _launch_and_destroy(
    moto: Moto, engine: Engine, provider: AwsProvider, commands: TimedCommands, count: int
) -> tuple[float, float, float, int]:
    try:
        fleet = Fleet(engine, VMRegistry(engine, TABLE), provider, name_prefix=PREFIX)
        commands.seconds.clear()
        began = time.perf_counter()
        launched = fleet.launch(count)
        launch_s, apply_s = time.perf_counter() - began, commands.seconds["apply"]
        errors = int(launched.state != "succeeded" or moto.running_instances() != count)
        errors += int(len(fleet.vms()) != count)
        began = time.perf_counter()
        fleet.destroy_all(force=True)
        destroy_s = time.perf_counter() - began
    finally:
        engine.dispose()
    return launch_s, apply_s, destroy_s, errors + int(moto.running_instances() != 0)


def measure(moto: Moto, server: DatabaseServer, count: int, round_: int) -> dict[str, Any]:
    """One row; odd rounds run the allocator first, so neither side always goes first."""
    for side in ("bare", "fleet") if round_ % 2 == 0 else ("fleet", "bare"):
        moto.reset()
        with tempfile.TemporaryDirectory(prefix="lablink-bench-fleet-") as folder:
            work = Path(folder)
            if side == "bare":
                bare_apply, bare_destroy, bare_errors = bare(moto, work, count)
            else:
                launch, apply, destroy, errors = allocator(moto, work, server, count)
    return {
        "vms": count,
        "round": f"{round_ + 1} ({'bare' if round_ % 2 == 0 else 'fleet'} first)",
        "bare_apply_s": round(bare_apply, 2),
        "fleet_launch_s": round(launch, 2),
        "overhead_pct": _pct(launch, bare_apply),
        "fleet_apply_s": round(apply, 2),
        "outside_apply_s": round(launch - apply, 2),
        "outside_pct": _pct(launch, apply),
        "bare_destroy_s": round(bare_destroy, 2),
        "fleet_destroy_s": round(destroy, 2),
        "errors": bare_errors + errors,
    }


def _pct(value: float, base: float) -> float:
    return round(100 * (value - base) / base, 1)


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, over all its rounds: launch vs bare apply, and launch vs its own apply."""
    targets = []
    for count in sorted({row["vms"] for row in rows}):
        mine = [row for row in rows if row["vms"] == count]
        launch = sum(row["fleet_launch_s"] for row in mine)
        bare_pct = _pct(launch, sum(row["bare_apply_s"] for row in mine))
        outside_pct = _pct(launch, sum(row["fleet_apply_s"] for row in mine))
        what = f"at {count} VMs"
        targets.append(
            target(f"Fleet.launch vs bare apply {what}", "< 10%", bare_pct, bare_pct < 10)
        )
        targets.append(
            target(
                f"launch time outside terraform apply {what}",
                "< 10%",
                outside_pct,
                outside_pct < 10,
            )
        )
    return targets


def run(quick: bool) -> dict[str, Any]:
    sizes, rounds = ((3,), 1) if quick else ((20, 50), 2)
    title = f"Fleet.launch vs bare terraform apply against moto (-parallelism={PARALLELISM})"
    missing = missing_parts()
    if missing is not None:
        row = {"vms": 0, "round": f"skipped: {missing}", "errors": 0}
        return result(NAME, title, COLUMNS, [row], errors=0, doubles=0, notes=[missing])
    moto = Moto()
    try:
        with database_server() as server:
            rows = [measure(moto, server, n, r) for n in sizes for r in range(rounds)]
    finally:
        moto.stop()
    return result(
        NAME,
        title,
        COLUMNS,
        rows,
        errors=sum(row["errors"] for row in rows),
        doubles=0,
        targets=_targets(rows),
        notes=[
            "Both sides start from an initialised folder and an empty moto (terraform init is "
            "not timed); the bare apply prints human output, the provider's `-json`.",
            "Fleet.launch also holds the fleet lock, records the operation and its log, writes "
            "the 'booting' rows, parses every event, runs `terraform output -json` and "
            "reconciles the table with the state: 'outside apply' is that part, measured "
            "inside the same launch, so moto's noise does not hide it.",
            "moto makes the AWS provider wait ~10 s per instance: run-to-run noise of the "
            "apply itself is seconds, either way. Errors: wrong instance or row counts.",
        ],
    )


if __name__ == "__main__":
    print(table_markdown(run(quick="--quick" in sys.argv)))
