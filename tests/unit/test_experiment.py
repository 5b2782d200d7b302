"""The A/B test (strategy.abTest): the sequential decision on the primary metric, its always-valid
interval, the engine's experiment step, and admission."""

from datetime import timedelta

import pytest
from modelrollout import engine as e
from modelrollout.api.types import (
    AnalysisResult,
    ArmCounts,
    ExperimentOutcome,
    GateReason,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelrollout.metrics import experiment as x
from modelrollout.metrics.gates import run_analysis
from modelrollout.metrics.provider import QueryResult
from modelrollout.strategy import Strategy, plan_for
from pydantic import ValidationError

from tests.unit.test_engine import BASE, T0, ready, tick

AB = {"split": 50, "minDuration": "1m", "maxDuration": "10m", "minSamples": 100, "tieMargin": 0.02}


def arm(rev: str, successes: int, trials: int) -> ArmCounts:
    return ArmCounts(revision=rev, successes=successes, trials=trials)


def decide(b: tuple[int, int], a: tuple[int, int], margin: float = 0.02, min_samples: int = 100):
    return x.decide("accuracy", arm("B", *b), arm("A", *a), 0.05, margin, min_samples)


def test_a_clearly_better_candidate_wins_with_its_interval():
    r = decide((900, 1000), (800, 1000))
    assert r.outcome == ExperimentOutcome.CANDIDATE_WON
    assert r.effect == pytest.approx(0.1) and 0 < r.lower < 0.1 < r.upper < 0.2
    assert "B - A = +0.1000, 95 % interval" in r.message


def test_a_clearly_worse_candidate_loses():
    r = decide((800, 1000), (900, 1000))
    assert r.outcome == ExperimentOutcome.STABLE_WON and r.upper < 0


def test_equal_arms_with_enough_samples_tie_and_few_do_not():
    assert decide((9000, 10000), (9000, 10000)).outcome == ExperimentOutcome.TIE
    assert decide((450, 500), (450, 500)).outcome == ExperimentOutcome.RUNNING, "+-0.02 not shown with 500 each"


def test_nothing_is_decided_below_min_samples():
    r = decide((90, 90), (10, 90), min_samples=100)
    assert r.outcome == ExperimentOutcome.RUNNING and "90 of minSamples=100" in r.message


def test_the_interval_narrows_with_samples_and_always_holds_the_observed_effect():
    widths = []
    for n in (200, 2000, 20000):
        r = decide((int(0.9 * n), n), (int(0.88 * n), n))
        assert r.lower < r.effect < r.upper
        widths.append(r.upper - r.lower)
    assert widths[0] > widths[1] > widths[2]


def test_equal_arms_rarely_name_a_winner_however_often_they_are_looked_at():
    """Repeated looks at two equal arms (p = 0.9): the always-valid test names a winner in at most
    alpha of the experiments (simulation with the real decision, 60 experiments x 40 looks)."""
    import numpy as np

    rng = np.random.default_rng(7)
    wrong = 0
    for _ in range(60):
        xa = xb = n = 0
        for _ in range(40):
            xa += int(rng.binomial(100, 0.9))
            xb += int(rng.binomial(100, 0.9))
            n += 100
            outcome = decide((xb, n), (xa, n), margin=0.005).outcome
            if outcome in (ExperimentOutcome.CANDIDATE_WON, ExperimentOutcome.STABLE_WON):
                wrong += 1
                break
    assert wrong <= 3, f"{wrong}/60 equal experiments named a winner (alpha 0.05)"


# ------------------------------------------------------------------------------------ analysis


class Labels:
    """Accuracy counts per revision: (correct, labels)."""

    def __init__(self, counts: dict[str, tuple[int, int]]) -> None:
        self.counts = counts

    def query(self, promql: str) -> QueryResult:
        rev = next(r for r in self.counts if f'revision="{r}"' in promql)
        correct, labels = self.counts[rev]
        return QueryResult(promql, value=float(correct if 'correct="true"' in promql else labels))


def spec(metric=None, **over) -> ModelDeploymentSpec:
    body = {k: v for k, v in BASE.items() if k != "strategy"}
    body["strategy"] = {"abTest": {**AB, **({"metric": metric} if metric else {})}}
    body["analysis"] = {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.5}]}
    return ModelDeploymentSpec.model_validate({**body, **over})


STATUS = ModelDeploymentStatus(phase="Progressing", stableRevision="r1", canaryRevision="r2", currentStep=0,
                               evidenceSince=T0)  # fmt: skip


def test_run_analysis_counts_both_revisions_over_the_experiment():
    provider = Labels({"r1": (800, 1000), "r2": (900, 1000)})
    result = run_analysis(spec(), STATUS, "r2", "ns", "fraud", T0 + timedelta(minutes=5), provider=provider)
    assert result.experiment is not None and result.experiment.outcome == ExperimentOutcome.CANDIDATE_WON
    assert (result.experiment.candidate.successes, result.experiment.stable.successes) == (900, 800)


def test_a_custom_metric_substitutes_the_range_and_each_revision():
    metric = {"name": "conversion",
              "successes": 'sum(increase(conversions_total{revision="{{revision}}"}[{{range}}]))',
              "trials": 'sum(increase(sessions_total{revision="{{revision}}"}[{{range}}]))'}  # fmt: skip
    asked: list[str] = []

    class Provider:
        def query(self, promql: str) -> QueryResult:
            asked.append(promql)
            return QueryResult(promql, value=50.0 if "conversions" in promql else 1000.0)

    result = run_analysis(spec(metric), STATUS, "r2", "ns", "fraud", T0 + timedelta(minutes=5), provider=Provider())
    assert result.experiment is not None and result.experiment.metric == "conversion"
    assert 'sum(increase(sessions_total{revision="r2"}[300s]))' in asked
    assert 'sum(increase(conversions_total{revision="r1"}[300s]))' in asked


