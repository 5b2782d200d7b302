"""Gate checks for one revision at one moment: the entry point the kopf handlers call.

The work lives in :mod:`modelrollout.metrics` (Prometheus provider, built-in PromQL, statistics);
this module keeps the import path ``from modelrollout.analysis import run_analysis`` stable.
``run_analysis(spec, status, revision, namespace, name, now) -> AnalysisResult`` blocks on
Prometheus (each query bounded by ``analysis.prometheus.timeoutSeconds``), so it is called from a
worker thread, off kopf's event loop.
"""

from __future__ import annotations

from modelrollout.metrics.gates import run_analysis

__all__ = ["run_analysis"]
