"""The ``drift`` gate: a revision's binned inputs and scores against a reference, from Prometheus alone.

The model server counts every observed feature value (and every prediction score) in the bins of
its model's training reference and exports the reference fractions beside the counts
(``modelserver_feature_bin_total`` and ``modelserver_feature_bin_reference``, docs/metrics.md), so
the operator needs neither the requests nor ``metadata.json``. Two queries per revision and period:

* the counts, ``sum by (feature, bin) (increase(...[<evidence period>]))``;
* the reference, ``max by (feature, bin) (last_over_time(...))`` (every pod of a revision exports
  the same fractions).

Each feature is judged by :func:`modelrollout.metrics.drift.judge` (PSI above ``maxPSI`` *and* the
chi-square test significant at the check's alpha); ``maxPSIVsStable`` compares the counts with the
stable revision's over the same period instead (PSI against the stable's smoothed fractions, and the
chi-square test of homogeneity).

A feature is judged only with at least ``max(minSamples, 20 * (k - 1) / bound)`` values for ``k``
bins: PSI's expectation under no drift is about ``(k - 1) / n``, so this keeps that noise at a
twentieth of the bound or less; a healthy feature then needs a chi-square statistic 20 times its
mean to be flagged (p below 1e-15 for six bins). What remains are real moves (docs/drift.md has the
measured false-alarm rates, ``make bench-drift``).

Verdicts: Fail when any judged feature drifted; Pass when every feature was judged and none drifted;
``InsufficientSamples`` while some still lack values; ``NoData`` (blind) when the revision exports no
bins at all (its metadata.json has no ``reference_bins``, or a server older than these counters).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from modelrollout.api.types import SCORE_FEATURE, FeatureDrift, GateReason, MetricResult, MetricSpec
from modelrollout.metrics import drift
from modelrollout.metrics.provider import MetricsProvider, VectorResult

COUNTS = (
    "sum by (feature, bin) (increase(modelserver_feature_bin_total"
    '{{namespace="{namespace}", revision="{revision}"}}[{range}]{offset}))'
)
REFERENCE = (
    "max by (feature, bin) (last_over_time(modelserver_feature_bin_reference"
    '{{namespace="{namespace}", revision="{revision}"}}[{range}]{offset}))'
)
_VERDICTS: dict[GateReason, Literal["Pass", "Fail"]] = {GateReason.PASSED: "Pass", GateReason.FAILED: "Fail"}
MAX_BINS = 64
"""The most bins a feature may have (the model server refuses more at load)."""
NOISE_SHARE = 20.0
"""A feature is judged once PSI's noise under no drift, about ``(k - 1) / n``, is at most the bound
divided by this."""


def min_values(bins: int, bound: float, min_samples: int) -> int:
    """The values a feature of ``bins`` bins needs before it is judged against ``bound``."""
    return max(min_samples, math.ceil(NOISE_SHARE * (bins - 1) / bound))


@dataclass
class _Asked:
    queries: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def vector(self, provider: MetricsProvider, promql: str) -> VectorResult:
        started = time.monotonic()
        result = provider.query_vector(promql)
        self.queries += 1
        self.seconds += result.seconds or (time.monotonic() - started)
        return result


def _by_feature(series: tuple[tuple[dict[str, str], float], ...]) -> dict[str, dict[int, float]]:
    """``{feature: {bin index: value}}``; series with a malformed bin label, or a bin beyond the
    model server's limit (MAX_BINS), are ignored: whatever else exports these names cannot make the
    operator allocate for it."""
    out: dict[str, dict[int, float]] = {}
    for labels, value in series:
        name, raw = labels.get("feature"), labels.get("bin", "")
        if name is None or not raw.isdigit() or int(raw) >= MAX_BINS:
            continue
        out.setdefault(name, {})[int(raw)] = value
    return out


def _dense(values: dict[int, float], size: int) -> np.ndarray:
    return np.array([max(values.get(i, 0.0), 0.0) for i in range(size)], dtype=np.float64)


def _judge_vs_reference(
    name: str, reference: np.ndarray, counts: np.ndarray, bound: float, alpha: float, min_samples: int
) -> FeatureDrift | str:
    """One feature against its training reference, or why it cannot be judged yet."""
    n = int(counts.sum().round())
    need = min_values(reference.size, bound, min_samples)
    if n < need:
        return f"{name}: {n} of {need} values"
    bins = drift.ReferenceBins(tuple(float(i) for i in range(reference.size - 1)), tuple(reference / reference.sum()))
    result = drift.judge(bins, np.rint(counts).astype(np.int64), max_psi=bound, alpha=alpha, min_samples=need)
    return FeatureDrift(
        name=name,
        psi=round(result.psi, 4),
        pValue=float(f"{result.p_value:.3g}"),
        samples=n,
        drifted=result.verdict == drift.DriftVerdict.DRIFTED,
    )


def _judge_vs_stable(
    name: str, stable: np.ndarray, counts: np.ndarray, bound: float, alpha: float, min_samples: int
) -> FeatureDrift | str:
    """One feature's counts against the stable revision's over the same period."""
    n, m = int(counts.sum().round()), int(stable.sum().round())
    need = min_values(counts.size, bound, min_samples)
    if min(n, m) < need:
        return f"{name}: {n} values and {m} on stable, need {need} each"
    expected = (stable + drift.SMOOTHING) / (stable.sum() + drift.SMOOTHING * stable.size)
    value = drift.psi(expected, np.rint(counts))
    test = drift.chi_square_two_samples(np.rint(counts), np.rint(stable))
    return FeatureDrift(
        name=f"{name} vs stable",
        psi=round(value, 4),
        pValue=float(f"{test.p_value:.3g}"),
        samples=n,
        drifted=value > bound and test.p_value < alpha,
    )


def evaluate(
    metric: MetricSpec,
    provider: MetricsProvider,
    *,
    namespace: str,
    revision: str,
    baseline: str | None,
    period: dict[str, str],
    base_period: dict[str, str] | None,
    alpha: float,
    threshold: str,
) -> MetricResult:
    """The drift gate for ``revision`` over ``period`` (``{"range": "600s", "offset": ""}``); the
    baseline's counts over ``base_period`` when ``maxPSIVsStable`` is set and a baseline is given."""
    asked = _Asked()

    def result(reason: GateReason, features: list[FeatureDrift], samples: int | None = None) -> MetricResult:
        ranked = sorted(features, key=lambda f: (not f.drifted, -f.psi))
        timing = f" [{asked.queries} queries, {asked.seconds * 1000:.0f} ms]" if asked.queries else ""
        return MetricResult(
            name=metric.name,
            value=max((f.psi for f in features), default=None),
            threshold=threshold,
            samples=samples,
            verdict=_VERDICTS.get(reason, "Inconclusive"),
            reason=reason,
            message="; ".join(asked.notes) + timing,
            features=ranked,
        )

    own_q = COUNTS.format(namespace=namespace, revision=revision, **period)
    ref_q = REFERENCE.format(namespace=namespace, revision=revision, **period)
    counts, reference = asked.vector(provider, own_q), asked.vector(provider, ref_q)
    error = counts.error or reference.error
    if error:
        asked.notes.append(f"revision {revision}: {error}")
        return result(GateReason.QUERY_ERROR, [])
    own, refs = _by_feature(counts.series), _by_feature(reference.series)
    refs = {name: bins for name, bins in refs.items() if sum(bins.values()) > 0}  # an all-zero reference says nothing
    if not refs:
        asked.notes.append(
            f"revision {revision} exports no reference bins (modelserver_feature_bin_reference): its metadata.json "
            "needs reference_bins per feature (docs/drift.md)"
        )
        return result(GateReason.NO_DATA, [])
    names = list(metric.features) or sorted(refs, key=lambda n: (n == SCORE_FEATURE, n))
    unknown = [n for n in names if n not in refs]
    if unknown:
        asked.notes.append(f"no reference bins for {', '.join(unknown)} (known: {', '.join(sorted(refs))})")
        return result(GateReason.NO_DATA, [])

    stable: dict[str, dict[int, float]] | None = None
    if metric.maxPSIVsStable is not None and baseline is not None and base_period is not None:
        base = asked.vector(provider, COUNTS.format(namespace=namespace, revision=baseline, **base_period))
        if base.error:
            asked.notes.append(f"revision {baseline}: {base.error}")
            return result(GateReason.QUERY_ERROR, [])
        stable = _by_feature(base.series)
    elif metric.maxPSIVsStable is not None:
        asked.notes.append("not compared with stable: no concurrent baseline")

    judged: list[FeatureDrift] = []
    waiting: list[str] = []
    for name in names:
        size = max(refs[name]) + 1
        reference_p = _dense(refs[name], size)
        own_counts = _dense(own.get(name, {}), size)
        checks: list[FeatureDrift | str] = []
        if metric.maxPSI is not None:
            checks.append(_judge_vs_reference(name, reference_p, own_counts, metric.maxPSI, alpha, metric.minSamples))
        if stable is not None and metric.maxPSIVsStable is not None:
            stable_counts = _dense(stable.get(name, {}), size)
            checks.append(
                _judge_vs_stable(name, stable_counts, own_counts, metric.maxPSIVsStable, alpha, metric.minSamples)
            )
        for check in checks:
            (waiting.append if isinstance(check, str) else judged.append)(check)  # type: ignore[arg-type]

    samples = min((f.samples for f in judged), default=0) if not waiting else None
    drifted = [f for f in judged if f.drifted]
    if drifted:
        asked.notes.insert(0, "drifted: " + ", ".join(f"{f.name} PSI {f.psi:.3f} (p {f.pValue:.2g})" for f in drifted))
        return result(GateReason.FAILED, judged, samples)
    if waiting:
        asked.notes.insert(0, "waiting for values: " + "; ".join(waiting))
        return result(GateReason.INSUFFICIENT_SAMPLES, judged, samples)
    if not judged:  # maxPSIVsStable alone, and nothing to compare with: the note says so
        return result(GateReason.PASSED, judged, samples)
    top = max(judged, key=lambda f: f.psi)
    asked.notes.insert(0, f"no drift in {len(judged)} checks; largest PSI {top.psi:.3f} ({top.name})")
    return result(GateReason.PASSED, judged, samples)
