"""Gates without Prometheus: PromQL templates, substitution, the statistics, and run_analysis verdicts."""

from __future__ import annotations

import math
import socket
from datetime import UTC, datetime

import numpy as np
import pytest
from modelrollout.analysis import run_analysis
from modelrollout.api.types import AnalysisResult, MetricResult, ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.metrics import statistics as st
from modelrollout.metrics import templates as tpl
from modelrollout.metrics.gates import aggregate, threshold_text
from modelrollout.metrics.provider import PrometheusProvider, QueryResult, _api_error_text, parse_result
from scipy import optimize, stats

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NS, NAME = "ml", "fraud"

# ----------------------------------------------------------------------------------------- templates


def test_builtin_promql_is_scoped_by_namespace_and_revision() -> None:
    table = tpl.variables(namespace="ml", name="fraud", revision="abc123", stable_revision="def456", window="30s")
    error = tpl.gate_queries("error-rate", None, table)
    assert error.value == (
        'sum(rate(modelserver_requests_total{namespace="ml", revision="abc123", endpoint="infer", code="5xx"}[30s]))'
        ' / sum(rate(modelserver_requests_total{namespace="ml", revision="abc123", endpoint="infer"}[30s]))'
    )
    assert error.samples == (
        'sum(increase(modelserver_requests_total{namespace="ml", revision="abc123", endpoint="infer"}[30s]))'
    )
    latency = tpl.gate_queries("latency-p99", None, table)
    assert latency.value == (
        "1000 * histogram_quantile(0.99, sum by (le) (rate(modelserver_request_duration_seconds_bucket"
        '{namespace="ml", revision="abc123"}[30s])))'
    )
    assert latency.samples == (
        'sum(increase(modelserver_request_duration_seconds_count{namespace="ml", revision="abc123"}[30s]))'
    )
    accuracy = tpl.gate_queries("accuracy", None, table)
    assert accuracy.value == (
        'sum(increase(modelserver_feedback_total{namespace="ml", revision="abc123", correct="true"}[30s]))'
        ' / sum(increase(modelserver_feedback_total{namespace="ml", revision="abc123"}[30s]))'
    )
    assert accuracy.samples == 'sum(increase(modelserver_feedback_total{namespace="ml", revision="abc123"}[30s]))'


def test_builtin_templates_use_every_scoping_placeholder() -> None:
    for value, samples in tpl.BUILTIN.values():
        for query in (value, samples):
            assert '{namespace="{{namespace}}", revision="{{revision}}"' in query
            assert "[{{interval}}]" in query


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
    assert _api_error_text(exc) == "HTTP 400: bad_data: 1:7: parse error: unclosed left parenthesis"


def test_provider_connection_refused_is_an_error_and_trips_the_breaker() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with PrometheusProvider(f"http://127.0.0.1:{port}", timeout_seconds=2) as provider:
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
        with PrometheusProvider(f"http://127.0.0.1:{port}", timeout_seconds=0.3) as provider:
            first = provider.query("up")
            second = provider.query("up")
    assert first.error is not None
    assert "did not answer within 0.3s" in first.error
    assert 0.25 <= first.seconds < 2.0
    assert second.error is not None
    assert second.error.startswith("skipped:")
    assert second.seconds == 0.0


# ---------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("x_c", "n_c", "x_s", "n_s", "margin"),
    [
        (30, 200, 10, 200, 0.05),
        (5, 100, 2, 300, 0.01),
        (0, 100, 0, 100, 0.02),
        (50, 100, 60, 100, 0.1),
        (7, 90, 7, 90, 0),
    ],
)
def test_constrained_rates_match_numerical_maximum_likelihood(
    x_c: int, n_c: int, x_s: int, n_s: int, margin: float
) -> None:
    def nll(p_s: float) -> float:
        p_c, eps = p_s + margin, 1e-12
        return -(
            x_c * math.log(max(p_c, eps))
            + (n_c - x_c) * math.log(max(1 - p_c, eps))
            + x_s * math.log(max(p_s, eps))
            + (n_s - x_s) * math.log(max(1 - p_s, eps))
        )

    best = optimize.minimize_scalar(nll, bounds=(0, 1 - margin), method="bounded", options={"xatol": 1e-12})
    p_c, p_s = st.constrained_rates(x_c, n_c, x_s, n_s, margin)
    assert p_c - p_s == pytest.approx(margin)
    assert p_s == pytest.approx(best.x, abs=1e-6)


