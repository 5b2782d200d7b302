"""The lock-free metric families of the infer path expose exactly what prometheus_client's would.

Why: ``modelserver_requests_total``, the latency and score histograms, the in-flight gauge, the
prediction counts and the drift bins moved from prometheus_client's Counter/Gauge/Histogram to
:mod:`modelserver.metrics`' own ``Loop*`` families (an increment is one addition there). The
operator's gates read their text, so every line — HELP, TYPE, series order, bucket edges, float
formatting — must be the same for the same updates.
"""

from __future__ import annotations

import math
from typing import Any

from modelserver.metrics import LoopCounter, LoopGauge, LoopHistogram
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LABELS = ("model", "revision", "kind")
BUCKETS = (0.0005, 0.001, 0.0025, 0.1, 0.5, 1.0, 10.0)
OBSERVED = [0.0, 0.0005, 0.00050001, 0.3, 1.0, 1e9, math.inf, -1.0, 0.1 + 0.2, float("nan"), 7.25]


def _updates(counter: Any, gauge: Any, histogram: Any) -> None:  # either implementation
    for kind in ("b", "a", "c"):  # created in this order: the exposition keeps it
        counter.labels("m", "r", kind)
        gauge.labels("m", "r", kind)
        histogram.labels("m", "r", kind)
    counter.labels("m", "r", "a").inc()
    counter.labels("m", "r", "a").inc(41)
    counter.labels("m", "r", "c").inc(0.5)
    gauge.labels("m", "r", "b").inc()
    gauge.labels("m", "r", "b").inc(3)
    gauge.labels("m", "r", "b").dec()
    gauge.labels("m", "r", "c").dec(2.5)
    for number, value in enumerate(OBSERVED):
        histogram.labels("m", "r", "a" if number % 3 else "b").observe(value)


def test_loop_families_expose_what_prometheus_client_families_do() -> None:
    theirs = CollectorRegistry(auto_describe=True)
    _updates(
        Counter("x_requests", "Requests \\ with\na newline.", LABELS, registry=theirs),
        Gauge("x_inflight", "In flight.", LABELS, registry=theirs),
        Histogram("x_seconds", "Seconds.", LABELS, buckets=BUCKETS, registry=theirs),
    )
    ours = CollectorRegistry(auto_describe=True)
    _updates(
        LoopCounter("x_requests", "Requests \\ with\na newline.", LABELS, registry=ours),
        LoopGauge("x_inflight", "In flight.", LABELS, registry=ours),
        LoopHistogram("x_seconds", "Seconds.", LABELS, registry=ours, buckets=BUCKETS),
    )
    assert generate_latest(ours).decode() == generate_latest(theirs).decode()


def test_a_series_is_created_once() -> None:
    family = LoopCounter("x_requests", "Requests.", LABELS, registry=CollectorRegistry())
    assert family.labels("m", "r", "a") is family.labels("m", "r", "a")
    assert family.labels("m", "r", 1) is family.labels("m", "r", "1")  # label values are strings, as there
