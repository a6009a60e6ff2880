"""A password-guessing flood in a process of its own (so it competes with the server for CPU
as an attacker's would, not for the test's GIL): guesses on the login form and with HTTP Basic
on /api/vms, each paced to a rate, until stdin closes or the time is up; prints the count of
each status code as JSON.

    python -m tests.support.guess_flood URL SECONDS RATE_PER_KIND
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from itertools import count

import httpx


def guess(
    base_url: str, kind: str, rate: float, until: float, stop: threading.Event, codes: Counter[str]
) -> None:
    interval = 1.0 / rate
    next_at = time.monotonic()
    address = "203.0.113.7" if kind == "form" else "203.0.113.8"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for attempt in count():
            now = time.monotonic()
            if now > until or stop.is_set():
                return
            if now < next_at:
                time.sleep(next_at - now)  # pacing the attack, not waiting on a condition
            next_at += interval
            headers = {"X-Forwarded-For": address}
            if kind == "form":
                data = {"username": "admin", "password": f"guess-{attempt}"}
                reply = client.post("/login", data=data, headers=headers)
            else:
                reply = client.get("/api/vms", auth=("admin", f"guess-{attempt}"), headers=headers)
            codes[f"{kind} {reply.status_code}"] += 1


def main() -> None:
    base_url, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    until = time.monotonic() + seconds
    codes: Counter[str] = Counter()
    stop = threading.Event()
    threads = [
        threading.Thread(target=guess, args=(base_url, kind, rate, until, stop, codes), daemon=True)
        for kind in ("form", "basic")
    ]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    sys.stdin.read()  # the test closes stdin when it has its samples
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    print(json.dumps(codes), flush=True)


if __name__ == "__main__":
    main()