def test_zero_margin_score_test_is_the_pooled_two_proportion_z_test() -> None:
    x_c, n_c, x_s, n_s = 40, 500, 25, 520
    pooled = (x_c + x_s) / (n_c + n_s)
    z = (x_c / n_c - x_s / n_s) / math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_s))
    result = st.proportion_rise(x_c, n_c, x_s, n_s, margin=0.0, alpha=0.05)
    assert result.method == "Farrington-Manning"
    assert result.statistic == pytest.approx(z)
    assert result.p_value == pytest.approx(stats.norm.sf(z))
    assert result.regression  # z ~ 1.95, p ~ 0.026


def test_small_raw_difference_is_not_significant() -> None:
    # 3.0 % vs 2.0 % errors on 400 requests each: a full point apart, but well within chance.
    result = st.proportion_rise(12, 400, 8, 400, margin=0.0, alpha=0.05)
    assert result.difference == pytest.approx(0.01)
    assert not result.regression
    assert result.p_value is not None
    assert result.p_value > 0.15


def test_rare_events_use_fisher_exact() -> None:
    quiet = st.proportion_rise(3, 100, 0, 100, margin=0.0, alpha=0.05)
    assert quiet.method == "Fisher exact"
    assert quiet.p_value == pytest.approx(stats.fisher_exact([[3, 97], [0, 100]], alternative="greater").pvalue)
    assert not quiet.regression  # p ~ 0.12
    loud = st.proportion_rise(8, 300, 0, 300, margin=0.0, alpha=0.05)
    assert loud.method == "Fisher exact"
    assert loud.regression


def test_margin_tolerates_a_significant_but_small_rise() -> None:
    # 12 % vs 10 % on 2000 each is a real difference (margin 0 fails) but inside a 5-point margin.
    assert st.proportion_rise(240, 2000, 200, 2000, margin=0.0, alpha=0.05).regression
    within = st.proportion_rise(240, 2000, 200, 2000, margin=0.05, alpha=0.05)
    assert not within.regression
    assert within.statistic is not None
    assert within.statistic < 0
    # ... while a rise clearly beyond the margin fails.
    assert st.proportion_rise(400, 2000, 200, 2000, margin=0.05, alpha=0.05).regression


def test_significance_level_decides_borderline_cases() -> None:
    result = st.proportion_rise(27, 300, 15, 300, margin=0.0, alpha=0.05)
    assert result.p_value is not None
    assert 0.01 < result.p_value < 0.05
    assert result.regression
    assert not st.proportion_rise(27, 300, 15, 300, margin=0.0, alpha=0.01).regression


def test_false_alarm_rate_at_the_margin_is_about_alpha() -> None:
    """Canary exactly ``margin`` worse than stable: the test may fail it only ~alpha of the time."""
    rng = np.random.default_rng(7)
    n, p, margin, alpha, trials = 400, 0.1, 0.02, 0.05, 3000
    x_c = rng.binomial(n, p + margin, trials)
    x_s = rng.binomial(n, p, trials)
    pairs = zip(x_c.tolist(), x_s.tolist(), strict=True)
    alarms = sum(st.proportion_rise(a, n, b, n, margin, alpha).regression for a, b in pairs)
    assert alarms / trials < alpha + 0.02


def test_binomial_test_against_a_remembered_reference() -> None:
    assert st.proportion_rise_vs_reference(40, 200, reference=0.10, margin=0.02, alpha=0.05).regression
    assert not st.proportion_rise_vs_reference(26, 200, reference=0.10, margin=0.02, alpha=0.05).regression
    assert not st.proportion_rise_vs_reference(200, 200, reference=0.99, margin=0.05, alpha=0.05).regression


