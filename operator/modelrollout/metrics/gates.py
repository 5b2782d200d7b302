"""One gate check: every metric of ``spec.analysis`` for one revision, as an ``AnalysisResult``.

Per metric, in this order:

1. **Value.** The gate's query for the revision under analysis (the canary; the new stable while
   baking). A query error (Prometheus unreachable, timeout, PromQL error, several series) or no data
   (empty result, NaN such as ``0/0`` with no traffic) is **Inconclusive** — never Pass, never Fail.
2. **Samples.** Built-in gates also count the samples behind the value (infer requests for
   error-rate, requests that reached the model for latency-p99, feedback labels for accuracy).
   Fewer than ``minSamples`` is **Inconclusive**: too little data to pass *or* fail. Custom gates
   have no sample count; their only guard is "no data".
3. **Absolute thresholds.** ``value < min`` or ``value > max`` is **Fail** (a plain comparison of
   the observed value, as users read ``max: 0.01``).
4. **Versus stable** (``maxRiseVsStable`` / ``maxDropVsStable``), against a *baseline*:

   * *Live*, while the revision is a canary: the same queries for ``status.stableRevision``, with
     the same ``minSamples`` guard. Ratio gates (error-rate, accuracy) use the one-sided
     two-proportion test of :mod:`.statistics` at ``analysis.significance``; latency-p99 and custom
     gates compare plain values.
   * *Recorded*, when no live baseline is usable: the stable's last trustworthy value, i.e. the
     ``stableValue`` of this gate in ``status.lastAnalysis`` when that analysis was of this same
     revision (each check records the baseline it used, so it carries forward). This covers the
     canary's last step — at 100 % the stable takes no traffic and soon has no data in the window,
     which would otherwise make the step inconclusive until ``inconclusiveLimit`` rolled it back —
     a stable starved below ``minSamples`` at high canary weights, and the *bake*: the revision is
     then the stable one and the previous stable idles, so its value frozen at promotion is the
     baseline (it is never queried live: it would read stale pre-promotion data or nothing). Ratio
     gates use the exact one-sample binomial test against it, other gates a plain comparison.
   * *None*: a canary without a usable live or recorded baseline is **Inconclusive** (unless step 3
     already failed it); a baking revision without a recorded baseline is checked against absolute
     thresholds only, and the message says so.

   ``stableValue`` in the result is always the baseline actually used (never an under-sampled one),
   which is what makes it safe to carry forward.

A gate's verdict is Fail if any part failed, else Inconclusive if any part was inconclusive, else
Pass. The check's verdict aggregates the gates the same way; no gates is Pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from modelrollout.api.types import (
    AnalysisResult,
    MetricResult,
    MetricSpec,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelrollout.metrics import statistics, templates
from modelrollout.metrics.provider import MetricsProvider, PrometheusProvider, QueryResult

log = logging.getLogger(__name__)

Verdict = Literal["Pass", "Fail", "Inconclusive"]
_SEVERITY: dict[str, int] = {"Pass": 0, "Inconclusive": 1, "Fail": 2}


def aggregate(verdicts: Iterable[str]) -> Verdict:
    """Any Fail → Fail; else any Inconclusive → Inconclusive; else (including none) Pass."""
    worst = max(verdicts, key=_SEVERITY.__getitem__, default="Pass")
    return worst  # type: ignore[return-value]


def threshold_text(metric: MetricSpec, significance: float) -> str:
    """The thresholds as a human reads them, e.g. ``<= 250 ms, rise vs stable <= 50 ms``."""
    unit = templates.UNITS.get(metric.effective_template, "")
    ratio = metric.effective_template in templates.RATIO_TEMPLATES
    test = f" (alpha={significance:g})" if ratio else ""
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}{unit}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}{unit}")
    if metric.maxDropVsStable is not None:
        parts.append(f"drop vs stable <= {metric.maxDropVsStable:g}{unit}{test}")
    if metric.maxRiseVsStable is not None:
        parts.append(f"rise vs stable <= {metric.maxRiseVsStable:g}{unit}{test}")
    return ", ".join(parts)


@dataclass
class _Gate:
    """Findings collected while evaluating one metric."""

    metric: MetricSpec
    unit: str
    verdicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    queries: int = 0
    seconds: float = 0.0

    def add(self, verdict: Verdict, note: str) -> None:
        self.verdicts.append(verdict)
        self.notes.append(note)

    def ask(self, provider: MetricsProvider, promql: str) -> QueryResult:
        result = provider.query(promql)
        self.queries += 1
        self.seconds += result.seconds
        log.debug("query %.3fs value=%s error=%s: %s", result.seconds, result.value, result.error, promql)
        return result

    def fmt(self, value: float) -> str:
        return f"{value:.4g}{self.unit}"


@dataclass(frozen=True)
class _Observed:
    """A revision's value and sample count (``samples`` None for custom gates)."""

    value: float
    samples: int | None


