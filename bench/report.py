"""Benchmark results: the dict each `run()` returns, and its Markdown and JSON forms."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
DISTURBED_PERCENT = 25.0  # other programs' CPU (% of one core) above which a table is flagged


def result(
    name: str,
    title: str,
    columns: Sequence[tuple[str, str]],
    rows: list[dict[str, Any]],
    *,
    errors: int,
    doubles: int,
    targets: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """A benchmark's outcome: a table (``columns`` are key/header pairs) and its verdicts."""
    return {
        "name": name,
        "title": title,
        "columns": [list(pair) for pair in columns],
        "rows": rows,
        "errors": errors,
        "doubles": doubles,
        "targets": targets or [],
        "notes": notes or [],
    }


def target(what: str, wanted: str, value: object, met: bool) -> dict[str, Any]:
    return {"what": what, "target": wanted, "value": value, "met": bool(met)}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def table_markdown(outcome: dict[str, Any]) -> str:
    """One benchmark as Markdown: heading, table, targets, notes."""
    headers = [header for _, header in outcome["columns"]]
    keys = [key for key, _ in outcome["columns"]]
    lines = [f"## {outcome['name']}: {outcome['title']}", ""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---:" for _ in headers) + "|")
    for row in outcome["rows"]:
        lines.append("| " + " | ".join(_cell(row.get(key, "")) for key in keys) + " |")
    lines += ["", f"Errors: {outcome['errors']}. Double assignments: {outcome['doubles']}."]
    if outcome.get("duration_s") is not None:
        lines[-1] += f" Took {outcome['duration_s']:.1f} s."
    others = [row.get("cpu_other", 0.0) for row in outcome["rows"]]
    if max(others, default=0.0) > DISTURBED_PERCENT:
        lines.append(
            f"- Disturbed: other programs on this machine used up to {max(others):.0f}% of a "
            "core while these rows ran ('other CPU %'); their timings understate this code."
        )
    for item in outcome["targets"]:
        mark = "met" if item["met"] else "MISSED"
        lines.append(f"- Target {item['what']} {item['target']}: {item['value']} ({mark})")
    lines += [f"- {note}" for note in outcome["notes"]]
    return "\n".join(lines) + "\n"


def machine_markdown(machine: dict[str, Any]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in machine["postgresql_settings"].items())
    return "\n".join(
        [
            "| machine | |",
            "|---|---|",
            f"| nproc | {machine['nproc']} |",
            f"| RAM | {machine['ram_gib']} GiB |",
            f"| CPU | {machine['cpu_model']} |",
            f"| kernel | {machine['kernel']} |",
            f"| Python | {machine['python']} |",
            f"| PostgreSQL | {machine['postgresql']} ({settings}) |",
            f"| date | {machine['date']} |",
            f"| code | {machine.get('code', 'unknown')} |",
            f"| load average (1, 5, 15 min) at start | {machine.get('load_average_at_start')} |",
        ]
    )


def full_markdown(document: dict[str, Any]) -> str:
    mode = "quick (smoke)" if document["quick"] else "full"
    parts = [
        "# LabLink allocator benchmarks",
        "",
        f"Run: `{document['command']}` ({mode}), {document['duration_s']:.0f} s in all.",
        "",
        machine_markdown(document["machine"]),
        "",
        "The load generator runs on the same machine as the server and PostgreSQL and competes "
        "with them for its cores; each table shows the CPU each side used (100% = one core).",
        "",
    ]
    for outcome in document["benchmarks"].values():
        parts += [table_markdown(outcome), ""]
    return "\n".join(parts).rstrip() + "\n"


def write(
    document: dict[str, Any], directory: Path = RESULTS_DIR, stem: str = "latest"
) -> tuple[Path, Path]:
    """Write ``stem``.md and ``stem``.json; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown, data = directory / f"{stem}.md", directory / f"{stem}.json"
    _replace(markdown, full_markdown(document))
    _replace(data, json.dumps(document, indent=2, default=str) + "\n")
    return markdown, data


def _replace(path: Path, content: str) -> None:
    """Write next to ``path`` and rename, so a reader never sees half a file."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(content)
    partial.replace(path)
