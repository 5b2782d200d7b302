"""The shadow step (strategy.canary.shadow) in the engine, the gates and the admission rules: a step
at weight 0 that mirrors inference requests to the candidate, compared with the stable model on the
same requests; accuracy waits for the first canary step; the shadow gates judge only a compared
revision."""

from datetime import timedelta

import pytest
from modelrollout import engine as e
from modelrollout.api.types import (
    AnalysisResult,
    ComparedModel,
    GateReason,
    HistoryEntry,
    HistoryPhase,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelrollout.metrics.gates import run_analysis
from modelrollout.metrics.provider import QueryResult
from modelrollout.strategy import plan_for
from pydantic import ValidationError

from tests.unit.test_engine import BASE, T0, ready, tick, unready

SHADOW = {"percent": 50, "duration": "30s", "maxDuration": "2m"}
GATED = {
    "prometheus": {"address": "http://p:9090"},
    "metrics": [{"name": "agreement", "min": 0.95}, {"name": "accuracy", "min": 0.8}],
}


def spec(traffic=None, analysis=None, shadow=None, **canary) -> ModelDeploymentSpec:
    body = {k: v for k, v in BASE.items() if k != "strategy"}
    body["strategy"] = {"canary": {"steps": [10, 50, 100], "stepDuration": "10s", "shadow": shadow or SHADOW, **canary}}
    if traffic is not None:
        body["traffic"] = traffic
    body["analysis"] = analysis if analysis is not None else GATED
    return ModelDeploymentSpec.model_validate(body)


def mirrors(d: e.Decision) -> list[tuple[int, int, str | None]]:
    """(weight, mirror %, routed revision) of every routing the decision writes."""
    return [
        (a.routing.canary_weight, a.routing.mirror_percent, a.routing.canary_revision)
        for a in d.actions
        if isinstance(a, e.SetRouting)
    ]


def passed(now, rev="r2") -> AnalysisResult:
    return AnalysisResult(
        time=now,
        revision=rev,
        verdict="Pass",
        metrics=[
            MetricResult(name="agreement", verdict="Pass", reason=GateReason.PASSED, value=0.99),
            MetricResult(name="accuracy", verdict="Pass", reason=GateReason.NOT_APPLICABLE),
        ],
    )


def stable(s) -> ModelDeploymentStatus:
    d = tick(s, ModelDeploymentStatus(), "r1", {}, T0)
    return tick(s, d.status, "r1", {"r1": ready()}, T0).status


def shadowing(s) -> e.Decision:
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    assert mirrors(d) == [(0, 0, None)], "nothing is mirrored before the candidate has a ready pod"
    entry = next(h for h in d.status.history if h.revision == "r2")
    assert entry.comparedWith == ComparedModel(revision="r1", uri="https://m/a.onnx"), entry
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert d.status.currentStep == 0 and d.status.canaryWeight == 0
    assert mirrors(d)[-1] == (0, 50, "r2")
    assert d.status.message.startswith("shadow of r2: 50% of live inference requests mirrored")
    assert any(isinstance(a, e.Emit) and a.reason == "ShadowStarted" for a in d.actions)
    return d


def test_the_plan_puts_a_shadow_step_before_the_canary_steps():
    plan = plan_for(spec())
    assert plan.steps == (0, 10, 50, 100)
    assert plan.step_duration_at(0) == "30s" and plan.max_step_duration_at(0) == "2m"
    assert plan.step_duration_at(1) == "10s" and plan.max_step_duration_at(1) == "2h"
    assert plan.pod_share(0) == 50 and plan.pod_share(1) == 10
    assert plan_for(ModelDeploymentSpec.model_validate(BASE)).steps == (10, 50, 100)


def test_the_shadow_step_mirrors_for_its_duration_then_the_canary_steps_take_over_without_it():
    s = spec()
    d = shadowing(s)
    now = T0 + timedelta(seconds=20)  # gates passed, but shadow.duration (30 s) is not over
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=passed(now))
    assert d.status.currentStep == 0 and mirrors(d)[-1] == (0, 50, "r2")
    now = T0 + timedelta(seconds=32)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=passed(now))
    assert d.status.currentStep == 1 and d.status.canaryWeight == 10
    assert mirrors(d)[-1] == (10, 0, "r2"), "the mirror ends with the shadow step"
    assert d.status.evidenceSince == T0 + timedelta(seconds=1), "the evidence counts from the shadow's start"


def test_a_candidate_that_loses_its_pods_is_not_mirrored_to():
    s = spec()
    d = shadowing(s)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=5))
    assert mirrors(d)[-1] == (0, 0, None)