def _observe(
    gate: _Gate, provider: MetricsProvider, queries: templates.GateQueries, who: str
) -> tuple[_Observed | None, str | None]:
    """Query value and samples for one revision; ``(None, reason)`` when it is not usable."""
    value = gate.ask(provider, queries.value)
    if value.error:
        return None, f"{who}: {value.error}"
    samples: int | None = None
    if queries.samples is not None:
        counted = gate.ask(provider, queries.samples)
        if counted.error:
            return None, f"{who}: {counted.error}"
        samples = round(counted.value or 0.0)
    if value.value is None:
        got = "" if samples is None else f" ({samples} samples)"
        return None, f"{who}: no data in the window{got}"
    return _Observed(value.value, samples), None


def _event_counts(observed: _Observed, direction: Literal["rise", "drop"]) -> tuple[int, int]:
    """Bad events and samples of a ratio gate: a rise counts the gate's events, a drop their complement."""
    assert observed.samples is not None
    n = observed.samples
    events = min(max(round(observed.value * n), 0), n)
    return (events if direction == "rise" else n - events), n


def _relative(metric: MetricSpec) -> tuple[Literal["rise", "drop"], float] | None:
    if metric.maxRiseVsStable is not None:
        return "rise", metric.maxRiseVsStable
    if metric.maxDropVsStable is not None:
        return "drop", metric.maxDropVsStable
    return None


def recorded_baseline(status: ModelDeploymentStatus, revision: str, metric_name: str) -> float | None:
    """The baseline the last check of this same revision used for this gate (``lastAnalysis.stableValue``)."""
    last = status.lastAnalysis
    if last is None or last.revision != revision:
        return None
    for m in last.metrics:
        if m.name == metric_name:
            return m.stableValue
    return None


def _too_few(samples: int | None, minimum: int) -> bool:
    """The sample guard; zero samples can never judge, even with ``minSamples: 0``."""
    return samples is not None and samples < max(minimum, 1)


