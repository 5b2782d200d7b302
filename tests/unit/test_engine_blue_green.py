"""Blue-green (strategy.blueGreen) in the engine: preview at full size, gates on preview traffic, one
switch, the previous revision kept at full size for scaleDownDelay with an instant revert."""

from datetime import timedelta

import pytest
from modelrollout import engine as e
from modelrollout.api.types import ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.strategy import plan_for
from pydantic import ValidationError

from tests.unit.test_engine import BASE, T0, ready, result, tick, unready

GATED = {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.1}]}


def spec(traffic=None, analysis=None, **blue_green) -> ModelDeploymentSpec:
    body = {k: v for k, v in BASE.items() if k != "strategy"}
    body["strategy"] = {"blueGreen": {"previewDuration": "30s", "scaleDownDelay": "60s", **blue_green}}
    body["bake"] = {"duration": "0s"}
    if traffic is not None:
        body["traffic"] = traffic
    if analysis is not None:
        body["analysis"] = analysis
    return ModelDeploymentSpec.model_validate(body)


def stable(s) -> ModelDeploymentStatus:
    d = tick(s, ModelDeploymentStatus(), "r1", {}, T0)
    return tick(s, d.status, "r1", {"r1": ready()}, T0).status


def routings(d: e.Decision) -> list[tuple[int, str | None]]:
    return [(a.routing.canary_weight, a.routing.canary_revision) for a in d.actions if isinstance(a, e.SetRouting)]


def preview(s, now=T0 + timedelta(seconds=1)) -> e.Decision:
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    assert e.EnsureRevision("r2", 2) in d.actions, "the preview runs at full size from the start"
    return tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now)


def switched(s) -> e.Decision:
    """Preview, gates passed, previewDuration over: the decision that switches."""
    d = preview(s)
    assert d.status.phase == "Progressing" and d.status.currentStep == 0 and d.status.canaryWeight == 0
    assert e.PointService("canary", "r2") in d.actions, "the preview Service points at the new revision"
    assert routings(d)[-1] == (0, None)
    assert d.status.message.startswith("preview of r2")
    now = T0 + timedelta(seconds=20)  # gates pass but previewDuration (30 s) is not over
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Pass", now))
    assert d.status.canaryRevision == "r2" and d.status.canaryWeight == 0
    now = T0 + timedelta(seconds=35)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Pass", now))
    # The switch: the stable Service moves to r2 in this one decision; no weight between 0 and 100.
    assert d.status.stableRevision == "r2" and d.status.phase == "Baking"
    assert e.PointService("stable", "r2") in d.actions
    assert not [a for a in d.actions if isinstance(a, e.PointService) and a.role == "canary" and a.revision != "r2"], (
        "the preview Service keeps selecting r2, the stable revision now"
    )
    assert all(w == 0 for w, _ in routings(d))
    assert e.EnsureRevision("r1", 2) in d.actions, "the previous revision stays at full size"
    return d


def test_the_preview_gets_no_live_traffic_then_everything_switches_at_once():
    switched(spec(analysis=GATED))


def test_the_previous_revision_is_scaled_down_after_scale_down_delay():
    s = spec(analysis=GATED)
    d = switched(s)
    now = T0 + timedelta(seconds=35 + 61)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Pass", now, rev="r2"))
    assert d.status.phase == "Succeeded" and d.status.previousStableRevision is None
    assert e.EnsureRevision("r1", 0) in d.actions


def test_a_failure_after_the_switch_switches_back_at_once():
    s = spec(analysis=GATED)
    d = switched(s)
    now = T0 + timedelta(seconds=50)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Fail", now, rev="r2"))
    assert d.status.phase == "RolledBack" and d.status.stableRevision == "r1"
    assert e.PointService("stable", "r1") in d.actions
    # The switched-from revision keeps its pods for abortScaleDownDelay (30s) while proxies catch up.
    assert [(r.revision, r.scaleDownAt) for r in d.status.retiring] == [("r2", now + timedelta(seconds=30))]
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now + timedelta(seconds=30))
    assert e.EnsureRevision("r2", 0) in d.actions


def test_a_failing_preview_is_rolled_back_without_any_live_request():
    s = spec(analysis=GATED)
    d = preview(s)
    now = T0 + timedelta(seconds=10)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Fail", now))
    assert d.status.phase == "RolledBack" and d.status.stableRevision == "r1" and "r2" in d.status.failedRevisions
    assert all(w == 0 for w, _ in routings(d))


def test_without_auto_promote_the_passed_preview_waits_for_the_promote_annotation():
    s = spec(analysis=GATED, autoPromote=False)
    d = preview(s)
    now = T0 + timedelta(seconds=40)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Pass", now))
    assert d.status.canaryRevision == "r2" and "waiting for `kubectl modelrollout promote`" in d.status.message
    now += timedelta(seconds=5)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, annotations={"modelrollout.io/promote": "1"})
    assert d.status.stableRevision == "r2"


def test_without_gates_the_switch_follows_preview_duration_and_the_previous_stays_warm():
    s = spec()
    d = preview(s)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=32))
    assert d.status.stableRevision == "r2" and d.status.phase == "Baking", "scaleDownDelay holds without gates"
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=95))
    assert d.status.phase == "Succeeded" and e.EnsureRevision("r1", 0) in d.actions


def test_without_a_traffic_layer_blue_green_still_runs_full_size_and_switches_the_service():
    s = spec(traffic={"none": {}})
    assert not plan_for(s).replica_weights, "the <name> Service selects only the stable revision"
    d = preview(s)
    assert e.EnsureRevision("r2", 2) in d.actions and not d.status.weightApproximate
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=3))
    assert d.status.canaryWeight == 0


def test_plan_and_validation():
    plan = plan_for(spec(scaleDownDelay="2m"))
    assert (plan.strategy, plan.steps, plan.step_duration, plan.hold) == ("blueGreen", (0,), "30s", "2m")
    longer_bake = {**BASE, "strategy": {"blueGreen": {"scaleDownDelay": "1m"}}, "bake": {"duration": "5m"}}
    assert plan_for(ModelDeploymentSpec.model_validate(longer_bake)).hold == "5m"
    with pytest.raises(ValidationError, match="one strategy"):
        ModelDeploymentSpec.model_validate({**BASE, "strategy": {"canary": {"steps": [100]}, "blueGreen": {}}})
    with pytest.raises(ValidationError, match="maxPreviewDuration"):
        spec(previewDuration="10m", maxPreviewDuration="5m")