# -------------------------------------------------------------------------------------- engine


def experimenting(s) -> e.Decision:
    d = tick(s, ModelDeploymentStatus(), "r1", {}, T0)
    d = tick(s, d.status, "r1", {"r1": ready()}, T0)
    d = tick(s, d.status, "r2", {"r1": ready()}, T0)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert d.status.currentStep == 0 and d.status.canaryWeight == 50
    assert any(isinstance(a, e.Emit) and a.reason == "ExperimentStarted" for a in d.actions)
    return d


def checked(now, outcome: ExperimentOutcome) -> AnalysisResult:
    exp = decide((900, 1000), (800, 1000)).model_copy(update={"outcome": outcome})
    gate = MetricResult(name="error-rate", verdict="Pass", reason=GateReason.PASSED)
    return AnalysisResult(time=now, revision="r2", verdict="Pass", experiment=exp, metrics=[gate])


def test_the_plan_is_one_step_at_the_split():
    plan = plan_for(spec())
    assert (plan.strategy, plan.steps, plan.step_duration, plan.max_step_duration) == (
        Strategy.AB_TEST, (50,), "1m", "10m")  # fmt: skip


def test_a_winning_candidate_is_promoted_only_after_min_duration():
    s = spec()
    d = experimenting(s)
    now = T0 + timedelta(seconds=30)
    d = tick(
        s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=checked(now, ExperimentOutcome.CANDIDATE_WON)
    )
    assert d.status.canaryWeight == 50 and "of minDuration 1m" in d.status.message
    now = T0 + timedelta(seconds=62)
    d = tick(
        s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=checked(now, ExperimentOutcome.CANDIDATE_WON)
    )
    assert d.status.stableRevision == "r2" and d.status.phase in ("Baking", "Succeeded")
    assert d.status.experiment.outcome == ExperimentOutcome.CANDIDATE_WON and d.status.experiment.decidedAt == now
    assert any(isinstance(a, e.Emit) and a.reason == "ExperimentEnded" for a in d.actions)


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [(ExperimentOutcome.STABLE_WON, "ExperimentLost"), (ExperimentOutcome.TIE, "ExperimentTie")],
)
def test_a_lost_or_tied_experiment_keeps_the_stable_revision(outcome, reason):
    s = spec()
    d = experimenting(s)
    now = T0 + timedelta(seconds=62)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=checked(now, outcome))
    assert d.status.phase == "RolledBack" and d.status.stableRevision == "r1" and d.status.rollbackReason == reason
    assert d.status.experiment.outcome == outcome


def test_an_undecided_experiment_times_out_at_max_duration():
    s = spec()
    d = experimenting(s)
    now = T0 + timedelta(minutes=5)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=checked(now, ExperimentOutcome.RUNNING))
    assert d.status.phase == "Progressing" and d.status.canaryWeight == 50
    now = T0 + timedelta(minutes=10, seconds=2)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=checked(now, ExperimentOutcome.RUNNING))
    assert d.status.rollbackReason == "ExperimentTimeout"
    assert d.status.experiment.outcome == ExperimentOutcome.TIMEOUT


def test_a_failing_guardrail_ends_the_experiment_like_a_canary():
    s = spec()
    d = experimenting(s)
    now = T0 + timedelta(seconds=20)
    gate = MetricResult(name="error-rate", verdict="Fail", reason=GateReason.FAILED)
    failed = AnalysisResult(time=now, revision="r2", verdict="Fail", metrics=[gate])
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=failed)
    assert d.status.rollbackReason == "GateFailedErrorRate"


# ------------------------------------------------------------------------------------ admission


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"metric": {"name": "conversion", "successes": "x"}}, "set successes and trials together"),
        ({"metric": {"name": "conversion"}}, "needs successes and trials"),
        ({"metric": {"name": "accuracy", "successes": "x", "trials": "y"}}, "name accuracy reads the feedback"),
        ({"split": 100}, "less than or equal to 99"),
        ({"minDuration": "2h", "maxDuration": "1h"}, "maxDuration must be at least minDuration"),
    ],
)
def test_admission_refuses_a_misconfigured_experiment(change, needle):
    body = {k: v for k, v in BASE.items() if k != "strategy"}
    body["strategy"] = {"abTest": {**AB, **change}}
    with pytest.raises(ValidationError, match=needle):
        ModelDeploymentSpec.model_validate(body)


def test_admission_refuses_two_strategies_and_canary_routes_in_an_experiment():
    body = {k: v for k, v in BASE.items() if k != "strategy"}
    with pytest.raises(ValidationError, match="set one strategy"):
        ModelDeploymentSpec.model_validate({**body, "strategy": {"abTest": AB, "canary": {"steps": [100]}}})
    routed = {**body, "strategy": {"abTest": AB},
              "traffic": {**BASE["traffic"], "canaryRoutes": [{"header": {"name": "x", "value": "1"}}]}}  # fmt: skip
    with pytest.raises(ValidationError, match="remove them for the experiment"):
        ModelDeploymentSpec.model_validate(routed)
