"""The token bucket (with a fake clock) and the client address behind trusted proxies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders

from dashboard.client_address import client_address
from lablink_core.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_rate_applies() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_minute=6, burst=3, clock=clock)
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    wait = limiter.check("a")
    assert wait == pytest.approx(10.0)
    clock.now += 5
    assert limiter.check("a") == pytest.approx(5.0)
    clock.now += 5
    assert limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(10.0)


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate_per_minute=1, burst=1, clock=FakeClock())
    assert limiter.check("a") is None
    assert limiter.check("a") is not None
    assert limiter.check("b") is None


def test_a_refusal_takes_no_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_minute=60, burst=1, clock=clock)
    assert limiter.check("a") is None
    for _ in range(100):
        assert limiter.check("a") is not None
    clock.now += 1.0
    assert limiter.check("a") is None


def test_memory_is_bounded_and_dropping_keys_only_frees_them() -> None:
    limiter = RateLimiter(rate_per_minute=1, burst=1, clock=FakeClock(), max_keys=100)
    for i in range(10_000):
        limiter.check(f"k{i}")
    assert len(limiter) == 100
    assert limiter.check("k9999") is not None  # recent keys are still limited
    assert limiter.check("k0") is None  # forgotten: as if new


def test_zero_rate_is_unlimited_and_bad_settings_are_refused() -> None:
    limiter = RateLimiter(rate_per_minute=0, burst=1)
    assert all(limiter.check("a") is None for _ in range(1000))
    with pytest.raises(ValueError):
        RateLimiter(rate_per_minute=1, burst=0)


def request(peer: str, *forwarded: str) -> SimpleNamespace:
    headers = HTTPHeaders()
    for value in forwarded:
        headers.add("X-Forwarded-For", value)
    return SimpleNamespace(remote_ip=peer, headers=headers)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", ["1.1.1.1"], [], "203.0.113.9"),  # no proxy trusted: header ignored
        ("203.0.113.9", ["1.1.1.1"], ["10.0.0.0/8"], "203.0.113.9"),  # peer is no proxy
        ("10.0.0.5", ["198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.5", ["6.6.6.6, 198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),  # forged left
        ("10.0.0.5", ["198.51.100.7, 10.0.0.9"], ["10.0.0.0/8"], "198.51.100.7"),  # two proxies
        ("10.0.0.5", ["6.6.6.6", "198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),  # 2 headers
        ("10.0.0.5", [], ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", ["not-an-ip"], ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", ["10.0.0.7"], ["10.0.0.0/8"], "10.0.0.5"),  # only proxies: the peer
        ("127.0.0.1", ["[2001:db8::1]"], ["127.0.0.1"], "2001:db8::1"),
        ("::ffff:10.0.0.5", ["198.51.100.7:4711"], ["10.0.0.0/8"], "198.51.100.7"),
        ("::1", ["198.51.100.7"], ["::1/128"], "198.51.100.7"),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str, forwarded: list[str], trusted: list[str], expected: str
) -> None:
    assert client_address(request(peer, *forwarded), trusted) == expected


def test_a_bad_trusted_proxy_entry_is_an_error() -> None:
    with pytest.raises(ValueError):
        client_address(request("10.0.0.5", "1.1.1.1"), ["not-a-network"])