def test_plain_value_comparison() -> None:
    assert st.value_rise(180.0, 100.0, 50.0).regression
    assert not st.value_rise(140.0, 100.0, 50.0).regression
    assert st.value_rise(140.0, 100.0, 50.0).describe() == "rise +40 <= 50"


@pytest.mark.parametrize(("x", "n"), [(1, 0), (-1, 10), (11, 10)])
def test_invalid_counts_are_rejected(x: int, n: int) -> None:
    with pytest.raises(ValueError):
        st.proportion_rise(x, n, 1, 10, 0.0, 0.05)


# ------------------------------------------------------------------------------------- run_analysis


class FakeProvider:
    """Answers PromQL from a table keyed by (template, revision, "value"|"samples"); records queries."""

    def __init__(self, table: dict[tuple[str, str, str], float | str | None], window: str = "30s") -> None:
        self.answers: dict[str, QueryResult] = {}
        self.asked: list[str] = []
        for (template, revision, kind), answer in table.items():
            names = tpl.variables(namespace=NS, name=NAME, revision=revision, stable_revision="r1", window=window)
            queries = tpl.gate_queries(template, None, names)
            promql = queries.value if kind == "value" else queries.samples
            assert promql is not None
            if isinstance(answer, str):
                self.answers[promql] = QueryResult(promql, error=answer)
            else:
                self.answers[promql] = QueryResult(promql, value=answer, seconds=0.002)

    def query(self, promql: str) -> QueryResult:
        self.asked.append(promql)
        return self.answers.get(promql, QueryResult(promql))


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


CANARY = ModelDeploymentStatus(phase="Progressing", stableRevision="r1", canaryRevision="r2", currentStep=0)


def analyse(spec: ModelDeploymentSpec, provider: FakeProvider, status=CANARY, revision: str = "r2") -> AnalysisResult:
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
    assert result.time == NOW
    assert result.revision == "r2"


def test_error_rate_significantly_worse_than_stable_fails() -> None:
    spec = make_spec({"name": "error-rate", "maxRiseVsStable": 0.01, "minSamples": 100})
    provider = FakeProvider(
        {
            ("error-rate", "r2", "value"): 0.08,
            ("error-rate", "r2", "samples"): 500,
            ("error-rate", "r1", "value"): 0.01,
            ("error-rate", "r1", "samples"): 5000,
        }
    )
    result = analyse(spec, provider)
    metric = only(result)
    assert result.verdict == metric.verdict == "Fail"
    assert (metric.value, metric.stableValue, metric.samples) == (0.08, 0.01, 500)
    assert metric.threshold == "rise vs stable <= 0.01 (alpha=0.05)"
    assert "(40/500 vs 50/5000)" in metric.message
    assert "Farrington-Manning" in metric.message


def test_error_rate_small_rise_passes_when_not_significant() -> None:
    spec = make_spec({"name": "error-rate", "maxRiseVsStable": 0.0, "minSamples": 100})
    provider = FakeProvider(
        {
            ("error-rate", "r2", "value"): 0.03,
            ("error-rate", "r2", "samples"): 400,
            ("error-rate", "r1", "value"): 0.02,
            ("error-rate", "r1", "samples"): 400,
        }
    )
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Pass"
    assert "rise +0.01" in metric.message


def test_accuracy_drop_fails_and_speaks_of_a_drop() -> None:
    spec = make_spec({"name": "accuracy", "min": 0.5, "maxDropVsStable": 0.02, "minSamples": 200})
    provider = FakeProvider(
        {
            ("accuracy", "r2", "value"): 0.70,
            ("accuracy", "r2", "samples"): 600,
            ("accuracy", "r1", "value"): 0.84,
            ("accuracy", "r1", "samples"): 3000,
        }
    )
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Fail"
    assert metric.threshold == ">= 0.5, drop vs stable <= 0.02 (alpha=0.05)"
    assert "0.7 >= min 0.5" in metric.message
    assert "drop +0.14 > 0.02" in metric.message
    assert "(180/600 vs 480/3000)" in metric.message  # incorrect labels are the "bad" events


