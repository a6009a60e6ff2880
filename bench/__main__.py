"""`python -m bench [--quick] [--only NAME] [--output DIR]`: run the benchmarks, write
latest.md and latest.json (bench/results/latest-quick.* etc. for smoke and partial runs), and
exit 1 if any benchmark saw errors or double assignments (never because of a timing)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.database import database_server
from bench.procstat import machine_info, raise_file_limit
from bench.relative import relative_targets
from bench.report import RESULTS_DIR, result, table_markdown, write

BENCHMARKS = (
    "allocation",
    "request_vm",
    "waiting_vms",
    "burst",
    "cross_process",
    "waitlist",
    "dashboard",
    "fleet",
)
# Minutes of terraform against moto: left out of --quick unless asked for with --only.
NOT_QUICK = ("fleet",)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run for CI")
    parser.add_argument(
        "--only", choices=BENCHMARKS, action="append", help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})"
    )
    return parser.parse_args(argv)


def _stem(args: argparse.Namespace, names: list[str]) -> str:
    """latest.* for a full run of everything; smoke and partial runs get names of their own,
    so they never overwrite the committed full results."""
    if args.output != RESULTS_DIR or (not args.quick and list(names) == list(BENCHMARKS)):
        return "latest"
    parts = (["quick"] if args.quick else []) + ([] if names == list(BENCHMARKS) else names)
    return "latest-" + "-".join(parts)


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """One benchmark's outcome; a crash is reported as an error, not raised."""
    began = time.monotonic()
    try:
        outcome: dict[str, Any] = importlib.import_module(f"bench.{name}").run(quick)
    except Exception as error:
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        outcome = result(
            name,
            "crashed",
            [("error", "error")],
            [{"error": f"{type(error).__name__}: {error}"}],
            errors=1,
            doubles=0,
        )
    outcome["duration_s"] = round(time.monotonic() - began, 1)
    return outcome


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    raise_file_limit()
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    if args.quick and not args.only:
        names = [name for name in names if name not in NOT_QUICK]
        print(f"--quick skips {', '.join(NOT_QUICK)} (run it with --only)", flush=True)
    began = time.monotonic()
    outcomes: dict[str, dict[str, Any]] = {}
    with database_server() as server:
        machine = machine_info(server.version(), server.settings())
        for name in names:
            print(f"== {name}", flush=True)
            outcomes[name] = run_one(name, args.quick)
            print(table_markdown(outcomes[name]), flush=True)
    relative = relative_targets(outcomes)
    if relative:  # shown with request_vm's table, where a reader looks for them
        outcomes["request_vm"]["targets"] += relative
        print("\n".join(table_markdown(outcomes["request_vm"]).splitlines()[-4:]), flush=True)
    document = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "duration_s": round(time.monotonic() - began, 1),
        "machine": machine,
        "benchmarks": outcomes,
    }
    markdown, data = write(document, args.output, _stem(args, names))
    failed = [n for n, o in outcomes.items() if o["errors"] or o["doubles"]]
    print(f"wrote {markdown} and {data} in {document['duration_s']:.0f} s", flush=True)
    if failed:
        print(f"errors or double assignments in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
