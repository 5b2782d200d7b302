"""Gates without Prometheus: PromQL templates, substitution, the provider, and run_analysis verdicts."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta

import pytest
from modelrollout.analysis import run_analysis
from modelrollout.api.types import AnalysisResult, MetricResult, ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.metrics import templates as tpl
from modelrollout.metrics.connection import PrometheusConnection
from modelrollout.metrics.gates import aggregate, alpha_per_test, sequential_tests, threshold_text
from modelrollout.metrics.provider import PrometheusProvider, QueryResult, _api_error, parse_result

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NS, NAME = "ml", "fraud"

# ----------------------------------------------------------------------------------------- templates


def count_table(revision: str, seconds: float = 300, offset: float = 0, le: str = "") -> dict[str, str]:
    table = tpl.variables(namespace="ml", name="fraud", revision=revision, stable_revision="def456", window="30s")
    table.update(range=tpl.range_seconds(seconds), offset=f" offset {offset:.0f}s" if offset else "", le=le)
    return table


def test_ratio_gates_count_samples_and_events_since_the_evidence_start() -> None:
    table = count_table("abc123")
    error = tpl.count_queries("error-rate", table)
    assert error.samples == (
        'sum(increase(modelserver_requests_total{namespace="ml", revision="abc123", endpoint="infer"}[300s]))'
    )
    assert error.events == (
        'sum(increase(modelserver_requests_total{namespace="ml", revision="abc123", endpoint="infer", code="5xx"}'
        "[300s]))"
    )
    assert 'code="4xx"' in tpl.count_queries("client-error-rate", table).events
    slow = tpl.count_queries("slow-requests", count_table("abc123", le=tpl.le_label(250)))
    assert slow.complement
    assert slow.samples == (
        'sum(increase(modelserver_request_duration_seconds_count{namespace="ml", revision="abc123"}[300s]))'
    )
    assert 'le="0.25"' in slow.events
    accuracy = tpl.count_queries("accuracy", count_table("abc123", offset=300))
    assert accuracy.samples == (
        'sum(increase(modelserver_feedback_total{namespace="ml", revision="abc123"}[300s] offset 300s))'
    )
    assert 'correct="true"' in accuracy.events


def test_le_labels_match_the_model_servers_bucket_edges() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    edges = (1, 33, 100, 250, 1000, 2500)
    Histogram("h", "h", buckets=[ms / 1000 for ms in edges], registry=registry).observe(0.01)
    exported = {s.labels["le"] for fam in registry.collect() for s in fam.samples if "le" in s.labels}
    assert {tpl.le_label(ms) for ms in edges} <= exported


def test_builtin_templates_use_every_scoping_placeholder() -> None:
    for value, samples in tpl.BUILTIN.values():
        for query in (value, samples):
            assert '{namespace="{{namespace}}", revision="{{revision}}"' in query
    for counts in tpl.COUNTS.values():
        for query in (counts.samples, counts.events):
            assert '{namespace="{{namespace}}", revision="{{revision}}"' in query
            assert "[{{range}}]{{offset}}" in query


def test_evidence_range_is_whole_seconds_with_the_window_floor() -> None:
    assert tpl.range_seconds(3.2, min_seconds=10) == "10s"
    assert tpl.range_seconds(600.4, min_seconds=10) == "601s"


@pytest.mark.parametrize(
    ("interval", "window"),
    [("30s", "30s"), ("2m", "120s"), ("1m30s", "90s"), ("10s", "10s"), ("1s", "10s"), ("2500ms", "10s")],
)
def test_query_window_is_the_interval_clamped_to_the_floor(
    interval: str, window: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(tpl.MIN_WINDOW_ENV, raising=False)
    assert tpl.query_window(interval) == window


def test_query_window_floor_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tpl.MIN_WINDOW_ENV, "1m")
    assert tpl.query_window("30s") == "60s"
    assert tpl.query_window("5m") == "300s"
    monkeypatch.setenv(tpl.MIN_WINDOW_ENV, "nonsense")
    assert tpl.query_window("1s") == "10s"
    assert tpl.query_window("1s", min_seconds=2) == "2s"


def test_custom_substitution_of_every_placeholder() -> None:
    table = tpl.variables(namespace="ml", name="fraud", revision="r2", stable_revision="r1", window="1m")
    query = (
        'sum(rate(x{namespace="{{namespace}}", app="{{ name }}", revision="{{revision}}"}[{{interval}}]))'
        ' / sum(rate(x{revision="{{stableRevision}}"}[{{interval}}]))'
    )
    rendered = tpl.gate_queries("custom", query, table)
    assert rendered.value == (
        'sum(rate(x{namespace="ml", app="fraud", revision="r2"}[1m])) / sum(rate(x{revision="r1"}[1m]))'
    )
    assert rendered.samples is None


def test_stable_revision_placeholder_falls_back_to_the_revision() -> None:
    table = tpl.variables(namespace="ml", name="fraud", revision="r1", stable_revision=None, window="1m")
    assert tpl.render("{{stableRevision}}", table) == "r1"


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ('x{revision="{{revison}}"}', "{{revison}}"),
        ('x{a="{{pod}}", b="{{ zone }}"}', "{{pod}}, {{zone}}"),
        ('x{revision="{{1}}"}', "malformed"),
        ('x{revision="{{revision}"}', "malformed"),
    ],
)
def test_unknown_or_malformed_placeholders_are_rejected_by_name(query: str, needle: str) -> None:
    table = tpl.variables(namespace="ml", name="fraud", revision="r2", stable_revision="r1", window="1m")
    with pytest.raises(tpl.TemplateError) as err:
        tpl.render(query, table)
    assert needle in str(err.value)
    if "malformed" not in needle:
        assert "{{revision}}" in str(err.value)  # the message lists what is allowed


# ----------------------------------------------------------------------------------------- provider


def test_parse_result_single_series_scalar_and_no_data() -> None:
    assert parse_result([{"metric": {}, "value": [1, "0.25"]}]) == (0.25, None)
    assert parse_result([1.0, "3"]) == (3.0, None)
    assert parse_result([]) == (None, None)
    for raw in ("NaN", "+Inf", "-Inf"):
        assert parse_result([{"metric": {}, "value": [1, raw]}]) == (None, None)


def test_parse_result_rejects_several_series_and_range_vectors() -> None:
    series = [{"metric": {"__name__": "up", "pod": f"p{i}"}, "value": [1, "1"]} for i in range(5)]
    value, error = parse_result(series)
    assert value is None
    assert error is not None
    assert "5 series" in error
    assert 'up{pod="p0"}' in error
    assert "2 more" in error
    assert "sum(" in error
    value, error = parse_result([{"metric": {}, "values": [[1, "1"]]}])
    assert value is None
    assert error is not None
    assert "range vector" in error


def test_api_error_text_extracts_prometheus_message() -> None:
    from prometheus_api_client import PrometheusApiClientException

    body = b'{"status":"error","errorType":"bad_data","error":"1:7: parse error: unclosed left parenthesis"}'
    exc = PrometheusApiClientException(f"HTTP Status Code 400 ({body!r})")
    assert _api_error(exc) == (400, "HTTP 400: bad_data: 1:7: parse error: unclosed left parenthesis")


def test_provider_connection_refused_is_an_error_and_trips_the_breaker() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with PrometheusProvider(PrometheusConnection(f"http://127.0.0.1:{port}", 2)) as provider:
        first = provider.query("up")
        second = provider.query("up")
    assert first.value is None
    assert first.error is not None
    assert "connection refused" in first.error
    assert second.error is not None
    assert second.error.startswith("skipped:")


def test_provider_times_out_on_a_server_that_never_answers() -> None:
    # A listening socket that never accepts: connect succeeds (kernel backlog), the answer never comes.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        with PrometheusProvider(PrometheusConnection(f"http://127.0.0.1:{port}", 0.3)) as provider:
            first = provider.query("up")
            second = provider.query("up")
    assert first.error is not None
    assert "did not answer within 0.3s" in first.error
    assert 0.25 <= first.seconds < 2.0
    assert second.error is not None
    assert second.error.startswith("skipped:")
    assert second.seconds == 0.0


# ------------------------------------------------------------------------------------- run_analysis

_COUNT = re.compile(
    r"sum\(increase\((?P<metric>\w+)\{(?P<labels>[^}]*)\}\[(?P<range>\d+)s\](?: offset (?P<offset>\d+)s)?\)\)"
)
_MEASURE = {
    ("modelserver_requests_total", None): "requests",
    ("modelserver_requests_total", "5xx"): "5xx",
    ("modelserver_requests_total", "4xx"): "4xx",
    ("modelserver_request_duration_seconds_count", None): "timed",
    ("modelserver_request_duration_seconds_bucket", None): "within",
    ("modelserver_feedback_total", None): "labels",
    ("modelserver_feedback_total", "true"): "correct",
    ("modelserver_predictions_total", None): "rows",
    ("modelserver_imputed_rows_total", None): "imputed",
}


class CountsProvider:
    """Answers the count queries from ``{(revision, measure): value}``; a measure prefixed ``before:``
    answers the same query shifted back by an offset. Other PromQL comes from ``plain``."""

    def __init__(self, counts: dict[tuple[str, str], float | str], plain: dict[str, float | str] | None = None):
        self.counts, self.plain = counts, plain or {}
        self.asked: list[str] = []

    def query(self, promql: str) -> QueryResult:
        self.asked.append(promql)
        match = _COUNT.fullmatch(promql)
        if match is None:
            answer = self.plain.get(promql)
        else:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            measure = _MEASURE[(match["metric"], labels.get("code") or labels.get("correct"))]
            if measure == "within":
                measure = f"within {labels['le']}"
            key = (labels["revision"], ("before:" if match["offset"] else "") + measure)
            answer = self.counts.get(key)
        if isinstance(answer, str):
            return QueryResult(promql, error=answer)
        return QueryResult(promql, value=answer, seconds=0.001)


def make_spec(*metrics: dict, interval: str = "30s", significance: float = 0.05) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "fraud", "uri": "https://m/a.onnx"},
            "traffic": {"none": {}},
            "analysis": {
                "interval": interval,
                "significance": significance,
                "prometheus": {"address": "http://prometheus.invalid:9090"},
                "metrics": list(metrics),
            },
        }
    )


SINCE = NOW - timedelta(minutes=10)
CANARY = ModelDeploymentStatus(
    phase="Progressing", stableRevision="r1", canaryRevision="r2", currentStep=0, evidenceSince=SINCE
)


def analyse(spec: ModelDeploymentSpec, provider, status=CANARY, revision: str = "r2") -> AnalysisResult:
    return run_analysis(spec, status, revision, NS, NAME, NOW, provider=provider)


def only(result: AnalysisResult) -> MetricResult:
    assert len(result.metrics) == 1
    return result.metrics[0]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "Pass"),
        (["Pass", "Pass"], "Pass"),
        (["Pass", "Inconclusive"], "Inconclusive"),
        (["Inconclusive", "Fail", "Pass"], "Fail"),
        (["Fail"], "Fail"),
    ],
)
def test_verdict_aggregation(verdicts: list[str], expected: str) -> None:
    assert aggregate(verdicts) == expected


def test_no_gates_pass_without_asking_anyone() -> None:
    spec = make_spec()
    result = run_analysis(spec, CANARY, "r2", NS, NAME, NOW)  # would fail to resolve if it queried
    assert result.verdict == "Pass"
    assert result.metrics == []
    assert (result.time, result.revision, result.since, result.baselineRevision) == (NOW, "r2", SINCE, "r1")


def test_significance_is_split_over_every_threshold_of_the_ratio_gates() -> None:
    spec = make_spec(
        {"name": "error-rate", "max": 0.02, "maxRiseVsStable": 0.01},
        {"name": "accuracy", "min": 0.8},
        {"name": "latency-p99", "max": 250},  # plain: not a sequential test
    )
    assert sequential_tests(spec.analysis.metrics) == 3
    assert alpha_per_test(spec) == pytest.approx(0.05 / 3 / 2)  # the steps, then the bake afresh
    no_bake = spec.model_copy(update={"bake": spec.bake.model_copy(update={"duration": "0s"})})
    assert alpha_per_test(no_bake) == pytest.approx(0.05 / 3)
    assert threshold_text(spec.analysis.metrics[0], alpha_per_test(no_bake)) == (
        "<= 0.02, rise vs stable <= 0.01 (alpha=0.017 per test)"
    )


def test_counts_are_queried_over_the_whole_evidence_period() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.02})
    provider = CountsProvider({("r2", "requests"): 4000, ("r2", "5xx"): 40})
    metric = only(analyse(spec, provider))
    assert all("[600s]" in q for q in provider.asked)  # since evidenceSince, ten minutes ago
    assert (metric.events, metric.samples, metric.value) == (40, 4000, 0.01)
    assert metric.verdict == "Pass" and metric.reason == "Passed"
    assert "max 0.02: met" in metric.message


def test_a_gross_breach_fails_at_once_without_waiting_for_min_samples() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.02, "maxRiseVsStable": 0.01, "minSamples": 500})
    provider = CountsProvider({("r2", "requests"): 100, ("r2", "5xx"): 20, ("r1", "requests"): 400, ("r1", "5xx"): 4})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Fail" and metric.reason == "Failed"
    assert "max 0.02: breached" in metric.message
    assert (metric.stableEvents, metric.stableSamples) == (4, 400)


def test_healthy_but_thin_evidence_waits_for_samples_then_for_evidence() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.02, "minSamples": 200})
    few = only(analyse(spec, CountsProvider({("r2", "requests"): 120, ("r2", "5xx"): 1})))
    assert few.verdict == "Inconclusive" and few.reason == "InsufficientSamples"
    assert "waiting for samples: minSamples 200 (revision below)" in few.message
    some = only(analyse(spec, CountsProvider({("r2", "requests"): 400, ("r2", "5xx"): 4})))
    assert some.reason == "Undecided"
    assert "max 0.02: undecided" in some.message and "the samples to show it met" in some.message


def test_a_rate_just_under_max_is_not_failed_by_noise() -> None:
    """Issue 8 cause 4: one window's raw value above max used to fail; now evidence decides."""
    spec = make_spec({"name": "error-rate", "max": 0.02})
    metric = only(analyse(spec, CountsProvider({("r2", "requests"): 500, ("r2", "5xx"): 13})))  # 2.6 % raw
    assert metric.reason == "Undecided"


