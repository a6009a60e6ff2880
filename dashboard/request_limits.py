"""How fast anyone may ask for VMs: per client address and per email, on /request_vm,
/release_vm and the researcher page alike, so that one address (or one name) cannot drain the
fleet in a second. Refusals are 429 with Retry-After. The limits hold for the whole server,
however many processes it has: `--processes N` shares one table of token buckets between
them (``access.request_rate_per_minute`` / ``request_burst`` / ``email_rate_per_minute``);
behind a reverse proxy the client's address is believed only from ``app.trusted_proxies``."""

from __future__ import annotations

from lablink_core.config import AccessConfig
from lablink_core.errors import RateLimited
from lablink_core.ratelimit import RateLimiter
from lablink_core.shared_buckets import SharedBuckets

SLOW_DOWN = "Too many requests from {who}; try again in {seconds:.0f} s."


class RequestLimits:
    """The two kinds of bucket: one per client address, one per email (in ``shared``, the
    table of all the server's processes, when it has several)."""

    def __init__(self, config: AccessConfig, shared: SharedBuckets | None = None) -> None:
        burst = int(config.request_burst)
        address_rate = float(config.request_rate_per_minute)
        email_rate = float(config.email_rate_per_minute)
        self._addresses = RateLimiter(address_rate, burst, shared=shared)
        self._emails = RateLimiter(email_rate, max(2, burst // 2), shared=shared)

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
