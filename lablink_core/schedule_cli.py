"""``lablink schedule add|list|remove``: teardowns of the fleet, once or daily.

lablink schedule add --at "2026-12-04 17:30" --timezone Europe/Berlin
lablink schedule add --daily 18:00 --timezone America/New_York
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os

from lablink_core.config import load_config
from lablink_core.errors import InvalidInput
from lablink_core.schedules import zone


def _parse_time(text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError as error:
        raise InvalidInput(f"--daily needs a time like 18:00, not {text!r}") from error


def _parse_moment(text: str, timezone: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidInput(
            f"--at needs a date and time like 2026-12-04 17:30, not {text!r}"
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=zone(timezone))


def _run(args: argparse.Namespace) -> int:
    from lablink_core.services import open_services

    services = open_services(load_config(args.config or os.environ.get("LABLINK_CONFIG")))
    store, now = services.schedules, dt.datetime.now(dt.UTC)
    try:
        if args.action == "add":
            if bool(args.at) == bool(args.daily):
                raise InvalidInput("give either --at or --daily")
            if args.at:
                made = store.add_once(_parse_moment(args.at, args.timezone), now=now, by="cli")
            else:
                made = store.add_daily(_parse_time(args.daily), args.timezone, now=now, by="cli")
            print(json.dumps({"id": made}))
        elif args.action == "remove":
            store.remove(args.id)
        else:
            print(json.dumps(store.list(), default=str, indent=2))
    finally:
        services.close(stop_database=False)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = commands.add_parser("schedule", help="scheduled teardowns of the fleet")
    actions = schedule.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="schedule a teardown, once (--at) or daily (--daily)")
    add.add_argument("--at", help="date and time, e.g. '2026-12-04 17:30'")
    add.add_argument("--daily", help="a time of day, e.g. 18:00")
    add.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC)")
    remove = actions.add_parser("remove", help="remove a schedule")
    remove.add_argument("id", type=int)
    actions.add_parser("list", help="list the schedules")
    for parser in (add, remove, actions.choices["list"]):
        parser.set_defaults(handler=_run)