def test_missing_data_counts_answered_rows_that_needed_imputation() -> None:
    """A canary whose client drops a field: its rows lean on imputation; the gate counts them."""
    spec = make_spec({"name": "missing-data", "max": 0.05, "maxRiseVsStable": 0.02})
    provider = CountsProvider(
        {("r2", "rows"): 3000, ("r2", "imputed"): 450, ("r1", "rows"): 6000, ("r1", "imputed"): 120}
    )
    metric = only(analyse(spec, provider))
    assert any("modelserver_imputed_rows_total" in q for q in provider.asked)
    assert any("modelserver_predictions_total" in q for q in provider.asked)
    assert (metric.events, metric.samples, metric.value) == (450, 3000, 0.15)
    assert (metric.stableEvents, metric.stableSamples) == (120, 6000)
    assert metric.verdict == "Fail" and "max 0.05: breached" in metric.message
    healthy = CountsProvider(
        {("r2", "rows"): 3000, ("r2", "imputed"): 60, ("r1", "rows"): 6000, ("r1", "imputed"): 120}
    )
    assert only(analyse(spec, healthy)).verdict == "Pass"


def test_accuracy_drop_beyond_the_margin_fails_and_speaks_of_a_drop() -> None:
    spec = make_spec({"name": "accuracy", "min": 0.5, "maxDropVsStable": 0.02})
    provider = CountsProvider(
        {("r2", "labels"): 1000, ("r2", "correct"): 700, ("r1", "labels"): 3000, ("r1", "correct"): 2520}
    )
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Fail"
    assert (metric.value, metric.stableValue) == (0.7, 0.84)
    assert "min 0.5: met" in metric.message
    assert "drop vs stable 0.02: breached" in metric.message
    assert "mixture SPRT on the difference" in metric.message


