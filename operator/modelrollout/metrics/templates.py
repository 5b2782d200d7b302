"""PromQL for the built-in gates, and ``{{placeholder}}`` substitution for custom ones.

The built-in queries read the model server's metrics (``docs/metrics.md``) and are scoped by the
``namespace`` and ``revision`` labels, so the canary and the stable revision are measured separately
even while both serve the same model name.

Ratio gates (error-rate, client-error-rate, slow-requests, accuracy, missing-data, and the shadow
comparison's agreement and score-difference) are *counted*: two queries
per revision, samples and events, each ``sum(increase(...[<range>]))`` over the evidence period, the
range being the time since the canary first took traffic (``status.evidenceSince``). ``increase()``
handles counter resets (restarted pods) and series that come and go (scaled pods), so one query
returns everything a revision did in the period. Counts are estimates (Prometheus extrapolates to
the range edges) and are rounded to whole numbers.

Plain gates (latency-p99, custom) return one value. latency-p99 is computed over the same evidence
period; custom queries get ``{{interval}}``, the *window*: the analysis ``interval``, but never
shorter than :data:`MIN_WINDOW_SECONDS` (10 s by default, or the operator's
``MODELROLLOUT_MIN_QUERY_WINDOW``), because ``rate()`` needs two scrapes inside its range and a
shorter window is empty by construction. The evidence range has the same floor.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from modelrollout.api.types import RATIO_TEMPLATES as RATIO
from modelrollout.durations import format_duration, parse_duration

PLACEHOLDERS: tuple[str, ...] = ("namespace", "name", "revision", "stableRevision", "interval")
"""The placeholders a custom query may use."""

MIN_WINDOW_ENV = "MODELROLLOUT_MIN_QUERY_WINDOW"
MIN_WINDOW_SECONDS = 10.0
"""Default floor of the query window (see the module docstring)."""

RATIO_TEMPLATES = frozenset(RATIO)
"""Gates whose value is a proportion of countable events, decided by sequential tests on counts."""

UNITS = {"latency-p99": " ms"}

_SCOPE = 'namespace="{{namespace}}", revision="{{revision}}"'
_RANGE = "[{{range}}]{{offset}}"

INFER_REQUESTS = f'sum(increase(modelserver_requests_total{{{_SCOPE}, endpoint="infer"}}{_RANGE}))'
"""Infer requests of every status class: the samples of error-rate and client-error-rate."""

SERVER_ERRORS = f'sum(increase(modelserver_requests_total{{{_SCOPE}, endpoint="infer", code="5xx"}}{_RANGE}))'
"""Infer requests answered 5xx (a model emitting NaN answers 500 and counts here)."""

CLIENT_ERRORS = f'sum(increase(modelserver_requests_total{{{_SCOPE}, endpoint="infer", code="4xx"}}{_RANGE}))'
"""Infer requests answered 4xx: a canary that breaks the input contract shows here, not in 5xx."""

TIMED_REQUESTS = f"sum(increase(modelserver_request_duration_seconds_count{{{_SCOPE}}}{_RANGE}))"
"""Requests that reached the model (the latency histogram's own count)."""

WITHIN_SLO = f'sum(increase(modelserver_request_duration_seconds_bucket{{{_SCOPE}, le="{{{{le}}}}"}}{_RANGE}))'
"""Requests no slower than the SLO: the histogram bucket whose upper edge is exactly the SLO."""

LABELS = f"sum(increase(modelserver_feedback_total{{{_SCOPE}}}{_RANGE}))"
"""Ground-truth labels counted for this revision's predictions."""

CORRECT_LABELS = f'sum(increase(modelserver_feedback_total{{{_SCOPE}, correct="true"}}{_RANGE}))'
"""Labels that matched the prediction."""

ANSWERED_ROWS = f"sum(increase(modelserver_predictions_total{{{_SCOPE}}}{_RANGE}))"
"""Rows the model answered (every predicted class): the samples of missing-data."""

IMPUTED_ROWS = f"sum(increase(modelserver_imputed_rows_total{{{_SCOPE}}}{_RANGE}))"
"""Answered rows with at least one feature value filled in by imputation."""

SHADOW_ROWS = f"sum(increase(modelserver_shadow_rows_total{{{_SCOPE}}}{_RANGE}))"
"""Rows a shadow candidate's pods scored with the stable model too: the samples of agreement and
score-difference."""

AGREED_ROWS = f"sum(increase(modelserver_shadow_agreed_rows_total{{{_SCOPE}}}{_RANGE}))"
"""Compared rows where the candidate predicted the stable model's class."""

CLOSE_SCORES = f'sum(increase(modelserver_shadow_score_difference_bucket{{{_SCOPE}, le="{{{{le}}}}"}}{_RANGE}))'
"""Compared rows whose score differs from the stable model's by at most the edge (the complement
of score-difference's events)."""

LATENCY_P99 = (
    "1000 * histogram_quantile(0.99, sum by (le) (rate(modelserver_request_duration_seconds_bucket"
    f"{{{_SCOPE}}}{_RANGE})))"
)
"""p99 of infer latency in milliseconds over the evidence period; interpolated inside the histogram
bucket that holds it, so only as exact as the bucket edges (display, not a statistical decision)."""


@dataclass(frozen=True)
class CountQueries:
    """How a ratio gate counts: ``events / samples`` is its value.

    ``complement`` says the events query counts the *other* outcome (requests within the SLO for
    slow-requests), so events = samples - that count.
    """

    samples: str
    events: str
    complement: bool = False


COUNTS: dict[str, CountQueries] = {
    "error-rate": CountQueries(INFER_REQUESTS, SERVER_ERRORS),
    "client-error-rate": CountQueries(INFER_REQUESTS, CLIENT_ERRORS),
    "slow-requests": CountQueries(TIMED_REQUESTS, WITHIN_SLO, complement=True),
    "accuracy": CountQueries(LABELS, CORRECT_LABELS),
    "missing-data": CountQueries(ANSWERED_ROWS, IMPUTED_ROWS),
    "agreement": CountQueries(SHADOW_ROWS, AGREED_ROWS),
    "score-difference": CountQueries(SHADOW_ROWS, CLOSE_SCORES, complement=True),
}

BUILTIN: dict[str, tuple[str, str]] = {"latency-p99": (LATENCY_P99, TIMED_REQUESTS)}
"""Plain built-in gates: (value, samples) queries."""

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


def le_label(milliseconds: float) -> str:
    """The ``le`` label value the model server exports for a bucket edge of ``milliseconds``.

    prometheus_client formats edges with Go's float formatting (0.25 -> "0.25", 1.0 -> "1.0"); the
    operator passes the same number to the server (``workloads.latency_buckets``), so they agree.
    """
    return floatToGoString(milliseconds / 1000.0)


def edge_label(value: float) -> str:
    """The ``le`` label value of a histogram edge exported as ``value`` (score-difference's edges)."""
    return floatToGoString(value)


def range_seconds(seconds: float, min_seconds: float | None = None) -> str:
    """A PromQL range for ``seconds`` of evidence: whole seconds, never under the window floor."""
    floor = min_window_seconds() if min_seconds is None else min_seconds
    return f"{math.ceil(max(seconds, floor))}s"


def count_queries(template: str, table: Mapping[str, str]) -> CountQueries:
    """The rendered samples and events queries of a ratio gate; ``table`` has ``range``/``offset``/``le``."""
    try:
        counts = COUNTS[template]
    except KeyError:
        raise TemplateError(f"{template!r} is not a ratio template; use one of {sorted(COUNTS)}") from None
    return CountQueries(render(counts.samples, table), render(counts.events, table), counts.complement)


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
