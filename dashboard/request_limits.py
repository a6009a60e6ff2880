"""How fast anyone may ask for VMs: per client address and per email, on /request_vm,
/release_vm and the researcher page alike, so that one address (or one name) cannot drain the
fleet in a second. Refusals are 429 with Retry-After. Limits are per server process (a
token bucket each, ``access.request_rate_per_minute`` / ``request_burst`` /
``email_rate_per_minute``); behind a reverse proxy the client's address is believed only
from ``app.trusted_proxies``."""

from __future__ import annotations

from lablink_core.config import AccessConfig
from lablink_core.errors import RateLimited
from lablink_core.ratelimit import RateLimiter

SLOW_DOWN = "Too many requests from {who}; try again in {seconds:.0f} s."


class RequestLimits:
    """The two buckets of a process: one per client address, one per email."""

    def __init__(self, config: AccessConfig) -> None:
        burst = int(config.request_burst)
        self._addresses = RateLimiter(float(config.request_rate_per_minute), burst)
        self._emails = RateLimiter(float(config.email_rate_per_minute), max(2, burst // 2))

    def check(self, address: str, email: str | None = None) -> None:
        """Take one request from the address's bucket (and the email's); RateLimited if
        either is empty."""
        wait = self._addresses.check(f"address:{address}")
        if wait is not None:
            raise RateLimited(SLOW_DOWN.format(who="this address", seconds=wait), wait)
        if email:
            wait = self._emails.check(f"email:{email.strip().lower()}")
            if wait is not None:
                raise RateLimited(SLOW_DOWN.format(who=email, seconds=wait), wait, field="email")
