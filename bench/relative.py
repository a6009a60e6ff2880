"""Targets that compare two benchmarks of one run: `/request_vm` against the in-process
claim. Absolute rates on these machines drift by up to 2x between runs; a ratio measured in
the same run does not."""

from __future__ import annotations

from typing import Any

from bench.report import target

AT_FIFTY_RATIO = 0.72  # request_vm at 50 clients (best process count) / claims at 10 workers
AT_ONE_RATIO = 0.75  # request_vm at 1 client, one process / claims at 1 worker
AT_ONE_P50_MS = 1.3


def _rate(rows: list[dict[str, Any]], key: str, count: int, value: str) -> float | None:
    found = [row[value] for row in rows if row.get(key) == count]
    return max(found) if found else None


def relative_targets(outcomes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ratio targets, when both `allocation` and `request_vm` ran."""
    if "allocation" not in outcomes or "request_vm" not in outcomes:
        return []
    # The yardstick: Allocator.request_vm from threads (older results have no path).
    claims = [
        row for row in outcomes["allocation"]["rows"] if row.get("path", "threads") == "threads"
    ]
    requests = outcomes["request_vm"]["rows"]
    single = [row for row in requests if row.get("processes", 1) == 1]
    claim_ten = _rate(claims, "workers", 10, "claims_per_s")
    claim_one = _rate(claims, "workers", 1, "claims_per_s")
    fifty = _rate(requests, "clients", 50, "correct_per_s")
    one = _rate(single, "clients", 1, "correct_per_s")
    found: list[dict[str, Any]] = []
    if claim_ten and fifty is not None:
        ratio = fifty / claim_ten
        found.append(
            target(
                "request_vm at 50 clients / claims at 10 workers",
                f">= {AT_FIFTY_RATIO}",
                f"{ratio:.2f} ({fifty:,.0f} vs {claim_ten:,.0f}/s)",
                ratio >= AT_FIFTY_RATIO,
            )
        )
    if claim_one and one is not None:
        ratio = one / claim_one
        p50 = min(row["p50_ms"] for row in single if row["clients"] == 1)
        found.append(
            target(
                "request_vm at 1 client / claims at 1 worker, and p50",
                f">= {AT_ONE_RATIO}, <= {AT_ONE_P50_MS} ms",
                f"{ratio:.2f} ({one:,.0f} vs {claim_one:,.0f}/s), p50 {p50:.2f} ms"
                + _bound_text(outcomes, claim_one),
                ratio >= AT_ONE_RATIO and p50 <= AT_ONE_P50_MS,
            )
        )
    return found


def _bound_text(outcomes: dict[str, dict[str, Any]], claim_one: float) -> str:
    """At 1 client nothing overlaps, so HTTP alone (bench.tornado_floor's echo) and the
    server's own claim (the event-loop path, in-process) add up: the best ratio possible."""
    echo = outcomes["request_vm"].get("tornado_echo")
    loop = [r for r in outcomes["allocation"]["rows"] if r.get("path") == "event loop"]
    loop_one = _rate(loop, "workers", 1, "claims_per_s")
    if not echo or not loop_one:
        return ""
    bound = 1 / (1 / echo["per_s"] + 1 / loop_one) / claim_one
    return (
        f"; bare Tornado ({echo['per_s']:,.0f}/s) and the loop claim ({loop_one:,.0f}/s) "
        f"in series would reach {bound:.2f}"
    )
