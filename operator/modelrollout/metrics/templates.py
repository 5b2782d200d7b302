"""PromQL for the built-in gates, and ``{{placeholder}}`` substitution for custom ones.

The built-in queries read the model server's metrics (``docs/metrics.md``) and are scoped by the
``namespace`` and ``revision`` labels, so the canary and the stable revision are measured separately
even while both serve the same model name. Each built-in gate has two queries: the value, and the
number of samples behind it (requests, or feedback labels for accuracy) that ``minSamples`` guards.

The query window. ``rate()``/``increase()`` need at least two scrapes inside the range, and are only
stable with about four, so the window must be at least ~2 (better 4) scrape intervals. The window is
the analysis ``interval`` (each check then sees fresh data), but never shorter than
:data:`MIN_WINDOW_SECONDS` — by default 10 s, overridable with the operator's environment variable
``MODELROLLOUT_MIN_QUERY_WINDOW`` (a duration such as ``1m``) for clusters that scrape slowly —
because a shorter window is empty by construction and would make every check inconclusive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from modelrollout.durations import format_duration, parse_duration

PLACEHOLDERS: tuple[str, ...] = ("namespace", "name", "revision", "stableRevision", "interval")
"""The placeholders a custom query may use."""

MIN_WINDOW_ENV = "MODELROLLOUT_MIN_QUERY_WINDOW"
MIN_WINDOW_SECONDS = 10.0
"""Default floor of the query window (see the module docstring)."""

RATIO_TEMPLATES = frozenset({"error-rate", "accuracy"})
"""Gates whose value is a proportion of countable events: canary-vs-stable uses a two-proportion test."""

UNITS = {"latency-p99": " ms"}

ERROR_RATE = (
    'sum(rate(modelserver_requests_total{namespace="{{namespace}}", revision="{{revision}}", endpoint="infer", '
    'code="5xx"}[{{interval}}])) / sum(rate(modelserver_requests_total{namespace="{{namespace}}", '
    'revision="{{revision}}", endpoint="infer"}[{{interval}}]))'
)
"""Fraction of infer requests answered 5xx (a model emitting NaN answers 500 and counts here)."""

ERROR_RATE_SAMPLES = (
    'sum(increase(modelserver_requests_total{namespace="{{namespace}}", revision="{{revision}}", '
    'endpoint="infer"}[{{interval}}]))'
)
"""Infer requests in the window, every status class."""

LATENCY_P99 = (
    "1000 * histogram_quantile(0.99, sum by (le) (rate(modelserver_request_duration_seconds_bucket"
    '{namespace="{{namespace}}", revision="{{revision}}"}[{{interval}}])))'
)
"""p99 of infer latency in milliseconds, interpolated inside the histogram bucket that holds it."""

LATENCY_SAMPLES = (
    'sum(increase(modelserver_request_duration_seconds_count{namespace="{{namespace}}", '
    'revision="{{revision}}"}[{{interval}}]))'
)
"""Requests behind the p99: the histogram's own count (requests that reached the model)."""

ACCURACY = (
    'sum(increase(modelserver_feedback_total{namespace="{{namespace}}", revision="{{revision}}", '
    'correct="true"}[{{interval}}])) / sum(increase(modelserver_feedback_total{namespace="{{namespace}}", '
    'revision="{{revision}}"}[{{interval}}]))'
)
"""Correct / all ground-truth labels joined to this revision's predictions in the window."""

ACCURACY_SAMPLES = (
    'sum(increase(modelserver_feedback_total{namespace="{{namespace}}", revision="{{revision}}"}[{{interval}}]))'
)
"""Feedback labels in the window."""

BUILTIN: dict[str, tuple[str, str]] = {
    "error-rate": (ERROR_RATE, ERROR_RATE_SAMPLES),
    "latency-p99": (LATENCY_P99, LATENCY_SAMPLES),
    "accuracy": (ACCURACY, ACCURACY_SAMPLES),
}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class TemplateError(ValueError):
    """A query that cannot be rendered; the message names the offending placeholder."""


@dataclass(frozen=True)
class GateQueries:
    """The PromQL of one gate for one revision: its value and, for built-ins, its sample count."""

    value: str
    samples: str | None = None


def min_window_seconds() -> float:
    """The window floor: ``MODELROLLOUT_MIN_QUERY_WINDOW`` if set and valid, else the default."""
    raw = os.environ.get(MIN_WINDOW_ENV, "").strip()
    if raw:
        try:
            return parse_duration(raw)
        except ValueError:
            pass
    return MIN_WINDOW_SECONDS


def query_window(interval: str, min_seconds: float | None = None) -> str:
    """The range selector for an analysis ``interval``: the interval, clamped to the window floor."""
    floor = min_window_seconds() if min_seconds is None else min_seconds
    return format_duration(max(parse_duration(interval), floor))


def render(query: str, variables: Mapping[str, str]) -> str:
    """Substitute ``{{name}}`` (spaces inside the braces allowed); unknown names raise :class:`TemplateError`.

    Rejecting unknown placeholders, rather than leaving them in, turns a typo such as
    ``{{revison}}`` into a message that names it instead of a PromQL parse error (or, worse, a
    query that matches nothing and reads as "no data").
    """
    unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(query)} - set(variables))
    if unknown:
        names = ", ".join("{{" + u + "}}" for u in unknown)
        known = ", ".join("{{" + p + "}}" for p in variables)
        raise TemplateError(f"unknown placeholder {names} in query; use {known}")
    rendered = _PLACEHOLDER.sub(lambda m: variables[m.group(1)], query)
    if "{{" in rendered or "}}" in rendered:
        raise TemplateError("malformed placeholder in query: write {{name}} with a name such as {{revision}}")
    return rendered


def variables(*, namespace: str, name: str, revision: str, stable_revision: str | None, window: str) -> dict[str, str]:
    """The substitution table; ``stableRevision`` falls back to ``revision`` when there is no stable yet."""
    return {
        "namespace": namespace,
        "name": name,
        "revision": revision,
        "stableRevision": stable_revision or revision,
        "interval": window,
    }


def gate_queries(template: str, custom_query: str | None, table: Mapping[str, str]) -> GateQueries:
    """The queries of one gate for the revision in ``table["revision"]``."""
    if template == "custom":
        if not custom_query:
            raise TemplateError("template custom needs a query")
        return GateQueries(render(custom_query, table))
    try:
        value, samples = BUILTIN[template]
    except KeyError:
        raise TemplateError(f"unknown template {template!r}; use one of {[*BUILTIN, 'custom']}") from None
    return GateQueries(render(value, table), render(samples, table))
