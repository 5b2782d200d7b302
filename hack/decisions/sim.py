"""A simulated Prometheus and model-server fleet for driving the real engine and gates.

``make bench-decisions`` needs thousands of rollouts in minutes, so the traffic is simulated at the
level the gates see: per revision, cumulative counters (infer requests, 5xx, 4xx, requests within
each latency SLO bucket, feedback labels and correct labels), recorded at every scrape. The gates'
own PromQL (``modelrollout.metrics.templates``) is answered by :class:`SimPrometheus`, which parses
the ``sum(increase(<metric>{<labels>}[<range>] offset <o>))`` shape the built-in templates render:
the increase is the counter at the last scrape before the range's end minus the counter at the
last scrape before its start, as Prometheus computes it without extrapolation. Everything else (the
engine, the gate code, the sequential tests) is the product's own code, called as the operator calls
it. Anything the simulator cannot answer is an error, never a guess.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from modelrollout.metrics.provider import QueryResult, VectorResult
from modelrollout.metrics.templates import le_label

_QUERY = re.compile(
    r"^sum\(increase\((?P<metric>[a-z_]+)\{(?P<labels>[^}]*)\}\[(?P<range>\d+)s\](?: offset (?P<offset>\d+)s)?\)\)$"
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Behaviour:
    """What one revision does to each request: probabilities per request."""

    server_error: float = 0.01
    client_error: float = 0.002
    accuracy: float = 0.90
    slow: dict[float, float] = field(default_factory=dict)  # SLO in ms -> share of requests slower
    labelled: float = 1.0  # share of requests that get a ground-truth label
    agreement: float = 0.99  # share of rows predicted as the stable model does (when its pods compare)


def lognormal_slow_share(slo_ms: float, median_ms: float = 20.0, sigma: float = 0.5, doubled_top: float = 0.0) -> float:
    """Share of requests slower than ``slo_ms`` for lognormal latency, with the slowest
    ``doubled_top`` share taking twice as long (scenario (c) of issue 8)."""

    def above(ms: float) -> float:
        return 0.5 * math.erfc(math.log(ms / median_ms) / sigma / math.sqrt(2.0))

    if doubled_top <= 0.0:
        return above(slo_ms)
    top_edge = median_ms * math.exp(sigma * _normal_quantile(1.0 - doubled_top))
    if slo_ms < top_edge:
        return above(slo_ms)
    return min(doubled_top, above(slo_ms / 2.0))


def _normal_quantile(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


_FIELDS = ("requests", "server_errors", "client_errors", "labels", "correct", "shadow_rows", "agreed")
_SLO_COLUMN = len(_FIELDS)
"""The first latency-SLO column: one per SLO follows."""


class Fleet:
    """Cumulative counters per revision, scraped every ``scrape`` seconds."""

    def __init__(self, rng: np.random.Generator, namespace: str, scrape: float, slos: tuple[float, ...]) -> None:
        self.rng, self.namespace, self.scrape = rng, namespace, scrape
        self.slos = slos
        self.le = {le_label(ms): ms for ms in slos}
        self.now = 0.0
        self.totals: dict[str, np.ndarray] = {}
        self.scrapes: dict[str, list[tuple[float, np.ndarray]]] = {}
        self.served: dict[str, int] = {}
        self.mirrored: dict[str, int] = {}

    def _width(self) -> int:
        return len(_FIELDS) + len(self.slos)

    def serve(
        self,
        until: float,
        rate: float,
        weights: dict[str, float],
        behaviours: dict[str, Behaviour],
        mirror: tuple[str, float] | None = None,
        compared: frozenset[str] = frozenset(),
    ) -> None:
        """Advance time to ``until`` scrape by scrape, sending Poisson traffic split by ``weights``;
        ``mirror`` (revision, percent) copies that share of the others' requests to a revision (no
        labels: no client saw its answers); ``compared`` revisions count every row they serve as
        compared with the stable model, agreeing with its ``agreement``."""
        while self.now + 1e-9 < until:
            step = min(self.scrape - (self.now % self.scrape), until - self.now)
            self._serve(step, rate, weights, behaviours, mirror, compared)
            self.now += step
            if abs(self.now % self.scrape) < 1e-6 or abs(self.now % self.scrape - self.scrape) < 1e-6:
                for rev, total in self.totals.items():
                    self.scrapes[rev].append((self.now, total.copy()))

    def _serve(
        self,
        seconds: float,
        rate: float,
        weights: dict[str, float],
        behaviours: dict[str, Behaviour],
        mirror: tuple[str, float] | None,
        compared: frozenset[str],
    ) -> None:
        revisions = [r for r, w in weights.items() if w > 0]
        if not revisions:
            return
        shares = np.array([weights[r] for r in revisions], dtype=float)
        counts = self.rng.multinomial(self.rng.poisson(rate * seconds), shares / shares.sum())
        copies = 0
        for rev, n in zip(revisions, counts, strict=True):
            self.served[rev] = self.served.get(rev, 0) + int(n)
            self._count(rev, int(n), behaviours[rev], rev in compared, labelled=True)
            if mirror is not None and rev != mirror[0]:
                copies += int(self.rng.binomial(n, mirror[1] / 100.0))
        if mirror is not None:
            self.mirrored[mirror[0]] = self.mirrored.get(mirror[0], 0) + copies
            self._count(mirror[0], copies, behaviours[mirror[0]], mirror[0] in compared, labelled=False)

    def _count(self, rev: str, n: int, b: Behaviour, compared: bool, labelled: bool) -> None:
        row = self.totals.setdefault(rev, np.zeros(self._width(), dtype=np.int64))
        self.scrapes.setdefault(rev, [(0.0, np.zeros(self._width(), dtype=np.int64))])
        if n == 0:
            return
        labels = self.rng.binomial(n, b.labelled) if labelled else 0
        row[0] += n
        row[1] += self.rng.binomial(n, b.server_error)
        row[2] += self.rng.binomial(n, b.client_error)
        row[3] += labels
        row[4] += self.rng.binomial(labels, b.accuracy)
        if compared:
            row[5] += n
            row[6] += self.rng.binomial(n, b.agreement)
        for i, ms in enumerate(self.slos):
            row[_SLO_COLUMN + i] += n - self.rng.binomial(n, b.slow.get(ms, 0.0))  # within the SLO

    def at(self, revision: str, t: float) -> np.ndarray | None:
        """The counters Prometheus holds for ``revision`` at time ``t`` (its last scrape)."""
        history = self.scrapes.get(revision)
        if not history:
            return None
        lo, hi = 0, len(history) - 1
        if history[0][0] > t:
            return None
        while lo < hi:  # the last scrape at or before t
            mid = (lo + hi + 1) // 2
            if history[mid][0] <= t + 1e-9:
                lo = mid
            else:
                hi = mid - 1
        return history[lo][1]


class SimPrometheus:
    """Answers the built-in ratio-gate queries from a :class:`Fleet` (a MetricsProvider)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.queries = 0

    def query(self, promql: str) -> QueryResult:
        self.queries += 1
        match = _QUERY.match(promql)
        if match is None:
            return QueryResult(promql, error="the simulator answers only sum(increase(...)) queries")
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("namespace") != self.fleet.namespace:
            return QueryResult(promql)
        column = self._column(match["metric"], labels)
        if isinstance(column, str):
            return QueryResult(promql, error=column)
        end = self.fleet.now - float(match["offset"] or 0)
        start = end - float(match["range"])
        last, first = self.fleet.at(labels["revision"], end), self.fleet.at(labels["revision"], start)
        if last is None:
            return QueryResult(promql)  # no series: Prometheus answers an empty vector
        before = 0 if first is None else int(first[column])
        return QueryResult(promql, value=float(int(last[column]) - before))

    def query_vector(self, promql: str) -> VectorResult:
        """The drift gate's queries: not simulated here (``make bench-drift`` judges drift)."""
        self.queries += 1
        return VectorResult(promql, error="the simulator answers only sum(increase(...)) queries")

    def _column(self, metric: str, labels: dict[str, str]) -> int | str:
        if metric == "modelserver_requests_total":
            code = labels.get("code")
            return {None: 0, "5xx": 1, "4xx": 2}.get(code, f"no code {code}")  # type: ignore[arg-type]
        if metric == "modelserver_feedback_total":
            return 4 if labels.get("correct") == "true" else 3
        if metric == "modelserver_request_duration_seconds_count":
            return 0
        if metric == "modelserver_request_duration_seconds_bucket":
            ms = self.fleet.le.get(labels.get("le", ""))
            return _SLO_COLUMN + self.fleet.slos.index(ms) if ms is not None else f"no bucket le={labels.get('le')}"
        if metric == "modelserver_shadow_rows_total":
            return 5
        if metric == "modelserver_shadow_agreed_rows_total":
            return 6
        return f"unknown metric {metric}"