def test_better_canary_accuracy_passes() -> None:
    spec = make_spec({"name": "accuracy", "maxDropVsStable": 0.02, "minSamples": 200})
    provider = FakeProvider(
        {
            ("accuracy", "r2", "value"): 0.92,
            ("accuracy", "r2", "samples"): 300,
            ("accuracy", "r1", "value"): 0.83,
            ("accuracy", "r1", "samples"): 3000,
        }
    )
    assert only(analyse(spec, provider)).verdict == "Pass"


def test_too_few_canary_samples_is_inconclusive_even_with_a_terrible_value() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.01, "minSamples": 50})
    provider = FakeProvider({("error-rate", "r2", "value"): 0.5, ("error-rate", "r2", "samples"): 12})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Inconclusive"
    assert (metric.value, metric.samples) == (0.5, 12)
    assert "12 samples < minSamples 50" in metric.message


def test_too_few_stable_samples_is_inconclusive() -> None:
    spec = make_spec({"name": "accuracy", "maxDropVsStable": 0.02, "minSamples": 100})
    provider = FakeProvider(
        {
            ("accuracy", "r2", "value"): 0.6,
            ("accuracy", "r2", "samples"): 500,
            ("accuracy", "r1", "value"): 0.9,
            ("accuracy", "r1", "samples"): 40,
        }
    )
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Inconclusive"
    assert "stable r1: 40 samples < minSamples 100" in metric.message
    assert metric.stableValue is None  # an under-sampled value is never reported (or carried) as the baseline


def last_check(revision: str, **stable_values: float) -> AnalysisResult:
    metrics = [MetricResult(name=k.replace("_", "-"), stableValue=v, verdict="Pass") for k, v in stable_values.items()]
    return AnalysisResult(time=NOW, revision=revision, verdict="Pass", metrics=metrics)


def test_canary_at_full_weight_compares_with_the_stable_value_last_measured() -> None:
    """At 100 % the stable serves nothing: the baseline is what the previous check of this canary measured."""
    spec = make_spec(
        {"name": "accuracy", "maxDropVsStable": 0.02, "minSamples": 100},
        {"name": "latency-p99", "maxRiseVsStable": 50, "minSamples": 100},
    )
    status = CANARY.model_copy(update={"lastAnalysis": last_check("r2", accuracy=0.84, latency_p99=100.0)})
    table = {
        ("accuracy", "r2", "samples"): 800,
        ("latency-p99", "r2", "samples"): 800,
        ("accuracy", "r1", "samples"): 0,  # no traffic on stable any more
        ("latency-p99", "r1", "samples"): 0,
    }
    good_values = {("accuracy", "r2", "value"): 0.84, ("latency-p99", "r2", "value"): 120}
    good = analyse(spec, FakeProvider({**table, **good_values}), status=status)
    assert good.verdict == "Pass"
    assert [m.stableValue for m in good.metrics] == [0.84, 100.0]  # carried forward to the next check
    assert "as last measured (now stable r1: no data in the window (0 samples))" in good.metrics[0].message
    bad = analyse(
        spec,
        FakeProvider({**table, ("accuracy", "r2", "value"): 0.78, ("latency-p99", "r2", "value"): 180}),
        status=status,
    )
    assert [m.verdict for m in bad.metrics] == ["Fail", "Fail"]
    assert "binomial exact" in bad.metrics[0].message
    # the record of another revision (e.g. a superseded canary) is not a baseline
    other = CANARY.model_copy(update={"lastAnalysis": last_check("r0", accuracy=0.84, latency_p99=100.0)})
    assert analyse(spec, FakeProvider(table | {("accuracy", "r2", "value"): 0.78}), status=other).verdict == (
        "Inconclusive"
    )


