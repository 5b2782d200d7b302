"""One gate check: every metric of ``spec.analysis`` for one revision, as an ``AnalysisResult``.

Ratio gates (error-rate, client-error-rate, slow-requests, accuracy, missing-data) decide on *evidence*, the
counts accumulated since the canary first took traffic (``status.evidenceSince``), through every
step, the 100 % step and the bake:

1. **Counts.** Samples and events of the revision, and of the baseline (the stable revision; the
   previous stable while baking) over the *same* period, so both sides saw the same traffic mix
   and time of day. A baseline that served nothing in the period (a canary whose first step is
   100 %) is read over the same length of time just before it instead. A query error makes the gate
   **blind** (``QueryError``): it is the only inconclusive result that counts toward
   ``inconclusiveLimit``.
2. **One sequential test per threshold, in both directions** (:mod:`.sequential`): ``max``/``min``
   against the bound (exact binomial mixture SPRT), ``maxRiseVsStable``/``maxDropVsStable`` against
   the baseline (mixture SPRT on the difference; exact for small counts). Each runs at
   ``alpha = significance / number of tests`` so that ``significance`` bounds the probability of
   any wrong rollback over the whole rollout, whatever the number of checks.
3. **Verdict.** ``Failed`` as soon as any test shows a breach (no sample minimum: strong evidence
   is enough). Otherwise ``InsufficientSamples`` while the revision (or, for a comparison, the
   baseline) has fewer than ``minSamples``; ``Passed`` when every test shows its threshold met;
   else ``Undecided``. A comparison with margin 0 cannot show "no worse by more than 0": it passes
   once the samples are there and no rise is shown.

Plain gates (latency-p99 over the evidence period, custom PromQL over the window) compare values
as before: Fail when a threshold is crossed, ``NoData`` (blind) when the query returns nothing; the
comparison with the baseline is skipped while the baseline has no data (it idles at the 100 % step
and in the bake), and the message says so.

A check's verdict is Fail if any gate failed, Pass if all passed, else Inconclusive; the engine
reads each gate's ``reason`` to tell waiting (hold) from blindness (fail-safe).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelrollout.api.types import (
    AnalysisResult,
    ExperimentResult,
    GateReason,
    MetricResult,
    MetricSpec,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelrollout.durations import parse_duration
from modelrollout.metrics import experiment, sequential, templates
from modelrollout.metrics.provider import MetricsProvider, QueryResult
from modelrollout.strategy import plan_for

log = logging.getLogger(__name__)

Verdict = Literal["Pass", "Fail", "Inconclusive"]
_SEVERITY: dict[str, int] = {"Pass": 0, "Inconclusive": 1, "Fail": 2}
_VERDICT: dict[GateReason, Verdict] = {GateReason.PASSED: "Pass", GateReason.FAILED: "Fail"}


def aggregate(verdicts: Iterable[str]) -> Verdict:
    """Any Fail → Fail; else any Inconclusive → Inconclusive; else (including none) Pass."""
    worst = max(verdicts, key=_SEVERITY.__getitem__, default="Pass")
    return worst  # type: ignore[return-value]


def sequential_tests(metrics: Iterable[MetricSpec]) -> int:
    """The number of sequential tests the ratio gates run: one per threshold (the alpha split)."""
    return sum(
        sum(x is not None for x in (m.min, m.max, m.maxRiseVsStable, m.maxDropVsStable)) for m in metrics if m.is_ratio
    )


def alpha_per_test(spec: ModelDeploymentSpec) -> float:
    """``significance`` split evenly (Bonferroni) over every sequential test of the spec, and over
    the two evidence periods when there is a bake (the canary's steps or the preview, then the bake
    or blue-green's scale-down delay afresh)."""
    periods = 2 if plan_for(spec).hold_seconds > 0 else 1
    return spec.analysis.significance / max(sequential_tests(spec.analysis.metrics), 1) / periods


def threshold_text(metric: MetricSpec, alpha: float | None = None) -> str:
    """The thresholds as a human reads them, e.g. ``<= 0.02, rise vs stable <= 0.01 (alpha=0.0083)``."""
    unit = templates.UNITS.get(metric.effective_template, "")
    parts = []
    if metric.slowerThanMs is not None:
        parts.append(f"share slower than {metric.slowerThanMs:g} ms")
    if metric.scoreDifferenceAbove is not None:
        parts.append(f"share of scores more than {metric.scoreDifferenceAbove:g} from stable's")
    if metric.maxPSI is not None:
        parts.append(f"PSI <= {metric.maxPSI:g}")
    if metric.maxPSIVsStable is not None:
        parts.append(f"PSI vs stable <= {metric.maxPSIVsStable:g}")
    if metric.min is not None:
        parts.append(f">= {metric.min:g}{unit}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}{unit}")
    if metric.maxDropVsStable is not None:
        parts.append(f"drop vs stable <= {metric.maxDropVsStable:g}{unit}")
    if metric.maxRiseVsStable is not None:
        parts.append(f"rise vs stable <= {metric.maxRiseVsStable:g}{unit}")
    text = ", ".join(parts)
    if metric.is_ratio and alpha is not None:
        text += f" (alpha={alpha:.2g} per test)"
    return text


@dataclass(frozen=True)
class Scope:
    """What one check looks at: whose counts, compared with whom, over which period."""

    namespace: str
    name: str
    revision: str
    baseline: str | None
    since: datetime
    now: datetime
    window: str
    alpha: float
    previous: AnalysisResult | None = None
    absolute_only: bool = False  # the continuous watch: no concurrent baseline to compare with
    baseline_period: tuple[datetime, datetime] | None = None  # None: the revision's own period

    @property
    def own(self) -> tuple[datetime, datetime]:
        """The revision's evidence period: from ``since`` to now."""
        return self.since, self.now

    @property
    def base(self) -> tuple[datetime, datetime]:
        """The baseline's period: the same as the revision's, or (in the bake) the canary's."""
        return self.baseline_period or self.own

    def table(self, revision: str, period: tuple[datetime, datetime], le: str = "") -> dict[str, str]:
        """Substitutions for ``revision`` counted over ``period`` (a range ending ``offset`` ago)."""
        start, end = period
        table = templates.variables(
            namespace=self.namespace,
            name=self.name,
            revision=revision,
            stable_revision=self.baseline,
            window=self.window,
        )
        offset = (self.now - end).total_seconds()
        table["range"] = templates.range_seconds((end - start).total_seconds())
        table["offset"] = f" offset {math.ceil(offset)}s" if offset >= 1 else ""
        table["le"] = le
        return table


@dataclass
class _Gate:
    """Findings collected while evaluating one metric."""

    metric: MetricSpec
    notes: list[str] = field(default_factory=list)
    queries: int = 0
    seconds: float = 0.0

    def ask(self, provider: MetricsProvider, promql: str) -> QueryResult:
        result = provider.query(promql)
        self.queries += 1
        self.seconds += result.seconds
        log.debug("query %.3fs value=%s error=%s: %s", result.seconds, result.value, result.error, promql)
        return result

    @property
    def timing(self) -> str:
        return f" [{self.queries} queries, {self.seconds * 1000:.0f} ms]" if self.queries else ""


# ------------------------------------------------------------------------------------- ratio gates


@dataclass(frozen=True)
class Counts:
    """Events of a ratio gate's value out of its samples (an accuracy's events are correct labels)."""

    events: int
    samples: int

    @property
    def value(self) -> float | None:
        return self.events / self.samples if self.samples else None


def _count(
    gate: _Gate, provider: MetricsProvider, scope: Scope, revision: str, period: tuple[datetime, datetime]
) -> Counts | str:
    """One revision's counts over ``period``, or an error text."""
    metric = gate.metric
    le = ""
    if metric.slowerThanMs is not None:
        le = templates.le_label(metric.slowerThanMs)
    elif metric.scoreDifferenceAbove is not None:
        le = templates.edge_label(metric.scoreDifferenceAbove)
    queries = templates.count_queries(metric.effective_template, scope.table(revision, period, le))
    samples = gate.ask(provider, queries.samples)
    if samples.error:
        return f"revision {revision}: {samples.error}"
    n = max(round(samples.value or 0.0), 0)
    if n == 0:
        return Counts(0, 0)
    events = gate.ask(provider, queries.events)
    if events.error:
        return f"revision {revision}: {events.error}"
    if events.value is None and queries.complement and metric.scoreDifferenceAbove is not None:
        return f"revision {revision}: no modelserver_shadow_score_difference bucket at le={le!r}"
    if events.value is None and queries.complement:
        return (
            f"revision {revision}: no histogram bucket at {metric.slowerThanMs:g} ms (le={le!r}); its pods export "
            "that edge once they run with the operator's --latency-buckets (a restart of older pods)"
        )
    x = min(max(round(events.value or 0.0), 0), n)  # no series yet means no such event yet
    return Counts(n - x if queries.complement else x, n)


@dataclass(frozen=True)
class _Test:
    """One threshold's two sequential tests: evidence of a breach, and evidence it is met."""

    label: str
    breach: sequential.Evidence
    met: sequential.Evidence | None  # None: cannot be shown (a comparison with margin 0)
    grid: int


_OPPOSITE: dict[sequential.Side, sequential.Side] = {"above": "below", "below": "above"}


def _absolute_tests(metric: MetricSpec, own: Counts) -> list[_Test]:
    tests = []
    bounds: tuple[tuple[float | None, sequential.Side, str], ...] = (
        (metric.min, "below", "min"),
        (metric.max, "above", "max"),
    )
    for limit, breach_side, word in bounds:
        if limit is None:
            continue
        met_side = _OPPOSITE[breach_side]
        label = f"{word} {limit:g}"
        tests.append(
            _Test(
                label,
                sequential.one_sample_log_e(own.events, own.samples, limit, breach_side),
                sequential.one_sample_log_e(own.events, own.samples, limit, met_side),
                len(sequential.LOGIT_SHIFTS),
            )
        )
    return tests


def _relative_test(metric: MetricSpec, own: Counts, base: Counts) -> _Test:
    breach_side: sequential.Side
    if metric.maxRiseVsStable is not None:
        margin, breach_side, label = metric.maxRiseVsStable, "above", "rise"
        boundary = margin
    else:
        assert metric.maxDropVsStable is not None
        margin, breach_side, label = metric.maxDropVsStable, "below", "drop"
        boundary = -margin
    met_side = _OPPOSITE[breach_side]
    args = (own.events, own.samples, base.events, base.samples, boundary)
    met = sequential.two_sample_log_e(*args, met_side) if margin > 0 else None
    return _Test(
        f"{label} vs stable {margin:g}",
        sequential.two_sample_log_e(*args, breach_side),
        met,
        len(sequential.DIFFERENCE_SHIFTS),
    )


def _fmt_e(log_e: float) -> str:
    if log_e == math.inf:
        return "inf"
    if log_e == -math.inf:
        return "0"
    return f"{math.exp(min(log_e, 700.0)):.3g}"


def _describe(test: _Test, alpha: float) -> str:
    bound = f"1/alpha={1 / alpha:.3g}"
    if test.breach.rejects(alpha):
        return f"{test.label}: breached (e={_fmt_e(test.breach.log_e)} >= {bound}, {test.breach.method})"
    if test.met is None:
        return f"{test.label}: not shown worse (e={_fmt_e(test.breach.log_e)} < {bound}; margin 0 passes on samples)"
    if test.met.rejects(alpha):
        return f"{test.label}: met (e={_fmt_e(test.met.log_e)} >= {bound}, {test.met.method})"
    growth = sequential.required_growth(test.met, alpha, test.grid)
    need = f"; ~{growth:.1f}x the samples to show it met" if growth is not None and growth < 1000 else ""
    return (
        f"{test.label}: undecided (e={_fmt_e(test.met.log_e)} met, {_fmt_e(test.breach.log_e)} breached, "
        f"both < {bound}{need})"
    )


def _window_value(scope: Scope, metric: MetricSpec, own: Counts) -> float | None:
    """The value since the previous check of the same evidence: a freshness view, never decisive."""
    prev = scope.previous
    if prev is None or prev.revision != scope.revision or prev.since != scope.since:
        return None
    for m in prev.metrics:
        if m.name == metric.name and m.samples is not None and m.events is not None:
            grown = own.samples - m.samples
            return (own.events - m.events) / grown if grown > 0 else None
    return None


def _ratio_gate(metric: MetricSpec, provider: MetricsProvider, scope: Scope) -> MetricResult:
    gate = _Gate(metric)
    threshold = threshold_text(metric, scope.alpha)

    def result(reason: GateReason, own: Counts | None = None, base: Counts | None = None) -> MetricResult:
        return MetricResult(
            name=metric.name,
            value=own.value if own else None,
            stableValue=base.value if base else None,
            threshold=threshold,
            samples=own.samples if own else None,
            events=own.events if own else None,
            stableSamples=base.samples if base else None,
            stableEvents=base.events if base else None,
            windowValue=_window_value(scope, metric, own) if own else None,
            verdict=_VERDICT.get(reason, "Inconclusive"),
            reason=reason,
            message="; ".join(gate.notes) + gate.timing,
        )

    own = _count(gate, provider, scope, scope.revision, scope.own)
    if isinstance(own, str):
        gate.notes.append(own)
        return result(GateReason.QUERY_ERROR)
    tests = _absolute_tests(metric, own)
    base: Counts | None = None
    if _needs_baseline(metric) and not scope.absolute_only:
        found = _baseline(gate, provider, scope)
        if isinstance(found, str):
            gate.notes.append(found)
            return result(GateReason.QUERY_ERROR, own)
        base = found
        if base is not None:
            tests.append(_relative_test(metric, own, base))

    value = "no samples" if own.value is None else f"{own.value:.4g} ({own.events}/{own.samples})"
    period = f"since {scope.since:%H:%M:%S}"
    gate.notes.append(f"{value} {period}")
    if base is not None:
        shown = "no samples" if base.value is None else f"{base.value:.4g} ({base.events}/{base.samples})"
        gate.notes.append(f"baseline {scope.baseline} {shown}")
    gate.notes.extend(_describe(t, scope.alpha) for t in tests)

    if any(t.breach.rejects(scope.alpha) for t in tests):
        return result(GateReason.FAILED, own, base)
    minimum = max(metric.minSamples, 1)
    short = [who for who, c in (("revision", own), ("baseline", base)) if c is not None and c.samples < minimum]
    if short or (base is None and _needs_baseline(metric) and not scope.absolute_only):
        gate.notes.append(
            f"waiting for samples: minSamples {metric.minSamples} ({', '.join(short) or 'no baseline'} below)"
        )
        return result(GateReason.INSUFFICIENT_SAMPLES, own, base)
    if all(t.met is None or t.met.rejects(scope.alpha) for t in tests):
        return result(GateReason.PASSED, own, base)
    return result(GateReason.UNDECIDED, own, base)


def _needs_baseline(metric: MetricSpec) -> bool:
    return metric.maxRiseVsStable is not None or metric.maxDropVsStable is not None


def _baseline(gate: _Gate, provider: MetricsProvider, scope: Scope) -> Counts | str | None:
    """The baseline's counts over the evidence period; the same length before it if it served nothing."""
    if scope.baseline is None:
        gate.notes.append("no baseline revision to compare with (first revision)")
        return None
    start, end = scope.base
    base = _count(gate, provider, scope, scope.baseline, (start, end))
    if isinstance(base, str) or base.samples > 0:
        return base
    earlier = _count(gate, provider, scope, scope.baseline, (start - (end - start), start))
    if isinstance(earlier, Counts) and earlier.samples > 0:
        gate.notes.append(f"baseline served nothing since {start:%H:%M:%S}: compared with the period before it")
    return earlier


# ------------------------------------------------------------------------------------- plain gates


def _plain_value(
    gate: _Gate, provider: MetricsProvider, scope: Scope, revision: str, period: tuple[datetime, datetime]
) -> tuple[float | None, int | None, str | None]:
    """(value, samples, error) of a plain gate for one revision (latency-p99 over ``period``)."""
    metric = gate.metric
    table = scope.table(revision, period)
    try:
        queries = templates.gate_queries(metric.effective_template, metric.query, table)
    except templates.TemplateError as exc:
        return None, None, f"invalid query: {exc}"
    value = gate.ask(provider, queries.value)
    if value.error:
        return None, None, f"revision {revision}: {value.error}"
    samples: int | None = None
    if queries.samples is not None:
        counted = gate.ask(provider, queries.samples)
        if counted.error:
            return None, None, f"revision {revision}: {counted.error}"
        samples = round(counted.value or 0.0)
    return value.value, samples, None


def _plain_gate(metric: MetricSpec, provider: MetricsProvider, scope: Scope) -> MetricResult:
    gate = _Gate(metric)
    unit = templates.UNITS.get(metric.effective_template, "")
    reasons: list[GateReason] = []

    def result(reason: GateReason, value: float | None, stable: float | None, samples: int | None) -> MetricResult:
        return MetricResult(
            name=metric.name,
            value=value,
            stableValue=stable,
            threshold=threshold_text(metric),
            samples=samples,
            verdict=_VERDICT.get(reason, "Inconclusive"),
            reason=reason,
            message="; ".join(gate.notes) + gate.timing,
        )

    value, samples, error = _plain_value(gate, provider, scope, scope.revision, scope.own)
    if error:
        gate.notes.append(error)
        return result(GateReason.QUERY_ERROR, None, None, None)
    if value is None:
        gate.notes.append(f"revision {scope.revision}: no data" + ("" if samples is None else f" ({samples} samples)"))
        return result(GateReason.NO_DATA, None, None, samples)
    if samples is not None and samples < max(metric.minSamples, 1):
        gate.notes.append(f"{samples} samples < minSamples {metric.minSamples}")
        return result(GateReason.INSUFFICIENT_SAMPLES, value, None, samples)
    for limit, breached, text in (
        (metric.min, metric.min is not None and value < metric.min, "min"),
        (metric.max, metric.max is not None and value > metric.max, "max"),
    ):
        if limit is not None:
            reasons.append(GateReason.FAILED if breached else GateReason.PASSED)
            gate.notes.append(f"{value:.4g}{unit} {'breaches' if breached else 'meets'} {text} {limit:g}{unit}")
    stable = None
    if _needs_baseline(metric) and scope.baseline is not None and not scope.absolute_only:
        stable, _, error = _plain_value(gate, provider, scope, scope.baseline, scope.base)
        if error or stable is None:
            gate.notes.append(f"not compared with stable: {error or 'the baseline has no data (it is not serving)'}")
        else:
            rise = value - stable if metric.maxRiseVsStable is not None else stable - value
            margin = metric.maxRiseVsStable if metric.maxRiseVsStable is not None else metric.maxDropVsStable
            assert margin is not None
            word = "rise" if metric.maxRiseVsStable is not None else "drop"
            reasons.append(GateReason.FAILED if rise > margin else GateReason.PASSED)
            op = ">" if rise > margin else "<="
            gate.notes.append(f"{word} vs stable {stable:.4g}{unit}: {rise:+.4g}{unit} {op} {margin:g}{unit}")
    reason = GateReason.FAILED if GateReason.FAILED in reasons else GateReason.PASSED
    return result(reason, value, stable, samples)


# ------------------------------------------------------------------------------------------ check


def evaluate_metric(metric: MetricSpec, provider: MetricsProvider, scope: Scope) -> MetricResult:
    """One gate for ``scope.revision`` (the module docstring has the rules)."""
    if metric.is_ratio:
        return _ratio_gate(metric, provider, scope)
    if metric.is_drift:
        return _drift_gate(metric, provider, scope)
    return _plain_gate(metric, provider, scope)


def _drift_gate(metric: MetricSpec, provider: MetricsProvider, scope: Scope) -> MetricResult:
    """Binned inputs and scores against the reference, and against the baseline (:mod:`.drift_gate`).

    Imported here, not with this module: the drift statistics need numpy and scipy.stats, which
    cost the operator about 90 MB of RSS (measured: an import of the handlers took 154 MB with
    them), and only an object with a drift gate needs them."""
    from modelrollout.metrics import drift_gate

    def period(revision: str, span: tuple[datetime, datetime]) -> dict[str, str]:
        table = scope.table(revision, span)
        return {"range": table["range"], "offset": table["offset"]}

    compare = scope.baseline is not None and not scope.absolute_only
    return drift_gate.evaluate(
        metric,
        provider,
        namespace=scope.namespace,
        revision=scope.revision,
        baseline=scope.baseline if compare else None,
        period=period(scope.revision, scope.own),
        base_period=period(scope.baseline, scope.base) if compare and scope.baseline else None,
        alpha=scope.alpha,
        threshold=threshold_text(metric),
    )


def scope_for(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    revision: str,
    namespace: str,
    name: str,
    now: datetime,
) -> Scope:
    """The baseline and periods for checking ``revision``:

    * a canary: since it first took traffic, against the stable over the same period;
    * the new stable in its bake: since the promotion (a fresh test, so a model that degrades at
      full traffic is seen at once), against the previous stable's counts from the canary period;
    * the continuous watch: the stable alone, over its current evidence window.
    """
    window = templates.query_window(spec.analysis.interval)
    recent = now - timedelta(seconds=parse_duration(window))
    is_stable = revision == status.stableRevision
    baseline = status.previousStableRevision if is_stable else status.stableRevision
    since = status.evidenceSince or status.stepStartedAt or recent
    baseline_period = None
    if is_stable and status.phase == "Baking" and status.bakeStartedAt is not None:
        baseline_period = (since, status.bakeStartedAt)
        since = status.bakeStartedAt
    watch = is_stable and status.phase in ("Succeeded", "RolledBack")
    if watch:
        baseline, since = None, status.watchSince or recent
    return Scope(
        namespace=namespace,
        name=name,
        revision=revision,
        baseline=baseline,
        since=since,
        now=now,
        window=window,
        alpha=alpha_per_test(spec),
        previous=status.lastAnalysis,
        absolute_only=watch,
        baseline_period=baseline_period,
    )


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
    the event loop. ``provider`` answers the queries: the operator's :class:`PrometheusProvider`
    (the caller opens and closes it, credentials resolved), a fake in tests and in
    ``make bench-decisions``; without one every gate is blind (no Prometheus configured).
    """
    analysis = spec.analysis
    scope = scope_for(spec, status, revision, namespace, name, now)

    def checked(verdict: Verdict, results: list[MetricResult]) -> AnalysisResult:
        return AnalysisResult(
            time=now,
            revision=revision,
            baselineRevision=scope.baseline,
            since=scope.since,
            verdict=verdict,
            metrics=results,
            experiment=_experiment(spec, status, scope, provider),
        )

    if not analysis.metrics:
        return checked("Pass", [])
    if provider is None:
        results = [
            MetricResult(
                name=m.name,
                threshold=threshold_text(m, scope.alpha),
                verdict="Inconclusive",
                reason=GateReason.QUERY_ERROR,
                message="no Prometheus configured (spec.analysis.prometheus.address)",
            )
            for m in analysis.metrics
        ]
        return checked("Inconclusive", results)
    started = time.monotonic()
    skip = _not_applicable(spec, status, revision, scope)
    results = [
        _not_judged(m, *skip[m.name], scope) if m.name in skip else _guarded(m, provider, scope)
        for m in analysis.metrics
    ]
    verdict = aggregate(r.verdict for r in results)
    log.info(
        "analysis %s/%s revision %s: %s in %.2fs (%s)",
        namespace,
        name,
        revision,
        verdict,
        time.monotonic() - started,
        ", ".join(f"{r.name}={r.reason}" for r in results),
    )
    return checked(verdict, results)


def _experiment(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, scope: Scope, provider: MetricsProvider | None
) -> ExperimentResult | None:
    """An A/B test's evidence when ``scope`` checks its candidate: both revisions over the same period."""
    stable = status.stableRevision
    if spec.strategy.abTest is None or provider is None or scope.revision != status.canaryRevision or not stable:
        return None
    tables = {rev: scope.table(rev, scope.own) for rev in (scope.revision, stable)}
    try:
        return experiment.evaluate(spec, scope.revision, stable, tables, provider)
    except templates.TemplateError as exc:
        log.warning("A/B test of %s/%s: %s", scope.namespace, scope.name, exc)
        return None


def _not_applicable(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, revision: str, scope: Scope
) -> dict[str, tuple[GateReason, str]]:
    """Gates not evaluated for ``revision`` now (name -> (reason, why)):

    * feedback gates (accuracy) during the shadow step are NotApplicable: a label names the
      prediction its client saw, and no client sees a shadow candidate's, so it gets none until its
      first canary step;
    * shadow gates (agreement, score-difference) are NotApplicable in the continuous watch (the
      model compared with is long gone) and for a revision outside a rollout that was not started
      with a comparison (a first revision);
    * but a candidate under a shadow strategy whose pods have no comparison model (the stable model
      was unreadable for them, or the shadow came after the candidate) is blind on them, NoData: a
      gate the user asked for must not pass unseen (inconclusiveLimit ends it).
    """
    plan = plan_for(spec)
    candidate = revision == status.canaryRevision and plan.shadow_percent > 0
    shadowing = candidate and plan.is_shadow_step(status.currentStep)
    entry = next((h for h in status.history if h.revision == revision), None)
    compared = entry is not None and entry.comparedWith is not None
    skip = {}
    for m in spec.analysis.metrics:
        if m.needs_feedback and shadowing:
            skip[m.name] = (GateReason.NOT_APPLICABLE, "labels name the predictions clients saw, and no client sees "
                            "a shadow candidate's: judged from the first canary step")  # fmt: skip
        elif m.is_shadow and scope.absolute_only:
            skip[m.name] = (GateReason.NOT_APPLICABLE, "the continuous watch does not compare with an older model")
        elif m.is_shadow and not compared and candidate:
            skip[m.name] = (GateReason.NO_DATA, f"the pods of {revision} have no comparison model (see the "
                            "ShadowComparisonUnavailable Event): the comparison cannot be judged")  # fmt: skip
        elif m.is_shadow and not compared:
            skip[m.name] = (GateReason.NOT_APPLICABLE, f"revision {revision} was not started with a comparison model")
    return skip


def _not_judged(metric: MetricSpec, reason: GateReason, why: str, scope: Scope) -> MetricResult:
    blind = reason.blind
    return MetricResult(
        name=metric.name,
        threshold=threshold_text(metric, scope.alpha),
        verdict="Inconclusive" if blind else "Pass",
        reason=reason,
        message=why if blind else f"not judged: {why}",
    )


def _guarded(metric: MetricSpec, provider: MetricsProvider, scope: Scope) -> MetricResult:
    """:func:`evaluate_metric`, with any unexpected error reported as blind instead of raised.

    A bug in one gate must hold the rollout (and show in status and logs), not crash the reconcile
    and leave the ModelDeployment without any analysis at all.
    """
    try:
        return evaluate_metric(metric, provider, scope)
    except Exception as exc:
        log.exception("gate %s of %s/%s failed unexpectedly", metric.name, scope.namespace, scope.name)
        return MetricResult(
            name=metric.name,
            threshold=threshold_text(metric, scope.alpha),
            verdict="Inconclusive",
            reason=GateReason.QUERY_ERROR,
            message=f"internal error evaluating the gate: {type(exc).__name__}: {exc}",
        )