def evaluate_metric(
    metric: MetricSpec,
    provider: MetricsProvider,
    *,
    namespace: str,
    name: str,
    revision: str,
    status: ModelDeploymentStatus,
    window: str,
    significance: float,
) -> MetricResult:
    """One gate for ``revision``: value, samples, thresholds and the comparison with stable (module doc)."""
    template = metric.effective_template
    gate = _Gate(metric, templates.UNITS.get(template, ""))
    threshold = threshold_text(metric, significance)
    stable_rev = status.stableRevision

    def result(verdict: Verdict, value: float | None, stable_value: float | None, samples: int | None) -> MetricResult:
        timing = f" [{gate.queries} queries, {gate.seconds * 1000:.0f} ms]" if gate.queries else ""
        return MetricResult(
            name=metric.name,
            value=value,
            stableValue=stable_value,
            threshold=threshold,
            samples=samples,
            verdict=verdict,
            message="; ".join(gate.notes) + timing,
        )

    def queries_for(rev: str) -> templates.GateQueries:
        table = templates.variables(
            namespace=namespace, name=name, revision=rev, stable_revision=stable_rev, window=window
        )
        return templates.gate_queries(template, metric.query, table)

    try:
        own_queries = queries_for(revision)
    except templates.TemplateError as exc:
        gate.add("Inconclusive", f"invalid query: {exc}")
        return result("Inconclusive", None, None, None)

    own, reason = _observe(gate, provider, own_queries, f"revision {revision}")
    if own is None:
        gate.add("Inconclusive", reason or "no data")
        return result("Inconclusive", None, None, None)
    if _too_few(own.samples, metric.minSamples):
        gate.add("Inconclusive", f"{own.samples} samples < minSamples {metric.minSamples} in the last {window}")
        return result("Inconclusive", own.value, None, own.samples)

    value = own.value
    within: list[str] = []
    for bound, limit, breached, op in (
        ("min", metric.min, metric.min is not None and value < metric.min, ">="),
        ("max", metric.max, metric.max is not None and value > metric.max, "<="),
    ):
        if limit is None:
            continue
        if breached:
            gate.add("Fail", f"{gate.fmt(value)} {'<' if bound == 'min' else '>'} {bound} {gate.fmt(limit)}")
        else:
            within.append(f"{op} {bound} {gate.fmt(limit)}")
    if within:
        gate.add("Pass", f"{gate.fmt(value)} " + " and ".join(within))

    baseline: float | None = None
    relative = _relative(metric)
    if relative is not None:
        baseline = _versus_stable(gate, provider, own, relative, queries_for, status, revision, significance)

    if not gate.verdicts:
        gate.add("Pass", f"{gate.fmt(value)} (no thresholds set)")
    verdict = aggregate(gate.verdicts)
    if own.samples is not None:
        gate.notes.append(f"{own.samples} samples in {window}")
    return result(verdict, value, baseline, own.samples)


def _versus_stable(
    gate: _Gate,
    provider: MetricsProvider,
    own: _Observed,
    relative: tuple[Literal["rise", "drop"], float],
    queries_for: Callable[[str], templates.GateQueries],
    status: ModelDeploymentStatus,
    revision: str,
    significance: float,
) -> float | None:
    """Add the versus-stable finding to ``gate``; return the baseline used (None if none was usable)."""
    metric = gate.metric
    direction, margin = relative
    ratio = metric.effective_template in templates.RATIO_TEMPLATES
    sign = 1.0 if direction == "rise" else -1.0
    stable_rev = status.stableRevision
    baking = stable_rev is None or stable_rev == revision

    unusable = ""
    if not baking:
        assert stable_rev is not None
        stable, reason = _observe(gate, provider, queries_for(stable_rev), f"stable {stable_rev}")
        unusable = reason or ""
        if stable is not None and _too_few(stable.samples, metric.minSamples):
            unusable = (
                f"stable {stable_rev}: {stable.samples} samples < minSamples {metric.minSamples} "
                f"(value {gate.fmt(stable.value)})"
            )
            stable = None
        if stable is not None:
            if ratio:
                xc, nc = _event_counts(own, direction)
                xs, ns = _event_counts(stable, direction)
                comparison = statistics.proportion_rise(xc, nc, xs, ns, margin, significance)
                counts = f" ({xc}/{nc} vs {xs}/{ns})"
            else:
                comparison = statistics.value_rise(sign * own.value, sign * stable.value, margin)
                counts = ""
            gate.add(
                "Fail" if comparison.regression else "Pass",
                f"{gate.fmt(own.value)} vs stable {gate.fmt(stable.value)}{counts}: "
                f"{_describe(comparison, direction, gate.unit)}",
            )
            return stable.value

    reference = recorded_baseline(status, revision, metric.name)
    if reference is None:
        if baking:
            gate.add(
                "Pass",
                f"{direction} vs stable not checked: {revision} is the stable revision and no baseline was "
                "recorded at promotion (absolute thresholds only)",
            )
        else:
            gate.add("Inconclusive", f"cannot compare with stable: {unusable}")
        return None
    if ratio:
        x, n = _event_counts(own, direction)
        ref = reference if direction == "rise" else 1.0 - reference
        comparison = statistics.proportion_rise_vs_reference(x, n, ref, margin, significance)
    else:
        comparison = statistics.value_rise(sign * own.value, sign * reference, margin)
    if baking:
        label = f"previous stable {gate.fmt(reference)} at promotion"
    else:
        label = f"stable {gate.fmt(reference)} as last measured (now {unusable})"
    gate.add(
        "Fail" if comparison.regression else "Pass",
        f"{gate.fmt(own.value)} vs {label}: {_describe(comparison, direction, gate.unit)}",
    )
    return reference