def test_equal_accuracy_with_plenty_of_labels_is_shown_within_the_margin() -> None:
    spec = make_spec({"name": "accuracy", "maxDropVsStable": 0.02})
    provider = CountsProvider(
        {("r2", "labels"): 6000, ("r2", "correct"): 5400, ("r1", "labels"): 9000, ("r1", "correct"): 8100}
    )
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Pass" and "drop vs stable 0.02: met" in metric.message


def test_margin_zero_passes_on_samples_when_no_rise_is_shown() -> None:
    spec = make_spec({"name": "error-rate", "maxRiseVsStable": 0.0, "minSamples": 100})
    provider = CountsProvider({("r2", "requests"): 400, ("r2", "5xx"): 12, ("r1", "requests"): 400, ("r1", "5xx"): 8})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Pass"
    assert "not shown worse" in metric.message


def test_too_few_baseline_samples_waits() -> None:
    spec = make_spec({"name": "accuracy", "maxDropVsStable": 0.02, "minSamples": 100})
    provider = CountsProvider(
        {("r2", "labels"): 500, ("r2", "correct"): 450, ("r1", "labels"): 40, ("r1", "correct"): 36}
    )
    metric = only(analyse(spec, provider))
    assert metric.reason == "InsufficientSamples"
    assert "(baseline below)" in metric.message


