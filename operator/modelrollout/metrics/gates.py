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
4. **Versus stable** (``maxRiseVsStable`` / ``maxDropVsStable``):

   * *Canary step* (the revision is not the stable one): the same queries for
     ``status.stableRevision``. Stable with no data or fewer than ``minSamples`` makes the gate
     **Inconclusive** (unless step 3 already failed it). Ratio gates (error-rate, accuracy) use the
     one-sided two-proportion test of :mod:`.statistics` at ``analysis.significance``; latency-p99
     and custom gates compare plain values.
   * *Bake* (the revision **is** the stable one): the previous stable revision takes no traffic
     after promotion, so it has no live value to compare with (querying it would read stale
     pre-promotion data or nothing). The baseline is instead the previous stable's value frozen at
     promotion time: the ``stableValue`` of this gate in ``status.lastAnalysis`` when that analysis
     was of this same revision (the last canary check, then each bake check carries it forward).
     Ratio gates use an exact binomial test against it, other gates a plain comparison. Without such
     a value (e.g. the last canary check had no stable data) only the absolute thresholds apply, and
     the message says so.

A gate's verdict is Fail if any part failed, else Inconclusive if any part was inconclusive, else
Pass. The check's verdict aggregates the gates the same way; no gates is Pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
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


def _event_counts(template: str, observed: _Observed, direction: Literal["rise", "drop"]) -> tuple[int, int]:
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


def _baked_reference(status: ModelDeploymentStatus, revision: str, metric_name: str) -> float | None:
    """The previous stable's value frozen at promotion: carried in ``lastAnalysis`` of this revision."""
    last = status.lastAnalysis
    if last is None or last.revision != revision:
        return None
    for m in last.metrics:
        if m.name == metric_name:
            return m.stableValue
    return None


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
    ratio = template in templates.RATIO_TEMPLATES
    gate = _Gate(metric, templates.UNITS.get(template, ""))
    threshold = threshold_text(metric, significance)
    stable_rev = status.stableRevision
    baking = stable_rev is None or stable_rev == revision

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
    if own.samples is not None and own.samples < metric.minSamples:
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

    stable_value: float | None = None
    relative = _relative(metric)
    if relative is not None:
        direction, margin = relative
        stable_value = _compare(
            gate, provider, metric, own, direction, margin, ratio, baking, queries_for, status, revision, significance
        )

    if not gate.verdicts:
        gate.add("Pass", f"{gate.fmt(value)} (no thresholds set)")
    verdict = aggregate(gate.verdicts)
    if own.samples is not None:
        gate.notes.append(f"{own.samples} samples in {window}")
    return result(verdict, value, stable_value, own.samples)


def _compare(
    gate: _Gate,
    provider: MetricsProvider,
    metric: MetricSpec,
    own: _Observed,
    direction: Literal["rise", "drop"],
    margin: float,
    ratio: bool,
    baking: bool,
    queries_for,
    status: ModelDeploymentStatus,
    revision: str,
    significance: float,
) -> float | None:
    """Add the versus-stable finding to ``gate``; return the stable (or frozen reference) value."""
    template = metric.effective_template
    sign = 1.0 if direction == "rise" else -1.0
    word = "rise" if direction == "rise" else "drop"

    if baking:
        reference = _baked_reference(status, revision, metric.name)
        if reference is None:
            gate.add(
                "Pass",
                f"{word} vs stable not checked: {revision} is the stable revision and no baseline was "
                "recorded at promotion (absolute thresholds only)",
            )
            return None
        if ratio:
            x, n = _event_counts(template, own, direction)
            ref = reference if direction == "rise" else 1.0 - reference
            comparison = statistics.proportion_rise_vs_reference(x, n, ref, margin, significance)
        else:
            comparison = statistics.value_rise(sign * own.value, sign * reference, margin)
        verdict: Verdict = "Fail" if comparison.regression else "Pass"
        gate.add(
            verdict,
            f"{gate.fmt(own.value)} vs previous stable {gate.fmt(reference)} at promotion: "
            f"{_describe(comparison, word, gate.unit)}",
        )
        return reference

    stable_rev = status.stableRevision
    assert stable_rev is not None
    try:
        stable_queries = queries_for(stable_rev)
    except templates.TemplateError as exc:  # cannot happen when the revision's queries rendered
        gate.add("Inconclusive", f"invalid query: {exc}")
        return None
    stable, reason = _observe(gate, provider, stable_queries, f"stable {stable_rev}")
    if stable is None:
        gate.add("Inconclusive", f"cannot compare with stable: {reason}")
        return None
    if stable.samples is not None and stable.samples < metric.minSamples:
        gate.add(
            "Inconclusive",
            f"cannot compare with stable {stable_rev}: {stable.samples} samples < minSamples {metric.minSamples}",
        )
        return stable.value
    if ratio:
        xc, nc = _event_counts(template, own, direction)
        xs, ns = _event_counts(template, stable, direction)
        comparison = statistics.proportion_rise(xc, nc, xs, ns, margin, significance)
        counts = f" ({xc}/{nc} vs {xs}/{ns})"
    else:
        comparison = statistics.value_rise(sign * own.value, sign * stable.value, margin)
        counts = ""
    verdict = "Fail" if comparison.regression else "Pass"
    gate.add(
        verdict,
        f"{gate.fmt(own.value)} vs stable {gate.fmt(stable.value)}{counts}: {_describe(comparison, word, gate.unit)}",
    )
    return stable.value


def _describe(comparison: statistics.Comparison, word: str, unit: str) -> str:
    """Comparison text in the gate's own direction and unit (``drop +0.21 > 0.02: ...``)."""
    text = comparison.describe()
    if word == "drop":
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
            evaluate_metric(
                m,
                provider,
                namespace=namespace,
                name=name,
                revision=revision,
                status=status,
                window=window,
                significance=analysis.significance,
            )
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
