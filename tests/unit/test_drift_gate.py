"""The drift gate on counts a fake Prometheus answers: verdicts, sample guards, PSI by hand."""

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from modelrollout.api.types import MetricSpec, ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.metrics import drift_gate
from modelrollout.metrics.gates import run_analysis
from modelrollout.metrics.provider import QueryResult, VectorResult, parse_vector
from scipy import stats

REFERENCE = {"amount": [0.1, 0.15, 0.25, 0.25, 0.15, 0.1], "_prediction_score": [0.5, 0.3, 0.2]}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class BinsProvider:
    """Answers the drift gate's two queries per revision from ``{revision: {feature: counts}}``."""

    def __init__(self, counts: dict[str, dict[str, list[float]]], reference=REFERENCE, error: str | None = None):
        self.counts, self.reference, self.error = counts, reference, error
        self.asked: list[str] = []

    def query(self, promql: str) -> QueryResult:
        raise AssertionError("the drift gate asks for vectors only")

    def query_vector(self, promql: str) -> VectorResult:
        self.asked.append(promql)
        if self.error:
            return VectorResult(promql, error=self.error)
        revision = re.search(r'revision="([^"]+)"', promql)[1]
        table = self.reference if "bin_reference" in promql else self.counts.get(revision, {})
        series = [
            ({"feature": f, "bin": str(i)}, float(v)) for f, values in table.items() for i, v in enumerate(values)
        ]
        return VectorResult(promql, tuple(series))


def judge(provider, baseline=None, **metric):
    spec = MetricSpec.model_validate({"name": "drift", **metric})
    period = {"range": "600s", "offset": ""}
    return drift_gate.evaluate(spec, provider, namespace="ns", revision="r2", baseline=baseline, period=period,
                               base_period=period if baseline else None, alpha=0.01, threshold="t")  # fmt: skip


def healthy(n: int, seed: int = 1) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {f: rng.multinomial(n, p).tolist() for f, p in REFERENCE.items()}


def test_psi_and_the_test_match_hand_computed_values():
    counts = [100, 150, 250, 250, 150, 100]
    shifted = [300, 250, 200, 150, 60, 40]
    result = judge(BinsProvider({"r2": {"amount": shifted, "_prediction_score": [500, 300, 200]}}), maxPSI=0.2)
    amount = next(f for f in result.features if f.name == "amount")
    n, ref = sum(shifted), np.array(REFERENCE["amount"])
    obs = (np.array(shifted) + 0.5) / (n + 3)  # Jeffreys smoothing, as documented
    assert amount.psi == pytest.approx(float(np.sum((obs - ref) * np.log(obs / ref))), abs=1e-4)
    assert amount.pValue == pytest.approx(stats.chisquare(shifted, ref * n).pvalue, rel=1e-2)
    assert amount.drifted and result.verdict == "Fail" and result.reason == "Failed"
    assert result.message.startswith("drifted: amount PSI") and result.features[0].name == "amount"
    same = judge(BinsProvider({"r2": {"amount": counts, "_prediction_score": [500, 300, 200]}}), maxPSI=0.2)
    assert same.verdict == "Pass" and max(f.psi for f in same.features) < 0.01


def test_a_feature_is_judged_only_once_its_noise_is_a_twentieth_of_the_bound():
    # 6 bins at maxPSI 0.2: 20 * 5 / 0.2 = 500 values; the score's 3 bins: 200.
    assert drift_gate.min_values(6, 0.2, 100) == 500 and drift_gate.min_values(3, 0.2, 100) == 200
    assert drift_gate.min_values(6, 0.2, 2000) == 2000
    result = judge(BinsProvider({"r2": healthy(300)}), maxPSI=0.2)
    assert result.verdict == "Inconclusive" and result.reason == "InsufficientSamples"
    assert "amount: 300 of 500 values" in result.message and "_prediction_score" not in result.message
    # Even a gross move in too few values says nothing yet (no sample minimum for "drifted" would
    # flag noise: PSI's expectation under no drift is (k - 1) / n).
    rolled = {"amount": [0, 0, 100, 100, 50, 50], "_prediction_score": [150, 90, 60]}
    assert judge(BinsProvider({"r2": rolled}), maxPSI=0.2).reason == "InsufficientSamples"


