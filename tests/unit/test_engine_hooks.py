"""Rollout hooks (spec.hooks) in the engine: when each type is due, what its result holds or ends,
and that waiting on an approval never rolls back."""

from datetime import timedelta

import pytest
from modelrollout import engine as e
from modelrollout import hooks
from modelrollout.api.types import HookResult, HookType, ModelDeploymentSpec, ModelDeploymentStatus
from pydantic import ValidationError

from tests.unit.test_engine import BASE, T0, ready, tick

URL = "http://hooks.ml:8080/"


def spec(*kinds: str, failure_limit: int = 2) -> ModelDeploymentSpec:
    declared = [{"name": k.lower(), "type": k, "url": URL + k, "failureLimit": failure_limit} for k in kinds]
    body = {**BASE, "strategy": {"canary": {"steps": [50, 100], "stepDuration": "10s"}},
            "analysis": {"interval": "5s"}, "hooks": declared}  # fmt: skip
    return ModelDeploymentSpec.model_validate(body)


def answered(s, status, now, passed: bool, message: str = "HTTP 200") -> tuple[HookResult, ...]:
    """The shell's part: call whatever hooks.due() says, answering ``passed``."""
    return tuple(
        HookResult(
            name=c.hook.name,
            type=HookType(c.hook.type),
            revision=c.revision,
            step=c.step,
            passed=passed,
            message=message,
            calledAt=now,
        )
        for c in hooks.due(s, status, now)
    )


def step(s, status, now, passed: bool = True, deps=None) -> e.Decision:
    obs = e.Observations(1, e.DesiredRevision("r2", s.model, s.serving), deps or {"r1": ready(), "r2": ready()},
                         hooks=answered(s, status, now, passed))  # fmt: skip
    return e.decide(s, status, obs, now)


def stable(s) -> ModelDeploymentStatus:
    d = tick(s, ModelDeploymentStatus(), "r1", {}, T0)
    return tick(s, d.status, "r1", {"r1": ready()}, T0).status


def test_a_pre_rollout_hook_is_called_while_the_pods_start_and_holds_the_first_step_until_it_passes():
    s = spec("PreRollout")
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    assert [c.hook.name for c in hooks.due(s, d.status, T0)] == ["prerollout"], "called before the pods are up"
    d = step(s, d.status, T0 + timedelta(seconds=1), passed=False)
    assert d.status.currentStep is None and "waits for PreRollout hooks: prerollout (HTTP 200, 1 failed)" in (
        d.status.message)  # fmt: skip
    assert hooks.due(s, d.status, T0 + timedelta(seconds=3)) == [], "not again before the interval"
    d = step(s, d.status, T0 + timedelta(seconds=7), passed=True)
    assert d.status.currentStep == 0 and d.status.canaryWeight == 50


def test_a_pre_rollout_hook_that_keeps_failing_rolls_the_candidate_back_before_any_traffic():
    s = spec("PreRollout", failure_limit=2)
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = step(s, d.status, T0 + timedelta(seconds=1), passed=False)
    d = step(s, d.status, T0 + timedelta(seconds=7), passed=False)
    assert d.status.phase == "RolledBack" and d.status.rollbackReason == "HookFailedPrerollout"
    assert all(a.routing.canary_weight == 0 for a in d.actions if isinstance(a, e.SetRouting))


def test_a_step_hook_must_pass_in_every_step():
    s = spec("Step")
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = step(s, d.status, T0 + timedelta(seconds=1))
    assert d.status.currentStep == 0
    d = step(s, d.status, T0 + timedelta(seconds=2), passed=False)
    d = step(s, d.status, T0 + timedelta(seconds=12), passed=True)  # stepDuration over, and now passed
    assert d.status.currentStep == 1, d.status.message
    assert [c.step for c in hooks.due(s, d.status, T0 + timedelta(seconds=12))] == [1], "called again in step 2"


def test_a_confirm_promotion_hook_holds_the_promotion_and_never_rolls_back():
    s = spec("ConfirmPromotion", failure_limit=1)
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = step(s, d.status, T0 + timedelta(seconds=1))
    d = step(s, d.status, T0 + timedelta(seconds=12))
    assert d.status.currentStep == 1
    d = step(s, d.status, T0 + timedelta(seconds=23))  # the last step is through: now it asks
    assert d.status.awaitingConfirmation and "waits for ConfirmPromotion hooks" in d.status.message
    for seconds in (29, 35, 41):  # refused again and again: it waits, whatever the failureLimit
        d = step(s, d.status, T0 + timedelta(seconds=seconds), passed=False)
        assert d.status.phase == "Progressing" and d.status.canaryRevision == "r2"
    d = step(s, d.status, T0 + timedelta(seconds=47), passed=True)
    assert d.status.stableRevision == "r2" and not d.status.awaitingConfirmation
    assert any(isinstance(a, e.Emit) and a.reason == "PromotionConfirmed" for a in d.actions)


def test_a_post_rollout_hook_is_told_once_after_the_promotion():
    s = spec("PostRollout", failure_limit=2)
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    assert hooks.due(s, d.status, T0) == [], "not during the rollout, nor for a first revision"
    d = step(s, d.status, T0 + timedelta(seconds=1))
    d = step(s, d.status, T0 + timedelta(seconds=12))
    d = step(s, d.status, T0 + timedelta(seconds=23))
    assert d.status.phase == "Succeeded"
    now = T0 + timedelta(seconds=24)
    assert [c.revision for c in hooks.due(s, d.status, now)] == ["r2"]
    d = step(s, d.status, now, passed=False)
    d = step(s, d.status, now + timedelta(seconds=6), passed=False)
    assert hooks.due(s, d.status, now + timedelta(seconds=60)) == [], "given up after failureLimit calls"
    assert d.status.phase == "Succeeded", "its result changes nothing"


def test_the_next_reconcile_comes_when_a_hook_falls_due():
    s = spec("PreRollout")
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = step(s, d.status, T0 + timedelta(seconds=1), passed=False)
    due = e.next_due(s, d.status, T0 + timedelta(seconds=1))
    assert due is not None and due <= T0 + timedelta(seconds=6)


@pytest.mark.parametrize(
    ("hooks_", "needle"),
    [
        ([{"name": "a", "type": "Step", "url": URL}, {"name": "a", "type": "PreRollout", "url": URL}], "unique"),
        ([{"name": "a", "type": "Step"}], "exactly one of url and urlFrom"),
        ([{"name": "a", "type": "Sometimes", "url": URL}], "PreRollout"),
    ],
)
def test_admission_refuses_misdeclared_hooks(hooks_, needle):
    with pytest.raises(ValidationError, match=needle):
        ModelDeploymentSpec.model_validate({**BASE, "hooks": hooks_})
