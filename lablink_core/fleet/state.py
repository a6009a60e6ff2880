"""The client fleet's Terraform state: what it says (names, tainted instances, instance ids),
and moving a local state into the shared ``pg`` backend (``lablink fleet migrate-state``).

Moving is ``terraform init -migrate-state -force-copy``, which overwrites whatever the
destination holds; so it is refused when the PostgreSQL state already records resources
(another allocator's fleet would be orphaned: instances running that no state knows).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablink_core.errors import InvalidInput, LablinkError
from lablink_core.fleet.terraform import STATE_FILE, TerraformRunner

MIGRATED_SUFFIX = ".migrated-to-pg"


@dataclass(frozen=True)
class FleetState:
    """The client instances a state records (tainted ones too: they exist in AWS until an
    apply replaces them), which are tainted, and their instance ids."""

    names: frozenset[str] = frozenset()
    tainted: frozenset[str] = frozenset()
    ids: Mapping[str, str] = field(default_factory=dict)
    resources: int = 0  # managed resource instances of any kind


def fleet_state(state: Mapping[str, Any]) -> FleetState:
    """Read a state document (``terraform state pull``, or the local file's JSON)."""
    names: set[str] = set()
    tainted: set[str] = set()
    ids: dict[str, str] = {}
    resources = 0
    for resource in state.get("resources", []):
        if resource.get("mode") != "managed":
            continue
        instances = resource.get("instances", [])
        resources += len(instances)
        if resource.get("type") != "aws_instance" or resource.get("name") != "client":
            continue
        if "module" in resource:
            continue
        for instance in instances:
            key = instance.get("index_key")
            if not isinstance(key, str):
                continue
            names.add(key)
            if instance.get("status") == "tainted":
                tainted.add(key)
            instance_id = (instance.get("attributes") or {}).get("id")
            if isinstance(instance_id, str):
                ids[key] = instance_id
    return FleetState(frozenset(names), frozenset(tainted), ids, resources)


def read_state_file(state_file: Path) -> dict[str, Any]:
    """A local state file's JSON; {} when there is none (or it is empty)."""
    try:
        text = state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    value = json.loads(text) if text.strip() else {}
    return value if isinstance(value, dict) else {}


def shared_state(runner: TerraformRunner) -> FleetState:
    """What the runner's (shared) backend holds, read in a scratch folder through Terraform,
    so the runner's own folder (still on the local backend) is left as it is."""
    with tempfile.TemporaryDirectory(prefix="lablink-tfstate-") as scratch:
        reader = TerraformRunner(
            source_dir=runner.source_dir,
            work_dir=Path(scratch),
            env=runner.env,
            plugin_dir=runner.plugin_dir,
            terraform_bin=runner.terraform_bin,
            backend=runner.backend,
        )
        return fleet_state(reader.state())


def migrate_local_state(runner: TerraformRunner) -> FleetState:
    """Move the runner's local state into its shared backend; returns what was moved.

    Refused when the runner's backend is local, or the shared state already records
    resources. Afterwards the local file is kept as ``terraform.tfstate.migrated-to-pg``
    (readable by its owner only) and is not read again."""
    if not runner.backend.shared:
        raise InvalidInput("fleet.terraform_backend is 'local': set it to 'pg' to migrate")
    local_file = runner.work_dir / STATE_FILE
    moved = fleet_state(read_state_file(local_file))
    if moved.resources == 0:
        raise InvalidInput(f"there is no local fleet state to migrate in {runner.work_dir}")
    existing = shared_state(runner)
    if existing.resources:
        raise LablinkError(
            f"{runner.backend.describe()} already records {existing.resources} resources "
            f"({len(existing.names)} VMs); refusing to overwrite it with the local state."
        )
    runner.migrate_state()
    for leftover in (local_file, runner.work_dir / f"{STATE_FILE}.backup"):
        if leftover.is_file() and leftover.stat().st_size == 0:
            leftover.unlink()
    backup = runner.work_dir / f"{STATE_FILE}.backup"
    if backup.is_file():
        kept = runner.work_dir / f"{STATE_FILE}{MIGRATED_SUFFIX}"
        backup.replace(kept)
        kept.chmod(0o600)
    return moved


# `lablink fleet migrate-state` ---------------------------------------------------------


def add_state_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``migrate-state`` to the ``lablink fleet`` commands."""
    text = (
        "move the client fleet's local Terraform state into PostgreSQL "
        "(fleet.terraform_backend: pg), so allocators on several hosts share it"
    )
    parser = commands.add_parser("migrate-state", help=text, description=text)
    parser.set_defaults(handler=cmd_fleet_migrate_state)


def cmd_fleet_migrate_state(args: argparse.Namespace) -> int:
    from lablink_core.config import load_config
    from lablink_core.fleet.aws import client_runner
    from lablink_core.services import data_dir, open_services

    config = load_config(getattr(args, "config", None) or os.environ.get("LABLINK_CONFIG"))
    if config.fleet.terraform_backend != "pg":
        raise InvalidInput("set fleet.terraform_backend to 'pg' first, then migrate")
    services = open_services(config)
    try:
        runner = client_runner(config, data_dir(config), services.url)
        moved = migrate_local_state(runner)
    finally:
        services.close(stop_database=False)
    vms = f"{len(moved.names)} VM{'' if len(moved.names) == 1 else 's'}"
    print(
        f"moved the fleet state ({vms}, {moved.resources} resources) "
        f"into {runner.backend.describe()}",
        flush=True,
    )
    return 0