def test_a_failing_shadow_gate_rolls_back_before_any_client_request():
    s = spec()
    d = shadowing(s)
    now = T0 + timedelta(seconds=5)
    failed = AnalysisResult(time=now, revision="r2", verdict="Fail", metrics=[
        MetricResult(name="agreement", verdict="Fail", reason=GateReason.FAILED, value=0.5)])  # fmt: skip
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=failed)
    assert d.status.phase == "RolledBack" and "r2" in d.status.failedRevisions
    assert all(weight == 0 and mirror == 0 for weight, mirror, _ in mirrors(d))


def test_an_undecided_shadow_ends_at_max_duration_with_its_reason():
    s = spec()
    d = shadowing(s)
    waiting = [MetricResult(name="agreement", verdict="Inconclusive", reason=GateReason.INSUFFICIENT_SAMPLES,
                            message="12 of 100 samples")]  # fmt: skip
    now = T0 + timedelta(seconds=40)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now,
             analysis=AnalysisResult(time=now, revision="r2", verdict="Inconclusive", metrics=waiting))  # fmt: skip
    assert d.status.currentStep == 0 and "shadow waiting for evidence" in d.status.message
    assert "shadow.maxDuration 2m" in d.status.message
    now = T0 + timedelta(seconds=122)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now,
             analysis=AnalysisResult(time=now, revision="r2", verdict="Inconclusive", metrics=waiting))  # fmt: skip
    assert d.status.phase == "RolledBack"
    assert "shadow not decided within 2m" in d.status.message


def test_a_proportional_shadow_is_sized_for_the_mirrored_share():
    s = spec(scaling="Proportional", shadow={"percent": 50, "duration": "30s"})
    s = s.model_copy(update={"serving": s.serving.model_copy(update={"replicas": 4})})
    first = tick(s, ModelDeploymentStatus(), "r1", {}, T0)
    first = tick(s, first.status, "r1", {"r1": ready(4)}, T0)
    d = tick(s, first.status, "r2", {"r1": ready(4)}, T0)
    assert e.EnsureRevision("r2", 2) in d.actions, "half the requests mirrored: half the pods"


def test_a_stable_model_the_candidate_cannot_read_is_not_compared_and_says_why():
    s = spec()
    status = stable(s)
    history = [h.model_copy(update={"model": h.model.model_copy(update={"uri": "pvc://other/a.onnx"})})
               for h in status.history]  # fmt: skip
    status = status.model_copy(update={"history": history})
    body = s.model_dump(mode="json", exclude_none=True)
    body["model"]["uri"] = "pvc://models/b.onnx"
    d = tick(ModelDeploymentSpec.model_validate(body), status, "r2", {"r1": ready()}, T0)
    entry = next(h for h in d.status.history if h.revision == "r2")
    assert entry.comparedWith is None
    warned = [a for a in d.actions if isinstance(a, e.Emit) and a.reason == "ShadowComparisonUnavailable"]
    assert warned and "pvc://other/a.onnx" in warned[0].message


# ---------------------------------------------------------------------------------------- gates


