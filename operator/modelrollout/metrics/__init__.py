"""Prometheus gates: the provider, the built-in PromQL templates, the statistics, and one gate check.

* :mod:`.provider` — ``PrometheusProvider.query(promql) -> QueryResult`` (a number, no data, or an error);
* :mod:`.templates` — built-in PromQL per gate, scoped by namespace and revision, and ``{{...}}`` substitution;
* :mod:`.sequential` — always-valid sequential tests on accumulated counts (the decision rule);
* :mod:`.gates` — ``run_analysis``: every gate of a spec for one revision → ``AnalysisResult``.

``docs/gates.md`` is the user-facing description of all of it.
"""

from modelrollout.metrics.gates import aggregate, evaluate_metric, run_analysis
from modelrollout.metrics.provider import MetricsProvider, PrometheusProvider, QueryResult

__all__ = ["MetricsProvider", "PrometheusProvider", "QueryResult", "aggregate", "evaluate_metric", "run_analysis"]