def test_a_baseline_that_served_nothing_is_read_over_the_period_before() -> None:
    """A canary whose first step is 100 %: the stable's counts from before the canary are the baseline."""
    spec = make_spec({"name": "error-rate", "maxRiseVsStable": 0.01})
    provider = CountsProvider(
        {
            ("r2", "requests"): 5000,
            ("r2", "5xx"): 50,
            ("r1", "requests"): 0,
            ("r1", "before:requests"): 6000,
            ("r1", "before:5xx"): 60,
        }
    )
    metric = only(analyse(spec, provider))
    assert any("offset 600s" in q for q in provider.asked)
    assert (metric.stableEvents, metric.stableSamples) == (60, 6000)
    assert "compared with the period before it" in metric.message


def test_the_bake_counts_afresh_against_the_previous_stables_canary_period() -> None:
    """Since the promotion (4 minutes), against r1's counts from the canary period (6 minutes, ending
    4 minutes ago): a model that degrades at full traffic is not diluted by its canary days."""
    promoted = NOW - timedelta(minutes=4)
    baking = ModelDeploymentStatus(
        phase="Baking", stableRevision="r2", previousStableRevision="r1", evidenceSince=SINCE, bakeStartedAt=promoted
    )
    spec = make_spec({"name": "error-rate", "maxRiseVsStable": 0.01})
    provider = CountsProvider(
        {("r2", "requests"): 20000, ("r2", "5xx"): 1000, ("r1", "before:requests"): 5000, ("r1", "before:5xx"): 50}
    )
    result = analyse(spec, provider, status=baking, revision="r2")
    assert (result.baselineRevision, result.since) == ("r1", promoted)
    own = [q for q in provider.asked if 'revision="r2"' in q]
    base = [q for q in provider.asked if 'revision="r1"' in q]
    assert all("[240s]))" in q for q in own)
    assert all("[360s] offset 240s))" in q for q in base)
    assert only(result).verdict == "Fail"


