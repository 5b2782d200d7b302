"""How many pods the canary runs at each step (``strategy.canary.scaling``), tick by tick."""

from __future__ import annotations

from datetime import timedelta

from modelrollout import engine as e

from tests.unit.test_engine import T0, mkspec, ready, tick, weights_in


def proportional(**canary):
    steps = {"steps": [10, 50, 100], "stepDuration": "10s", "scaling": "Proportional", **canary}
    return mkspec(serving={"replicas": 4}, strategy={"canary": steps})


def canary_sizes(d: e.Decision, rev: str = "r2") -> list[int]:
    return [a.replicas for a in d.actions if isinstance(a, e.EnsureRevision) and a.revision == rev]


def stable(spec):
    d = tick(spec, e.ModelDeploymentStatus(), "r1", {}, T0)
    return tick(spec, d.status, "r1", {"r1": ready(4)}, T0).status


def test_full_scaling_runs_the_canary_at_full_size_from_its_first_step():
    spec = mkspec(serving={"replicas": 4})
    d = tick(spec, stable(spec), "r2", {"r1": ready(4)}, T0)
    assert canary_sizes(d) == [4]


def test_a_proportional_canary_gets_each_weight_only_with_the_pods_for_it():
    spec = proportional()
    d = tick(spec, stable(spec), "r2", {"r1": ready(4)}, T0)
    assert canary_sizes(d) == [1]  # 10 % of 4, rounded up
    now = T0 + timedelta(seconds=1)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(1)}, now)
    assert (d.status.currentStep, d.status.canaryWeight) == (0, 10)

    # Step 2 (50 %): two pods asked for; until they are available the one pod carries 25 %.
    now += timedelta(seconds=11)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(1)}, now)
    assert d.status.currentStep == 1 and canary_sizes(d)[-1] == 2 and d.status.canaryWeight == 25
    assert weights_in(d)[-1] == 25 and "once it has 2 available pods (now at 25%)" in d.status.message
    later = now + timedelta(seconds=30)  # the step's time is up, but its weight was never routed
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(1)}, later)
    assert (d.status.currentStep, d.status.canaryWeight) == (1, 25)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(2)}, later + timedelta(seconds=1))
    assert (d.status.currentStep, d.status.canaryWeight) == (1, 50)
    # The step's 10 s count at 50 %, from the moment the pods carried it.
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(2)}, later + timedelta(seconds=9))
    assert (d.status.currentStep, d.status.canaryWeight) == (1, 50)

    # Step 3 (100 %): full size first, then the whole weight, then promotion.
    now = later + timedelta(seconds=12)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(2)}, now)
    assert d.status.currentStep == 2 and canary_sizes(d)[-1] == 4 and d.status.canaryWeight == 50  # 2 of 4 pods
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(4)}, now + timedelta(seconds=1))
    assert d.status.canaryWeight == 100
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(4)}, now + timedelta(seconds=12))
    assert d.status.phase == "Succeeded" and d.status.stableRevision == "r2"


def test_a_proportional_canary_that_cannot_scale_up_is_rolled_back_at_the_deadline():
    spec = proportional()
    d = tick(spec, stable(spec), "r2", {"r1": ready(4)}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(1)}, T0)
    entered = T0 + timedelta(seconds=10)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(1)}, entered)
    assert (d.status.currentStep, d.status.canaryWeight) == (1, 25)
    deadline = entered + timedelta(seconds=spec.progressDeadlineSeconds)
    assert e.next_due(spec, d.status, entered) <= deadline
    held = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(1)}, deadline - timedelta(seconds=1)).status
    assert held.phase == "Progressing" and held.canaryWeight == 25
    d = tick(spec, held, "r2", {"r1": ready(4), "r2": ready(1)}, deadline)
    assert d.status.phase == "RolledBack" and d.status.rollbackReason == "ProgressDeadlineExceeded"
    assert "did not get 2 available pods for its 50% step" in d.status.message
    assert weights_in(d)[-1] == 0


