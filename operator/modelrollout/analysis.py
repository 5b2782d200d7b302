"""Gate checks for one revision at one moment, turned into an ``AnalysisResult`` for the engine.

A rollout without metrics passes every check (time-based steps only). Prometheus-backed gates
(error rate, latency p99, accuracy, custom PromQL, canary-vs-stable statistics) are the next piece
of work; until they land, a configured metric is reported as *inconclusive* — never as a pass — so a
gated rollout holds its step and, after ``inconclusiveLimit`` checks, rolls back instead of
promoting blind.
"""

from __future__ import annotations

from datetime import datetime

from modelrollout.api.types import AnalysisResult, MetricResult, ModelDeploymentSpec, ModelDeploymentStatus


def _threshold_text(metric) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    if metric.maxDropVsStable is not None:
        parts.append(f"drop vs stable <= {metric.maxDropVsStable:g}")
    if metric.maxRiseVsStable is not None:
        parts.append(f"rise vs stable <= {metric.maxRiseVsStable:g}")
    return ", ".join(parts)


def run_analysis(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    revision: str,
    namespace: str,
    name: str,
    now: datetime,
) -> AnalysisResult:
    """Check every gate of ``spec.analysis`` for ``revision``."""
    del status, namespace, name
    results = [
        MetricResult(
            name=m.name,
            threshold=_threshold_text(m),
            verdict="Inconclusive",
            message="Prometheus gates are not evaluated by this operator version",
        )
        for m in spec.analysis.metrics
    ]
    verdict = "Inconclusive" if results else "Pass"
    return AnalysisResult(time=now, revision=revision, verdict=verdict, metrics=results)