def test_first_revision_without_a_baseline_checks_absolute_thresholds_and_waits_on_comparisons() -> None:
    first = ModelDeploymentStatus(phase="Baking", stableRevision="r2", evidenceSince=SINCE)
    spec = make_spec({"name": "error-rate", "max": 0.05, "maxRiseVsStable": 0.01})
    provider = CountsProvider({("r2", "requests"): 1000, ("r2", "5xx"): 300})
    metric = only(analyse(spec, provider, status=first, revision="r2"))
    assert metric.verdict == "Fail"  # the absolute bound still judges
    assert "no baseline revision" in metric.message


@pytest.mark.parametrize("error", ["Prometheus at http://p:9090 is unreachable (connection refused)"])
def test_a_query_error_makes_the_gate_blind(error: str) -> None:
    spec = make_spec({"name": "error-rate", "max": 0.02})
    metric = only(analyse(spec, CountsProvider({("r2", "requests"): error})))
    assert metric.verdict == "Inconclusive" and metric.reason == "QueryError"
    assert "unreachable" in metric.message


def test_an_unexpected_error_in_a_gate_is_blind_not_a_crash() -> None:
    class Broken:
        def query(self, promql: str) -> QueryResult:
            raise RuntimeError("boom")

    spec = make_spec({"name": "error-rate", "max": 0.01}, {"name": "accuracy", "min": 0.5})
    result = run_analysis(spec, CANARY, "r2", NS, NAME, NOW, provider=Broken())
    assert result.verdict == "Inconclusive"
    assert all(m.reason == "QueryError" for m in result.metrics)
    assert all("internal error evaluating the gate: RuntimeError: boom" in m.message for m in result.metrics)