def test_healthy_traffic_passes_many_draws():
    verdicts = {judge(BinsProvider({"r2": healthy(2000, seed)}), maxPSI=0.1).verdict for seed in range(200)}
    assert verdicts == {"Pass"}


def test_only_the_named_features_are_judged_and_an_unknown_name_is_reported():
    shifted = {"amount": [300, 250, 200, 150, 60, 40], "_prediction_score": [500, 300, 200]}
    only_score = judge(BinsProvider({"r2": shifted}), maxPSI=0.2, features=["_prediction_score"])
    assert only_score.verdict == "Pass" and [f.name for f in only_score.features] == ["_prediction_score"]
    unknown = judge(BinsProvider({"r2": shifted}), maxPSI=0.2, features=["hour"])
    assert unknown.reason == "NoData" and "no reference bins for hour" in unknown.message


def test_a_revision_without_reference_bins_is_blind_and_says_what_to_add():
    result = judge(BinsProvider({"r2": {}}, reference={}), maxPSI=0.2)
    assert result.reason == "NoData" and "reference_bins" in result.message


def test_a_query_error_is_blind():
    result = judge(BinsProvider({}, error="Prometheus at http://p is unreachable"), maxPSI=0.2)
    assert result.reason == "QueryError" and "unreachable" in result.message


def test_against_stable_compares_the_same_period_and_names_the_comparison():
    stable = healthy(3000, seed=3)
    canary = dict(healthy(3000, seed=4))
    canary["_prediction_score"] = [900, 900, 1200]  # the canary scores differently on the same traffic
    provider = BinsProvider({"r2": canary, "r1": stable})
    result = judge(provider, baseline="r1", maxPSIVsStable=0.1)
    assert result.verdict == "Fail"
    assert [f.name for f in result.features if f.drifted] == ["_prediction_score vs stable"]
    assert any('revision="r1"' in q for q in provider.asked)
    # Without a baseline (the continuous watch) only the reference counts.
    alone = judge(BinsProvider({"r2": canary}), maxPSIVsStable=0.1)
    assert alone.verdict == "Pass" and "no concurrent baseline" in alone.message


def test_run_analysis_dispatches_drift_and_the_watch_compares_with_the_reference_only():
    spec = ModelDeploymentSpec.model_validate({
        "model": {"name": "fraud", "uri": "https://m/a.onnx"},
        "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        "analysis": {"interval": "30s", "metrics": [{"name": "drift", "maxPSI": 0.2, "maxPSIVsStable": 0.2}],
                     "continuous": {"window": "1h"}},
    })  # fmt: skip
    status = ModelDeploymentStatus.model_validate(
        {"phase": "Succeeded", "stableRevision": "r2", "previousStableRevision": "r1",
         "watchSince": (NOW - timedelta(minutes=10)).isoformat()}
    )  # fmt: skip
    provider = BinsProvider({"r2": healthy(5000)})
    result = run_analysis(spec, status, "r2", "ns", "fraud", NOW, provider=provider)
    assert result.verdict == "Pass" and result.metrics[0].threshold == "PSI <= 0.2, PSI vs stable <= 0.2"
    assert all('revision="r2"' in q and "[600s]" in q for q in provider.asked)


def test_parse_vector_keeps_finite_values_and_refuses_other_shapes():
    data = [{"metric": {"feature": "a", "bin": "0"}, "value": [0, "3"]},
            {"metric": {"feature": "a", "bin": "1"}, "value": [0, "NaN"]}]  # fmt: skip
    assert parse_vector(data) == ((({"feature": "a", "bin": "0"}, 3.0),), None)
    assert parse_vector([0, "1"])[1] and parse_vector([{"metric": {}, "values": []}])[1]
    assert parse_vector([]) == ((), None)


def test_series_beyond_the_bin_limit_or_an_empty_reference_are_ignored():
    reference = {**REFERENCE, "junk": [0.0, 0.0]}
    provider = BinsProvider({"r2": {**healthy(3000), "amount": [*healthy(3000)["amount"], *([1.0] * 100)]}}, reference)
    result = judge(provider, maxPSI=0.2)
    assert result.verdict == "Pass" and {f.name for f in result.features} == {"amount", "_prediction_score"}