def test_without_a_traffic_layer_the_share_of_pods_is_the_weight_whatever_scaling_says():
    spec = mkspec(
        serving={"replicas": 4},
        traffic={"none": {}},
        strategy={"canary": {"steps": [50, 100], "scaling": "Proportional"}},
    )
    d = tick(spec, stable(spec), "r2", {"r1": ready(4)}, T0)
    assert canary_sizes(d) == [2]
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(2)}, T0)
    assert d.status.canaryWeight == 50  # not held: the replica ratio is the weight


def test_a_proportional_canary_that_loses_pods_gives_back_their_share_and_its_step_restarts():
    spec = proportional(steps=[50, 100])
    d = tick(spec, stable(spec), "r2", {"r1": ready(4)}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(2)}, T0)
    now = T0 + timedelta(seconds=11)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(4)}, now)
    assert (d.status.currentStep, d.status.canaryWeight) == (1, 100)
    lost = now + timedelta(seconds=120)  # long after the step started: a loss now is no overdue scale-up
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(3)}, lost)
    assert d.status.phase == "Progressing" and d.status.canaryWeight == 75 and d.status.stepStartedAt == lost
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(3)}, lost + timedelta(seconds=30))
    assert d.status.phase == "Progressing" and d.status.canaryWeight == 75
    back = lost + timedelta(seconds=31)
    d = tick(spec, d.status, "r2", {"r1": ready(4), "r2": ready(4)}, back)
    assert d.status.canaryWeight == 100 and d.status.stepStartedAt == back


def autoscaled(**canary):
    steps = {"steps": [50, 100], "stepDuration": "10s", "scaling": "Proportional", **canary}
    return mkspec(
        serving={"replicas": 2, "autoscaling": {"minReplicas": 3, "maxReplicas": 8}}, strategy={"canary": steps}
    )


def test_with_autoscaling_the_stable_keeps_the_autoscalers_count_and_the_canary_is_sized_from_it():
    spec = autoscaled()
    d = tick(spec, e.ModelDeploymentStatus(), "r1", {}, T0)
    assert canary_sizes(d, "r1") == [3]  # created at minReplicas, not serving.replicas
    st = tick(spec, d.status, "r1", {"r1": ready(3)}, T0).status
    d = tick(spec, st, "r1", {"r1": ready(5)}, T0 + timedelta(seconds=1))  # the HPA scaled it to 5
    assert canary_sizes(d, "r1") in ([], [5])  # asked to keep what it has: the shell writes nothing
    d = tick(spec, d.status, "r2", {"r1": ready(5)}, T0 + timedelta(seconds=2))
    assert canary_sizes(d) == [3] and canary_sizes(d, "r1") == [5]  # 50 % of 5, rounded up
    d = tick(spec, d.status, "r2", {"r1": ready(5), "r2": ready(3)}, T0 + timedelta(seconds=3))
    assert d.status.canaryWeight == 50
    # The stable grew to 7 meanwhile: 3 canary pods now carry 42 % of it, and 7 are asked for the last step.
    d = tick(spec, d.status, "r2", {"r1": ready(7), "r2": ready(3)}, T0 + timedelta(seconds=14))
    assert d.status.currentStep == 0 and d.status.canaryWeight == 42 and canary_sizes(d)[-1] == 4
    d = tick(spec, d.status, "r2", {"r1": ready(7), "r2": ready(4)}, T0 + timedelta(seconds=15))
    assert d.status.canaryWeight == 50


def test_with_autoscaling_a_stable_at_zero_is_brought_back_to_min_replicas():
    """An HPA takes 0 replicas as "autoscaling off" and would never scale it up again."""
    spec = autoscaled()
    d = tick(spec, e.ModelDeploymentStatus(), "r1", {}, T0)
    st = tick(spec, d.status, "r1", {"r1": ready(3)}, T0).status
    d = tick(spec, st, "r1", {"r1": e.DeploymentState(replicas=0, updated=0, ready=0, available=0)}, T0)
    assert canary_sizes(d, "r1")[-1] == 3


def test_autoscaling_with_a_canary_needs_a_traffic_layer():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs a traffic layer"):
        mkspec(traffic={"none": {}}, serving={"autoscaling": {"maxReplicas": 4}})
    mkspec(traffic={"none": {}}, serving={"autoscaling": {"maxReplicas": 4}}, strategy={"blueGreen": {}})