def test_slow_requests_count_the_requests_above_the_slo_bucket() -> None:
    spec = make_spec({"name": "latency", "template": "slow-requests", "slowerThanMs": 250, "max": 0.01})
    provider = CountsProvider({("r2", "timed"): 5000, ("r2", "within 0.25"): 4700})
    metric = only(analyse(spec, provider))
    assert (metric.events, metric.samples) == (300, 5000)  # 6 % slower than 250 ms
    assert metric.verdict == "Fail"
    assert metric.threshold.startswith("share slower than 250 ms, <= 0.01")
    missing = only(analyse(spec, CountsProvider({("r2", "timed"): 5000})))
    assert missing.reason == "QueryError"
    assert "no histogram bucket at 250 ms" in missing.message


def test_the_window_value_is_a_freshness_view_from_the_previous_check() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.02})
    first = analyse(spec, CountsProvider({("r2", "requests"): 1000, ("r2", "5xx"): 10}))
    assert only(first).windowValue is None
    later = CANARY.model_copy(update={"lastAnalysis": first})
    second = only(analyse(spec, CountsProvider({("r2", "requests"): 1500, ("r2", "5xx"): 60}), status=later))
    assert second.windowValue == pytest.approx(0.1)  # 50 errors in the last 500 requests


def test_latency_p99_is_plain_and_skips_an_idle_baseline() -> None:
    spec = make_spec({"name": "latency-p99", "max": 250, "maxRiseVsStable": 50, "minSamples": 10})
    table = lambda rev: count_table(rev, seconds=600) | {"stableRevision": "r1"}  # noqa: E731
    p99 = {rev: tpl.render(tpl.LATENCY_P99, table(rev)) for rev in ("r1", "r2")}
    served = {("r2", "timed"): 900}
    busy = only(analyse(spec, CountsProvider(served, {p99["r2"]: 180.0, p99["r1"]: 100.0})))
    assert busy.verdict == "Fail" and "rise vs stable 100 ms: +80 ms > 50 ms" in busy.message
    idle = only(analyse(spec, CountsProvider(served, {p99["r2"]: 180.0})))
    assert idle.verdict == "Pass" and "not compared with stable" in idle.message
    nothing = only(analyse(spec, CountsProvider({})))
    assert nothing.reason == "NoData" and nothing.verdict == "Inconclusive"


def test_custom_gate_queries_both_revisions_over_the_window() -> None:
    query = 'sum(rate(x{namespace="{{namespace}}", revision="{{revision}}"}[{{interval}}]))'
    spec = make_spec({"name": "served-rps", "template": "custom", "query": query, "min": 1, "maxDropVsStable": 5})
    asked = {rev: f'sum(rate(x{{namespace="ml", revision="{rev}"}}[30s]))' for rev in ("r1", "r2")}
    metric = only(analyse(spec, CountsProvider({}, {asked["r2"]: 20.0, asked["r1"]: 30.0})))
    assert metric.verdict == "Fail" and metric.stableValue == 30.0
    assert "drop vs stable 30: +10 > 5" in metric.message


def test_custom_gate_with_unknown_placeholder_is_blind_and_says_why() -> None:
    spec = make_spec({"name": "c", "template": "custom", "query": "x{{revison}}", "max": 1})
    metric = only(analyse(spec, CountsProvider({})))
    assert metric.reason == "QueryError"
    assert "{{revison}}" in metric.message


def test_missing_prometheus_address_is_blind() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "fraud", "uri": "https://m/a.onnx"},
            "traffic": {"none": {}},
            "analysis": {"metrics": [{"name": "error-rate", "max": 0.01}]},
        }
    )
    result = run_analysis(spec, CANARY, "r2", NS, NAME, NOW)
    assert result.verdict == "Inconclusive"
    assert only(result).reason == "QueryError"
    assert "no Prometheus configured" in only(result).message


def test_the_continuous_watch_checks_absolute_thresholds_over_its_window() -> None:
    watched = ModelDeploymentStatus(
        phase="Succeeded", stableRevision="r2", previousStableRevision=None, watchSince=NOW - timedelta(minutes=5)
    )
    spec = make_spec({"name": "error-rate", "max": 0.02, "maxRiseVsStable": 0.01})
    provider = CountsProvider({("r2", "requests"): 6000, ("r2", "5xx"): 30})
    result = analyse(spec, provider, status=watched, revision="r2")
    assert result.baselineRevision is None and result.since == watched.watchSince
    assert all("[300s]" in q for q in provider.asked)
    metric = only(result)
    assert metric.verdict == "Pass" and "rise vs stable" not in metric.message
