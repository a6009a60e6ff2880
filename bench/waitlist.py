"""Benchmark: the waitlist at a class's turnover. R researchers wait in the queue (each
long-polling GET /api/waitlist/<ticket>) while V VMs are held; then one statement frees all
V VMs at once. Measured: from that COMMIT to each of the first V researchers being told
their VM; they must be exactly the first V in queue order, with no VM or researcher twice.
Run alone: `python bench/waitlist.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine, text

from bench.database import database_server, scratch_database
from bench.procstat import raise_file_limit, standard_meter
from bench.rawhttp import HttpConnection, Response, build_request
from bench.report import result, table_markdown, target
from bench.server import ServerProcess, running_server
from bench.stats import latency_ms
from bench.vmtable import crd_command, email, reset_free_vms

NAME = "waitlist"
POLL_SECONDS = 60
COLUMNS = [
    ("queued", "queued"),
    ("vms", "VMs freed"),
    ("told", "told"),
    ("in_order", "in queue order"),
    ("errors", "errors"),
    ("doubles", "doubles"),
    ("p50_ms", "release to told p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("cpu_bench", "generator CPU %"),
    ("cpu_server", "server CPU %"),
    ("cpu_postgres", "PostgreSQL CPU %"),
    ("cpu_other", "other CPU %"),
]
# Frees every held VM in one statement, as the allocator's release does for one.
_FREE_ALL = """
UPDATE vms SET status = 'available', user_email = NULL, crd_code = NULL,
    crd_redirect_url = NULL, pin = NULL, seat_token_hash = NULL, in_use = false,
    assigned_at = NULL, generation = generation + 1, last_heard_at = now()
WHERE user_email IS NOT NULL
"""


def _hold_all(engine: Engine, count: int) -> None:
    """Every VM taken by someone (the fleet is full when the queue forms)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE vms SET status = 'assigned', user_email = 'holder-' || hostname, "
                "crd_code = '4/0Held', crd_redirect_url = "
                "'https://remotedesktop.google.com/_/oauthredirect', pin = '123456', "
                "generation = generation + 1, assigned_at = now()"
            )
        )


async def _join(port: int, index: int) -> dict[str, Any]:
    connection = await HttpConnection.open(port)
    try:
        payload = {"email": email(index), "crd_command": crd_command(index), "wait": True}
        reply = await connection.request(build_request("/request_vm", port, payload), 30.0)
    finally:
        connection.close()
    body: dict[str, Any] = reply.json() or {}
    if reply.status != 202:
        raise RuntimeError(f"join {index}: HTTP {reply.status} {reply.body[:200]!r}")
    return body


async def _long_poll(port: int, ticket: str) -> Response:
    connection = await HttpConnection.open(port)
    try:
        path = f"/api/waitlist/{ticket}?wait={POLL_SECONDS}"
        return await connection.request(build_request(path, port), POLL_SECONDS + 10)
    finally:
        connection.close()


async def _scenario(
    app: ServerProcess, engine: Engine, postmaster: int | None, queued: int, count: int
) -> dict[str, Any]:
    tickets = [(await _join(app.port, i))["ticket"] for i in range(queued)]
    polls = [asyncio.ensure_future(_long_poll(app.port, t)) for t in tickets[:count]]
    await asyncio.sleep(1.0)  # every long poll subscribed
    meter = standard_meter(app.pid, postmaster)
    meter.start()
    released = time.monotonic()
    await asyncio.to_thread(_free_all, engine)
    replies = await asyncio.gather(*polls, return_exceptions=True)
    cpu = meter.stop()
    told, latencies, errors = [], [], []
    for index, reply in enumerate(replies):
        if isinstance(reply, BaseException) or reply.status != 200:
            errors.append(f"{index}: {reply!r}"[:200])
            continue
        body = reply.json() or {}
        if body.get("state") != "assigned":
            errors.append(f"{index}: {body}")
            continue
        told.append(str(body["hostname"]))
        latencies.append(reply.arrived - released)
    return {"told": told, "latencies": latencies, "errors": errors, **cpu}


def _free_all(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(_FREE_ALL))


def _audit(engine: Engine, told: list[str], count: int) -> tuple[int, bool]:
    """Doubles (a VM told twice or holding two, an email holding two) and whether the VMs
    went to the first ``count`` researchers of the queue."""
    with engine.connect() as connection:
        holders = dict(
            connection.execute(
                text("SELECT hostname, user_email FROM vms WHERE user_email IS NOT NULL")
            ).all()
        )
        twice = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT hostname FROM vms_events WHERE kind = 'assigned' "
                "GROUP BY hostname HAVING count(*) > 2) AS t"
            )
        ).scalar_one()
    doubles = sum(n - 1 for n in Counter(told).values() if n > 1)
    doubles += sum(n - 1 for n in Counter(holders.values()).values() if n > 1) + int(twice)
    first = {email(i) for i in range(count)}
    return doubles, set(holders.values()) == first


def run(quick: bool) -> dict[str, Any]:
    raise_file_limit()
    queued, count = (50, 20) if quick else (500, 200)
    with (
        database_server() as server,
        scratch_database(server) as url,
        running_server(url) as app,
    ):
        engine = create_engine(url)
        try:
            reset_free_vms(engine, count)
            _hold_all(engine, count)
            outcome = asyncio.run(_scenario(app, engine, server.postmaster_pid(), queued, count))
            doubles, in_order = _audit(engine, outcome["told"], count)
        finally:
            engine.dispose()
    errors = outcome.pop("errors")
    row = {
        "queued": queued,
        "vms": count,
        "told": len(outcome.pop("told")),
        "in_order": "yes" if in_order else "NO",
        "errors": len(errors),
        "doubles": doubles,
        **latency_ms(outcome.pop("latencies")),
        **outcome,
        "error_samples": errors[:5],
    }
    return result(
        NAME,
        f"waitlist turnover: {queued} researchers queued, {count} VMs freed by one statement",
        COLUMNS,
        [row],
        errors=row["errors"] + (0 if in_order else 1),
        doubles=doubles,
        targets=[
            target("told", f"exactly {count}", row["told"], row["told"] == count),
            target("queue order kept", "yes", row["in_order"], in_order),
            target("errors and doubles", "0", row["errors"] + doubles, not errors and not doubles),
        ],
        notes=[
            "Each of the first researchers long-polls its ticket; time runs from the COMMIT "
            "that frees every VM to each reply being read. The allocator's dispatcher hears "
            "the releases through NOTIFY and assigns the heads of the queue in one statement.",
        ],
    )


if __name__ == "__main__":
    outcome = run("--quick" in sys.argv)
    print(table_markdown(outcome))
    sys.exit(1 if outcome["errors"] or outcome["doubles"] else 0)