def test_zero_samples_never_judge_even_with_min_samples_zero() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.01, "maxRiseVsStable": 0.0, "minSamples": 0})
    provider = FakeProvider({("error-rate", "r2", "value"): 0.5, ("error-rate", "r2", "samples"): 0.3})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Inconclusive"
    assert "0 samples" in metric.message


def test_an_unexpected_error_in_a_gate_is_inconclusive_not_a_crash() -> None:
    class Broken:
        def query(self, promql: str) -> QueryResult:
            raise RuntimeError("boom")

    spec = make_spec({"name": "error-rate", "max": 0.01}, {"name": "accuracy", "min": 0.5})
    result = run_analysis(spec, CANARY, "r2", NS, NAME, NOW, provider=Broken())
    assert result.verdict == "Inconclusive"
    assert all("internal error evaluating the gate: RuntimeError: boom" in m.message for m in result.metrics)


def test_absolute_breach_fails_even_when_stable_cannot_be_compared() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.05, "maxRiseVsStable": 0.01, "minSamples": 10})
    provider = FakeProvider({("error-rate", "r2", "value"): 0.2, ("error-rate", "r2", "samples"): 100})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Fail"
    assert "0.2 > max 0.05" in metric.message
    assert "cannot compare with stable" in metric.message


@pytest.mark.parametrize("answer", [None, "Prometheus at http://p:9090 is unreachable (connection refused)"])
def test_no_data_or_query_error_is_inconclusive(answer: str | None) -> None:
    spec = make_spec({"name": "latency-p99", "max": 250})
    provider = FakeProvider({("latency-p99", "r2", "value"): answer, ("latency-p99", "r2", "samples"): 0})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Inconclusive"
    assert metric.value is None
    assert ("connection refused" if answer else "no data in the window") in metric.message


def test_latency_compares_plain_milliseconds() -> None:
    spec = make_spec({"name": "latency-p99", "max": 500, "maxRiseVsStable": 50, "minSamples": 50})
    table = {("latency-p99", "r1", "value"): 100.0, ("latency-p99", "r1", "samples"): 1000}
    slow = FakeProvider({**table, ("latency-p99", "r2", "value"): 180.0, ("latency-p99", "r2", "samples"): 100})
    metric = only(analyse(spec, slow))
    assert metric.verdict == "Fail"
    assert metric.threshold == "<= 500 ms, rise vs stable <= 50 ms"
    assert "180 ms vs stable 100 ms: rise +80 > 50 ms" in metric.message
    fine = FakeProvider({**table, ("latency-p99", "r2", "value"): 140.0, ("latency-p99", "r2", "samples"): 100})
    assert only(analyse(spec, fine)).verdict == "Pass"


def test_custom_gate_queries_both_revisions_and_has_no_sample_guard() -> None:
    query = 'sum(rate(x{namespace="{{namespace}}", revision="{{revision}}"}[{{interval}}]))'
    spec = make_spec({"name": "qps", "template": "custom", "query": query, "min": 1, "maxDropVsStable": 5})

    class Custom(FakeProvider):
        def query(self, promql: str) -> QueryResult:
            self.asked.append(promql)
            return QueryResult(promql, value=20.0 if 'revision="r2"' in promql else 30.0)

    provider = Custom({})
    metric = only(analyse(spec, provider))
    assert provider.asked == [
        'sum(rate(x{namespace="ml", revision="r2"}[30s]))',
        'sum(rate(x{namespace="ml", revision="r1"}[30s]))',
    ]
    assert metric.verdict == "Fail"  # 20 vs 30: a drop of 10 > 5
    assert (metric.value, metric.stableValue, metric.samples) == (20.0, 30.0, None)


def test_custom_gate_with_unknown_placeholder_is_inconclusive_and_says_why() -> None:
    spec = make_spec({"name": "qps", "template": "custom", "query": 'x{rev="{{revison}}"}', "max": 1})
    provider = FakeProvider({})
    metric = only(analyse(spec, provider))
    assert metric.verdict == "Inconclusive"
    assert "unknown placeholder {{revison}}" in metric.message
    assert provider.asked == []


