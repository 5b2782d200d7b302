"""Property tests: random worlds tick by tick, and invariants the engine must never break."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelrollout import engine as e
from modelrollout.api.types import (
    AnalysisResult,
    GateReason,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_spec(steps: list[int], gated: bool, no_mesh: bool | str, bake: str) -> ModelDeploymentSpec:
    """``no_mesh``: True (traffic.none), False (a traffic layer, Full canary) or "proportional" (a
    traffic layer, a Proportional canary)."""
    analysis = {"interval": "5s", "failureLimit": 2, "inconclusiveLimit": 3}
    if gated:
        analysis |= {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.1}]}
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "uri": "https://m/a.onnx"},
            "serving": {"replicas": 4},
            "traffic": {"none": {}} if no_mesh is True else {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "strategy": {
                "canary": {
                    "steps": steps,
                    "stepDuration": "10s",
                    "scaling": "Proportional" if no_mesh == "proportional" else "Full",
                }
            },
            "analysis": analysis,
            "bake": {"duration": bake},
            "progressDeadlineSeconds": 60,
        }
    )


LAYOUTS = st.sampled_from([True, False, "proportional"])  # make_spec's no_mesh
steps_strategy = st.lists(st.integers(1, 99), max_size=4, unique=True).map(lambda xs: [*sorted(xs), 100])

tick_strategy = st.fixed_dictionaries(
    {
        "advance": st.integers(0, 40),
        "canary_ready": st.sampled_from([False, True, True, 1, 2]),  # a count: that many of 4 available
        "verdict": st.sampled_from([None, "Pass", "Pass", "Fail", "Undecided", "Undecided", "Waiting", "Blind"]),
        "revision": st.sampled_from(["r2", "r2", "r2", "r3", "r1"]),
        "annotation": st.sampled_from([None, None, None, "promote", "abort", "retry"]),
    }
)


OUTCOMES = {
    "Pass": ("Pass", GateReason.PASSED),
    "Fail": ("Fail", GateReason.FAILED),
    "Undecided": ("Inconclusive", GateReason.UNDECIDED),
    "Waiting": ("Inconclusive", GateReason.INSUFFICIENT_SAMPLES),
    "Blind": ("Inconclusive", GateReason.QUERY_ERROR),
}
"""What a check can say, as (verdict, reason) of its one gate."""


def state(n: int, ready: bool | int) -> e.DeploymentState:
    up = (n if ready else 0) if isinstance(ready, bool) else ready
    return e.DeploymentState(replicas=n, updated=n, ready=up, available=up)


def run_world(spec: ModelDeploymentSpec, ticks: list[dict]):
    """Yield (before, decision, tick, observations, now) for a world that starts from a stable r1."""
    gated = bool(spec.analysis.metrics)
    status = ModelDeploymentStatus()
    now = T0
    deps = {"r1": state(4, True)}
    first = e.decide(spec, status, e.Observations(1, e.DesiredRevision("r1", spec.model, spec.serving), deps), now)
    status = first.status
    annotations: dict[str, str] = {}
    for i, t in enumerate(ticks):
        now += timedelta(seconds=t["advance"])
        for rev in ("r2", "r3"):
            deps[rev] = state(4, t["canary_ready"])
        if t["annotation"]:
            annotations[f"modelrollout.io/{t['annotation']}"] = f"v{i}"
        due = e.analysis_due(spec, status, now)
        analysis = None
        outcome = t["verdict"] if gated or t["verdict"] is None else "Pass"  # no gates: run_analysis passes
        if due and outcome:
            verdict, reason = OUTCOMES[outcome]
            analysis = AnalysisResult(
                time=now,
                revision=due,
                verdict=verdict,
                metrics=[MetricResult(name="error-rate", verdict=verdict, reason=reason, value=0.0)],
            )
        obs = e.Observations(
            1, e.DesiredRevision(t["revision"], spec.model, spec.serving), dict(deps), dict(annotations), analysis
        )
        decision = e.decide(spec, status, obs, now)
        yield status, decision, t, obs, now
        status = decision.status


COMMON = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(steps_strategy, st.booleans(), LAYOUTS, st.sampled_from(["0s", "20s"]), st.lists(tick_strategy, max_size=40))
def test_invariants(steps, gated, no_mesh, bake, ticks):
    spec = make_spec(steps, gated, no_mesh, bake)
    for before, decision, _tick, obs, _now in run_world(spec, ticks):
        after = decision.status
        # The weight is always 0 or the weight of the current step, never more; a Proportional
        # canary short of pods for its step takes the part its pods carry.
        if after.currentStep is None:
            assert after.canaryWeight == 0
        elif no_mesh == "proportional":
            assert 0 <= after.canaryWeight <= steps[after.currentStep]
        else:
            assert after.canaryWeight in (0, steps[after.currentStep])
        # A failed check never increases the weight.
        if (
            obs.analysis is not None
            and obs.analysis.verdict == "Fail"
            and before.canaryRevision == after.canaryRevision
        ):
            assert after.canaryWeight <= before.canaryWeight
        # No traffic to a canary that is not Ready; a Proportional one gets a weight only with the
        # pods for it (its share of the 4 replicas, rounded up).
        for action in decision.actions:
            if isinstance(action, e.SetRouting) and action.routing.canary_weight > 0:
                canary = after.canaryRevision or before.canaryRevision
                assert canary is not None and obs.deployments[canary].available > 0
                if no_mesh == "proportional":
                    need = -(-4 * action.routing.canary_weight // 100)
                    assert obs.deployments[canary].available >= need, (action, obs.deployments[canary])
        # Every rollback ends at 100 % stable and routes away before scaling the canary down; with a
        # traffic layer a canary that took traffic keeps its pods until scaleDownDelay has passed.
        if after.phase == "RolledBack" and before.phase != "RolledBack" and before.canaryRevision:
            assert after.canaryWeight == 0 and after.canaryRevision is None
            kinds = decision.actions
            weight_at = next(
                i for i, a in enumerate(kinds) if isinstance(a, e.SetRouting) and a.routing.canary_weight == 0
            )
            scaled = [i for i, a in enumerate(kinds) if a == e.EnsureRevision(before.canaryRevision, 0)]
            retiring = [r.revision for r in after.retiring]
            assert (scaled and weight_at < scaled[0]) != (before.canaryRevision in retiring)
            if before.canaryRevision in retiring:  # only one that took traffic, behind a traffic layer
                assert no_mesh is not True and before.currentStep is not None
        # A step is left (to the next or to promotion) only after a check that allows it: the proof
        # step (the last below 100 %) on a Pass, any other on no failure with every gate decided or
        # undecided but never waiting for samples or blind; promotion only from the last step.
        promoted = before.canaryRevision and after.stableRevision == before.canaryRevision
        advanced = (
            before.currentStep is not None
            and after.canaryRevision == before.canaryRevision
            and (after.currentStep or 0) > before.currentStep
        )
        by_hand = any(isinstance(a, e.Emit) and a.reason == "PromotedManually" for a in decision.actions)
        if (promoted or advanced) and not by_hand:
            if promoted:
                assert before.currentStep == len(steps) - 1
            if gated:
                last = after.lastAnalysis
                assert last is not None and last.revision == before.canaryRevision
                if before.currentStep == e.proof_step(steps):
                    assert last.verdict == "Pass"
                else:
                    assert all(m.reason in (GateReason.PASSED, GateReason.UNDECIDED) for m in last.metrics)
        # A revision that failed is never the canary again without a retry or a new spec.
        if after.canaryRevision and after.canaryRevision in before.failedRevisions:
            assert after.canaryRevision not in after.failedRevisions


@COMMON
@given(steps_strategy, st.lists(tick_strategy, max_size=30))
def test_same_inputs_same_outputs(steps, ticks):
    spec = make_spec(steps, True, False, "0s")
    first = [(d.status, d.actions) for _, d, _, _, _ in run_world(spec, ticks)]
    second = [(d.status, d.actions) for _, d, _, _, _ in run_world(spec, ticks)]
    assert first == second


def _decided(status: ModelDeploymentStatus) -> tuple:
    """What a decision is about (not its wording or timestamps)."""
    return (
        status.phase,
        status.stableRevision,
        status.canaryRevision,
        status.currentStep,
        status.canaryWeight,
        status.previousStableRevision,
        tuple(status.failedRevisions),
        status.failedChecks,
        status.watchSince,
    )


@COMMON
@given(
    steps_strategy,
    st.booleans(),
    LAYOUTS,
    st.sampled_from(["0s", "20s"]),
    st.lists(tick_strategy, max_size=40),
    st.floats(0.0, 0.999),
)
def test_nothing_is_decided_before_next_due(steps, gated, no_mesh, bake, ticks, fraction):
    """The operator reconciles an object again only at ``engine.next_due`` (or on a watch event):
    with the same observations, a decision at any moment before it is the decision made now, and no
    check falls due before it. Otherwise a step, a bake, a deadline or a check would wait for the
    resync period."""
    spec = make_spec(steps, gated, no_mesh, bake)
    for _before, decision, _tick, obs, now in run_world(spec, ticks):
        after = decision.status
        due = e.next_due(spec, after, now)
        later = now + (due - now) * fraction if due is not None else now + timedelta(days=fraction)
        if due is not None:
            assert due > now
        if e.analysis_due(spec, after, now) is not None:  # this world skipped a check that was due
            assert due is not None and due - now <= timedelta(milliseconds=1)
            continue
        quiet = e.Observations(obs.generation, obs.desired, obs.deployments, obs.annotations)
        assert e.analysis_due(spec, after, later) is None, (after.phase, due, later)
        assert _decided(e.decide(spec, after, quiet, later).status) == _decided(
            e.decide(spec, after, quiet, now).status
        ), (after.phase, after.currentStep, now, due, later)
