"""The gateway's own counter and histogram render exactly as prometheus_client's would."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from polyroute.gateway._observe import _Counter, _Histogram

BUCKETS = (0.005, 0.1, 1, 2.5)


def _text(registry: CollectorRegistry) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


def test_series_render_as_prometheus_clients_do() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = _Counter("calls", "Calls.", ["provider", "status"])
    histogram = _Histogram("latency_seconds", "Latency.", ["endpoint"], BUCKETS)
    ours.register(counter)
    ours.register(histogram)
    their_counter = Counter("calls", "Calls.", ["provider", "status"], registry=theirs)
    their_histogram = Histogram(
        "latency_seconds", "Latency.", ["endpoint"], buckets=BUCKETS, registry=theirs
    )
    for labels, amount in ((("a", "200"), 1.0), (("b", "500"), 2.5), (("a", "200"), 3.0)):
        counter.inc(labels, amount)
        their_counter.labels(*labels).inc(amount)
    # on a bound (counted in it), between bounds, past the last, and a second endpoint
    for endpoint, seconds in (("/x", 0.1), ("/x", 0.05), ("/x", 7.0), ("/y", 0.001)):
        histogram.observe((endpoint,), seconds)
        their_histogram.labels(endpoint).observe(seconds)
    assert _text(ours) == _text(theirs)
    assert 'calls_total{provider="a",status="200"} 4.0' in _text(ours)
    assert 'latency_seconds_bucket{endpoint="/x",le="0.1"} 2.0' in _text(ours)