def test_overall_verdict_combines_gates() -> None:
    spec = make_spec(
        {"name": "error-rate", "max": 0.05, "minSamples": 10},
        {"name": "latency-p99", "max": 250, "minSamples": 10},
        {"name": "accuracy", "min": 0.8, "minSamples": 10},
    )
    base = {
        ("error-rate", "r2", "value"): 0.0,
        ("error-rate", "r2", "samples"): 100,
        ("latency-p99", "r2", "value"): 20.0,
        ("latency-p99", "r2", "samples"): 100,
    }
    quiet = analyse(spec, FakeProvider(base))  # no feedback yet
    assert [m.verdict for m in quiet.metrics] == ["Pass", "Pass", "Inconclusive"]
    assert quiet.verdict == "Inconclusive"
    failing = analyse(spec, FakeProvider({**base, ("latency-p99", "r2", "value"): 900.0}))
    assert failing.verdict == "Fail"
    labelled = {**base, ("accuracy", "r2", "value"): 0.9, ("accuracy", "r2", "samples"): 100}
    assert analyse(spec, FakeProvider(labelled)).verdict == "Pass"


BAKING = ModelDeploymentStatus(phase="Baking", stableRevision="r2", previousStableRevision="r1")


def test_bake_without_a_recorded_baseline_checks_absolute_thresholds_only() -> None:
    spec = make_spec({"name": "accuracy", "min": 0.5, "maxDropVsStable": 0.02, "minSamples": 100})
    provider = FakeProvider({("accuracy", "r2", "value"): 0.7, ("accuracy", "r2", "samples"): 500})
    metric = only(analyse(spec, provider, status=BAKING))
    assert metric.verdict == "Pass"
    assert metric.stableValue is None
    assert "absolute thresholds only" in metric.message
    assert not any('revision="r1"' in q for q in provider.asked)  # the idle previous stable is not queried


def test_bake_compares_with_the_baseline_frozen_at_promotion_and_carries_it_forward() -> None:
    spec = make_spec({"name": "accuracy", "maxDropVsStable": 0.02, "minSamples": 100})
    last = AnalysisResult(
        time=NOW,
        revision="r2",
        verdict="Pass",
        metrics=[MetricResult(name="accuracy", value=0.85, stableValue=0.84, verdict="Pass")],
    )
    status = BAKING.model_copy(update={"lastAnalysis": last})
    worse = FakeProvider({("accuracy", "r2", "value"): 0.70, ("accuracy", "r2", "samples"): 500})
    metric = only(analyse(spec, worse, status=status))
    assert metric.verdict == "Fail"
    assert metric.stableValue == 0.84
    assert "previous stable 0.84 at promotion" in metric.message
    assert "binomial exact" in metric.message
    steady = FakeProvider({("accuracy", "r2", "value"): 0.84, ("accuracy", "r2", "samples"): 500})
    again = only(analyse(spec, steady, status=status))
    assert again.verdict == "Pass"
    assert again.stableValue == 0.84
    # a lastAnalysis of another revision is not a baseline for this one
    other = BAKING.model_copy(update={"lastAnalysis": last.model_copy(update={"revision": "r9"})})
    assert only(analyse(spec, worse, status=other)).stableValue is None


def test_missing_prometheus_address_is_inconclusive() -> None:
    spec = make_spec({"name": "error-rate", "max": 0.01})
    spec.analysis.prometheus = None
    result = run_analysis(spec, CANARY, "r2", NS, NAME, NOW)
    assert result.verdict == "Inconclusive"
    assert "no Prometheus configured" in only(result).message


def test_threshold_text_units() -> None:
    spec = make_spec(
        {"name": "latency-p99", "min": 1, "max": 250},
        {"name": "error-rate", "max": 0.01, "maxRiseVsStable": 0.005},
    )
    assert threshold_text(spec.analysis.metrics[0], 0.05) == ">= 1 ms, <= 250 ms"
    assert threshold_text(spec.analysis.metrics[1], 0.01) == "<= 0.01, rise vs stable <= 0.005 (alpha=0.01)"