class Counts:
    """Answers every shadow count query with fixed numbers (rows compared, rows agreed)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def query(self, promql: str) -> QueryResult:
        self.asked.append(promql)
        value = 1000.0 if "shadow_rows_total" in promql else 990.0
        return QueryResult(promql, value=value, seconds=0.001)


def _status(step, compared=True, phase="Progressing") -> ModelDeploymentStatus:
    entry = HistoryEntry.model_validate({
        "revision": "r2", "modelURI": "https://m/a.onnx", "phase": HistoryPhase.PROGRESSING, "startedAt": T0,
        "model": {"name": "fraud", "uri": "https://m/a.onnx"}, "serving": {},
        "comparedWith": {"revision": "r1", "uri": "https://m/a.onnx"} if compared else None,
    })  # fmt: skip
    return ModelDeploymentStatus(phase=phase, stableRevision="r1", canaryRevision="r2", currentStep=step,
                                 evidenceSince=T0, history=[entry])  # fmt: skip


def reasons(status, revision="r2") -> dict[str, str | None]:
    result = run_analysis(spec(), status, revision, "ns", "fraud", T0 + timedelta(minutes=5), provider=Counts())
    return {m.name: m.reason for m in result.metrics}


def test_accuracy_is_not_judged_in_the_shadow_step_and_agreement_is():
    got = reasons(_status(0))
    assert got["accuracy"] == GateReason.NOT_APPLICABLE
    assert got["agreement"] in (GateReason.PASSED, GateReason.UNDECIDED)


def test_after_the_shadow_step_both_are_judged():
    got = reasons(_status(1))
    assert got["accuracy"] != GateReason.NOT_APPLICABLE and got["agreement"] != GateReason.NOT_APPLICABLE


def test_agreement_is_blind_for_a_candidate_without_a_comparison_and_not_judged_in_the_watch():
    """A gate the user asked for must not pass unseen: a shadow candidate whose pods could not load
    the stable model is blind on it (inconclusiveLimit ends the rollout); the watch never compares."""
    blind = run_analysis(spec(), _status(0, compared=False), "r2", "ns", "fraud", T0 + timedelta(minutes=5),
                         provider=Counts())  # fmt: skip
    agreement = next(m for m in blind.metrics if m.name == "agreement")
    assert (agreement.reason, agreement.verdict) == (GateReason.NO_DATA, "Inconclusive")
    assert "have no comparison model" in agreement.message and blind.verdict == "Inconclusive"
    watch = _status(None, phase="Succeeded").model_copy(update={"stableRevision": "r2", "canaryRevision": None})
    assert reasons(watch)["agreement"] == GateReason.NOT_APPLICABLE
    baking = _status(None, compared=False, phase="Baking").model_copy(
        update={"stableRevision": "r2", "canaryRevision": None})  # fmt: skip
    assert reasons(baking)["agreement"] == GateReason.NOT_APPLICABLE, "not a shadow candidate: nothing to judge"


def test_agreement_counts_compared_and_agreed_rows_of_the_revision():
    provider = Counts()
    result = run_analysis(spec(), _status(0), "r2", "ns", "fraud", T0 + timedelta(minutes=5), provider=provider)
    agreement = next(m for m in result.metrics if m.name == "agreement")
    assert (agreement.events, agreement.samples) == (990, 1000)
    assert any('modelserver_shadow_agreed_rows_total{namespace="ns", revision="r2"}' in q for q in provider.asked)


def test_score_difference_counts_rows_above_the_edge_from_the_histogram():
    gate = {"name": "score-difference", "scoreDifferenceAbove": 0.1, "max": 0.05}
    s = spec(analysis={"prometheus": {"address": "http://p:9090"}, "metrics": [gate]})
    provider = Counts()
    result = run_analysis(s, _status(0), "r2", "ns", "fraud", T0 + timedelta(minutes=5), provider=provider)
    m = result.metrics[0]
    assert (m.events, m.samples) == (10, 1000), "rows above 0.1 are the complement of the le=0.1 bucket"
    assert any('modelserver_shadow_score_difference_bucket{namespace="ns", revision="r2", le="0.1"}' in q
               for q in provider.asked)  # fmt: skip
    assert "share of scores more than 0.1 from stable's" in m.threshold


# ------------------------------------------------------------------------------------- admission


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"traffic": {"none": {}}}, "traffic.none cannot mirror"),
        ({"traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]},
                      "canaryRoutes": [{"header": {"name": "x-canary", "value": "always"}}]}}, "answers no client"),
        ({"traffic": {"nginx": {"host": "m.example.com", "path": "/v2/models/fraud"}}}, "percent must be 100"),
    ],
    ids=["none", "canary-routes", "nginx-percent"],
)  # fmt: skip
def test_admission_refuses_a_shadow_that_cannot_work(change, needle):
    body = spec().model_dump(mode="json", exclude_none=True)
    body.update(change)
    with pytest.raises(ValidationError, match=needle):
        ModelDeploymentSpec.model_validate(body)


@pytest.mark.parametrize(
    ("gate", "needle"),
    [
        ({"name": "agreement", "min": 0.9, "maxDropVsStable": 0.01}, "already compare with the stable model"),
        ({"name": "score-difference", "max": 0.05}, "scoreDifferenceAbove is required"),
        ({"name": "score-difference", "max": 0.05, "scoreDifferenceAbove": 0.15}, "bucket edges"),
        ({"name": "error-rate", "max": 0.05, "scoreDifferenceAbove": 0.1}, "not allowed otherwise"),
    ],
)
def test_admission_refuses_misused_shadow_gates(gate, needle):
    with pytest.raises(ValidationError, match=needle):
        spec(analysis={"metrics": [gate]})


def test_shadow_gates_need_a_shadow():
    body = {**BASE, "analysis": {"metrics": [{"name": "agreement", "min": 0.9}]}}
    with pytest.raises(ValidationError, match=r"set strategy\.canary\.shadow"):
        ModelDeploymentSpec.model_validate(body)


def test_the_shadow_step_needs_every_gate_shown_met_not_only_nothing_failed():
    """Undecided lets an early canary step advance; the shadow step must prove its gates first, or
    a candidate could take live traffic on evidence that never showed it fit."""
    s = spec()
    d = shadowing(s)
    now = T0 + timedelta(seconds=40)
    undecided = AnalysisResult(time=now, revision="r2", verdict="Inconclusive", metrics=[
        MetricResult(name="agreement", verdict="Inconclusive", reason=GateReason.UNDECIDED, value=0.9),
        MetricResult(name="accuracy", verdict="Pass", reason=GateReason.NOT_APPLICABLE)])  # fmt: skip
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=undecided)
    assert d.status.currentStep == 0 and mirrors(d)[-1] == (0, 50, "r2")
    assert "agreement Undecided" in d.status.message
