"""``lablink fleet launch N | scale N | destroy | status``: the fleet from a shell, on the
configured database, with the configured provider; the same lock and recorded history as
the dashboard. Progress lines are printed as the operation goes.

Local VMs started from here outlive the command (they are this machine's processes); the
server stops them with itself, and resumes them when it starts again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lablink_core.config import LablinkConfig, load_config

if TYPE_CHECKING:
    from lablink_core.fleet import Fleet, FleetProgress


def _config(args: argparse.Namespace) -> LablinkConfig:
    import os

    return load_config(args.config or os.environ.get("LABLINK_CONFIG"))


def _with_fleet(args: argparse.Namespace, work: Callable[[Fleet], int]) -> int:
    from lablink_core.fleet import make_fleet, make_provider
    from lablink_core.services import data_dir, open_services

    config = _config(args)
    services = open_services(config)
    try:
        url = config.app.public_url or f"http://127.0.0.1:{config.app.port}"
        provider = make_provider(config, services, url, data_dir(config))
        return work(make_fleet(config, services, provider))
    finally:
        services.close(stop_database=False)


def _printer(as_json: bool) -> Callable[[FleetProgress], None]:
    def show(progress: FleetProgress) -> None:
        if as_json:
            fields = ("done", "planned", "state", "message")
            print(json.dumps({name: getattr(progress, name) for name in fields}), flush=True)
        elif not progress.finished:
            print(f"[{progress.done}/{progress.planned}] {progress.message}", flush=True)

    return show


def _finish(progress: FleetProgress) -> int:
    print(f"fleet operation #{progress.operation_id} {progress.state}", file=sys.stderr)
    return 0 if progress.state == "succeeded" else 1


def cmd_launch(args: argparse.Namespace) -> int:
    return _with_fleet(
        args, lambda f: _finish(f.launch(args.count, on_progress=_printer(args.json)))
    )


def cmd_scale(args: argparse.Namespace) -> int:
    show = _printer(args.json)
    return _with_fleet(
        args, lambda f: _finish(f.scale_to(args.count, force=args.force, on_progress=show))
    )


def cmd_destroy(args: argparse.Namespace) -> int:
    show = _printer(args.json)
    return _with_fleet(
        args,
        lambda f: _finish(
            f.destroy_all(
                force=args.force, on_progress=show, reason="lablink fleet destroy", actor="admin"
            )
        ),
    )


def cmd_status(args: argparse.Namespace) -> int:
    def show(fleet: Fleet) -> int:
        vms = fleet.vms()
        status: dict[str, Any] = {
            "provider": fleet.provider.name,
            "vms": [{k: vm[k] for k in ("hostname", "status", "user_email")} for vm in vms],
            "running_operation": fleet.running_operation(),
        }
        print(json.dumps(status, default=str, indent=2 if not args.json else None))
        return 0

    return _with_fleet(args, show)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = commands.add_parser("fleet", help="launch, scale, destroy or show the VM fleet")
    actions = fleet.add_subparsers(dest="action", required=True)
    for name, handler, text in (
        ("launch", cmd_launch, "add N VMs"),
        ("scale", cmd_scale, "grow or shrink the fleet to N VMs (free ones go first)"),
        ("destroy", cmd_destroy, "destroy every VM of the fleet"),
        ("status", cmd_status, "the fleet's VMs and the operation running now"),
    ):
        parser = actions.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=handler)
        parser.add_argument("--json", action="store_true", help="print JSON lines")
        if name in ("launch", "scale"):
            parser.add_argument("count", type=int)
        if name in ("scale", "destroy"):
            parser.add_argument(
                "--force", action="store_true", help="take VMs from researchers too"
            )
    # `lablink fleet migrate-state` (lablink_core/fleet/state.py).
    from lablink_core.fleet.state import add_state_commands

    add_state_commands(actions)