def _describe(comparison: statistics.Comparison, direction: str, unit: str) -> str:
    """Comparison text in the gate's own direction and unit (``drop +0.21 > 0.02: ...``)."""
    text = comparison.describe()
    if direction == "drop":
        text = "drop" + text[len("rise") :]
    if unit and comparison.p_value is None:
        text += unit
    return text


def run_analysis(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    revision: str,
    namespace: str,
    name: str,
    now: datetime,
    *,
    provider: MetricsProvider | None = None,
) -> AnalysisResult:
    """Check every gate of ``spec.analysis`` for ``revision`` (see the module docstring for the rules).

    Synchronous and blocking (each query is bounded by ``prometheus.timeoutSeconds``): call it off
    the event loop. ``provider`` replaces Prometheus in tests.
    """
    analysis = spec.analysis
    if not analysis.metrics:
        return AnalysisResult(time=now, revision=revision, verdict="Pass", metrics=[])
    window = templates.query_window(analysis.interval)
    owned: PrometheusProvider | None = None
    if provider is None:
        if analysis.prometheus is None:
            results = [
                MetricResult(
                    name=m.name,
                    threshold=threshold_text(m, analysis.significance),
                    verdict="Inconclusive",
                    message="no Prometheus configured (spec.analysis.prometheus.address)",
                )
                for m in analysis.metrics
            ]
            return AnalysisResult(time=now, revision=revision, verdict="Inconclusive", metrics=results)
        owned = provider = PrometheusProvider(
            analysis.prometheus.address, timeout_seconds=analysis.prometheus.timeoutSeconds
        )
    started = time.monotonic()
    try:
        results = [
            _guarded(m, provider, namespace, name, revision, status, window, analysis.significance)
            for m in analysis.metrics
        ]
    finally:
        if owned is not None:
            owned.close()
    verdict = aggregate(r.verdict for r in results)
    log.info(
        "analysis %s/%s revision %s: %s in %.2fs (%s)",
        namespace,
        name,
        revision,
        verdict,
        time.monotonic() - started,
        ", ".join(f"{r.name}={r.verdict}" for r in results),
    )
    return AnalysisResult(time=now, revision=revision, verdict=verdict, metrics=results)


def _guarded(
    metric: MetricSpec,
    provider: MetricsProvider,
    namespace: str,
    name: str,
    revision: str,
    status: ModelDeploymentStatus,
    window: str,
    significance: float,
) -> MetricResult:
    """:func:`evaluate_metric`, with any unexpected error reported as Inconclusive instead of raised.

    A bug in one gate must hold the rollout (and show in status and logs), not crash the reconcile
    and leave the ModelDeployment without any analysis at all.
    """
    try:
        return evaluate_metric(
            metric,
            provider,
            namespace=namespace,
            name=name,
            revision=revision,
            status=status,
            window=window,
            significance=significance,
        )
    except Exception as exc:
        log.exception("gate %s of %s/%s failed unexpectedly", metric.name, namespace, name)
        return MetricResult(
            name=metric.name,
            threshold=threshold_text(metric, significance),
            verdict="Inconclusive",
            message=f"internal error evaluating the gate: {type(exc).__name__}: {exc}",
        )
