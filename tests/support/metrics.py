"""Reading a Prometheus text exposition in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series has not been recorded yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str, auth: tuple[str, str]) -> httpx.Response:
    """GET /metrics on a new connection (so --processes may answer from any process)."""
    return httpx.get(f"{url}/metrics", auth=auth, headers={"Connection": "close"}, timeout=10)
