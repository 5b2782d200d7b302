"""Simulated bin counters of one revision and a Prometheus that answers the drift gate's two queries.

The model server counts every request's values into ``modelserver_feature_bin_total{feature, bin}``
and exports ``modelserver_feature_bin_reference`` beside them; Prometheus scrapes them every
``scrape`` seconds. :func:`counters` turns Poisson arrivals of generated rows into the cumulative
counters at each scrape; :class:`SimPrometheus` answers the gate's

* ``sum by (feature, bin) (increase(modelserver_feature_bin_total{...}[<n>s]<offset>))`` with the
  counter at the last scrape before the range's end minus the counter at the last scrape before its
  start (no extrapolation, as hack/decisions/sim.py), every bin of every feature, zeros included;
* ``max by (feature, bin) (last_over_time(modelserver_feature_bin_reference{...}[...]))`` with
  metadata.json's fractions.

Anything else is an error, never a guess.
"""

from __future__ import annotations

import re

import numpy as np
from modelrollout.metrics.provider import QueryResult, VectorResult

from .traffic import Binner, Shift, rows

_COUNTS = re.compile(
    r"^sum by \(feature, bin\) \(increase\(modelserver_feature_bin_total\{(?P<labels>[^}]*)\}"
    r"\[(?P<range>\d+)s\](?: offset (?P<offset>\d+)s)?\)\)$"
)
_REFERENCE = re.compile(
    r"^max by \(feature, bin\) \(last_over_time\(modelserver_feature_bin_reference\{(?P<labels>[^}]*)\}"
    r"\[\d+s\](?: offset \d+s)?\)\)$"
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
CHUNK = 400_000
"""Rows generated, scored and binned at a time."""


def counters(
    binner: Binner,
    rng: np.random.Generator,
    rate: float,
    seconds: float,
    *,
    scrape: float = 15.0,
    seed: int,
    shift: Shift | None = None,
    shift_at: float | None = None,
) -> np.ndarray:
    """Cumulative counters ``[scrape index, slot]`` (row 0: time 0, all zero) for ``seconds`` of
    Poisson traffic at ``rate`` requests/s, one generated row per request (rows ``seed * 10_000 +
    1, 2, ...`` of the generator, about CHUNK at a time); with ``shift``, the rows arriving from
    ``shift_at`` on (rounded down to a scrape) are shifted."""
    n_scrapes = int(np.ceil(seconds / scrape))
    arrivals = rng.poisson(rate * scrape, n_scrapes)
    increments = np.zeros((n_scrapes, binner.width), dtype=np.int64)
    shifted_from = n_scrapes if shift is None or shift_at is None else int(np.floor(shift_at / scrape))
    segments = [(0, shifted_from, None), (shifted_from, n_scrapes, shift)]
    part = 0
    for first, last, change in segments:
        if last <= first:
            continue
        start = first
        while start < last:  # whole scrape intervals, about CHUNK rows at a time
            total = np.cumsum(arrivals[start:last])
            stop = start + max(1, int(np.searchsorted(total, CHUNK, side="right")))
            stop = min(stop, last)
            counts = arrivals[start:stop]
            n = int(counts.sum())
            if n:
                part += 1
                slots = binner.slots(rows(n, seed=seed * 10_000 + part, shift=change))
                scrape_of = np.repeat(np.arange(start, stop), counts)
                flat = (scrape_of[:, None] * binner.width + slots).ravel()
                increments += np.bincount(flat, minlength=n_scrapes * binner.width).reshape(increments.shape)
            start = stop
    out = np.zeros((n_scrapes + 1, binner.width), dtype=np.int64)
    np.cumsum(increments, axis=0, out=out[1:])
    return out


class SimPrometheus:
    """Answers the drift gate's queries for one revision from cumulative counters (a MetricsProvider).

    ``now`` is the simulated time in seconds since the counters started; the last counts answered
    are kept in ``last_counts`` (``{feature: counts per bin}``) for the benchmark's PSI-alone figure.
    """

    def __init__(self, binner: Binner, cumulative: np.ndarray, namespace: str, revision: str, scrape: float = 15.0):
        self.binner, self.cumulative, self.scrape = binner, cumulative, scrape
        self.namespace, self.revision = namespace, revision
        self.now = 0.0
        self.queries = 0
        self.last_counts: dict[str, np.ndarray] = {}
        self._reference = self._series([np.asarray(c.fractions, dtype=np.float64) for c in binner.columns])

    def query(self, promql: str) -> QueryResult:
        self.queries += 1
        return QueryResult(promql, error="the drift simulator answers only the drift gate's vector queries")

    def at(self, t: float) -> np.ndarray:
        """The counters Prometheus holds at ``t``: the last scrape at or before it (zero before the first)."""
        index = int(np.floor(t / self.scrape + 1e-9))
        if index < 0:
            return np.zeros(self.binner.width, dtype=np.int64)
        if index >= self.cumulative.shape[0]:
            raise ValueError(
                f"asked for {t:.0f} s, the counters end at {(self.cumulative.shape[0] - 1) * self.scrape} s"
            )
        return self.cumulative[index]

    def increase(self, range_s: float, offset_s: float = 0.0) -> np.ndarray:
        end = self.now - offset_s
        return self.at(end) - self.at(end - range_s)

    def query_vector(self, promql: str) -> VectorResult:
        self.queries += 1
        counts, reference = _COUNTS.match(promql), _REFERENCE.match(promql)
        match = counts or reference
        if match is None:
            return VectorResult(promql, error="the drift simulator answers only the drift gate's two queries")
        labels = dict(_LABEL.findall(match["labels"]))
        if labels != {"namespace": self.namespace, "revision": self.revision}:
            return VectorResult(promql)  # no such series: an empty vector
        if reference is not None:
            return VectorResult(promql, self._reference)
        assert counts is not None
        flat = self.increase(float(counts["range"]), float(counts["offset"] or 0))
        per_feature = [flat[lo:hi] for lo, hi in zip(self.binner.offsets[:-1], self.binner.offsets[1:], strict=True)]
        self.last_counts = {c.name: v for c, v in zip(self.binner.columns, per_feature, strict=True)}
        return VectorResult(promql, self._series(per_feature))

    def _series(self, values: list[np.ndarray]) -> tuple[tuple[dict[str, str], float], ...]:
        return tuple(
            ({"feature": c.name, "bin": str(i)}, float(v))
            for c, per_bin in zip(self.binner.columns, values, strict=True)
            for i, v in enumerate(per_bin)
        )
