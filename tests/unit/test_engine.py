"""The engine as a pure function: scenarios tick by tick, no cluster."""

from datetime import UTC, datetime, timedelta

from modelrollout import engine as e
from modelrollout.api.types import AnalysisResult, MetricResult, ModelDeploymentSpec, ModelDeploymentStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = {
    "model": {"name": "fraud", "uri": "https://m/a.onnx"},
    "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    "serving": {"replicas": 2},
    "strategy": {"canary": {"steps": [10, 50, 100], "stepDuration": "10s"}},
    "progressDeadlineSeconds": 60,
    "bake": {"duration": "0s"},
}


def mkspec(**over) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({**BASE, **over})


def desired(spec: ModelDeploymentSpec, rev: str) -> e.DesiredRevision:
    return e.DesiredRevision(rev, spec.model, spec.serving)


def ready(n: int = 2) -> e.DeploymentState:
    return e.DeploymentState(replicas=n, updated=n, ready=n, available=n)


def unready(n: int = 2) -> e.DeploymentState:
    return e.DeploymentState(replicas=n, updated=n, ready=0, available=0)


def tick(spec, status, rev, deps, now, analysis=None, annotations=None, generation=1):
    obs = e.Observations(generation, desired(spec, rev), deps, annotations or {}, analysis)
    return e.decide(spec, status, obs, now)


def weights_in(d: e.Decision) -> list[int]:
    return [a.routing.canary_weight for a in d.actions if isinstance(a, e.SetRouting)]


def cond(status: ModelDeploymentStatus, type_: str):
    return next(c for c in status.conditions if c.type == type_)


def result(verdict: str, now, rev="r2") -> AnalysisResult:
    return AnalysisResult(
        time=now,
        revision=rev,
        verdict=verdict,
        metrics=[MetricResult(name="error-rate", verdict=verdict, value=0.5)],
    )


def test_first_revision_becomes_stable_when_available():
    spec = mkspec()
    d = tick(spec, ModelDeploymentStatus(), "r1", {}, T0)
    assert d.status.phase == "Initializing" and d.status.stableRevision is None
    assert e.EnsureRevision("r1", 2) in d.actions
    assert any(isinstance(a, e.Emit) and a.reason == "RevisionCreated" for a in d.actions)
    d = tick(spec, d.status, "r1", {"r1": ready()}, T0 + timedelta(seconds=5))
    assert d.status.phase == "Succeeded" and d.status.stableRevision == "r1"
    assert e.PointService("stable", "r1") in d.actions
    assert cond(d.status, "Ready").status == "True"
    assert d.status.history[0].phase == "Succeeded"


def canary_service_points(d: e.Decision) -> list[str]:
    return [a.revision for a in d.actions if isinstance(a, e.PointService) and a.role == "canary"]


def test_the_canary_service_lives_as_long_as_the_object_and_selects_stable_between_rollouts():
    """Created with the first revision, moved (never deleted) by each rollout: a rollout costs a
    selector patch instead of a cluster IP allocated and freed."""
    spec = mkspec()
    d = tick(spec, ModelDeploymentStatus(), "r1", {}, T0)
    d = tick(spec, d.status, "r1", {"r1": ready()}, T0 + timedelta(seconds=5))
    assert canary_service_points(d) == ["r1"]
    steady = tick(spec, d.status, "r1", {"r1": ready()}, T0 + timedelta(seconds=10))
    assert canary_service_points(steady) == ["r1"], "kept (and created if an older operator deleted it)"
    d = tick(spec, steady.status, "r2", {"r1": ready()}, T0 + timedelta(seconds=11))
    assert canary_service_points(d) == ["r2"]
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=12))
    rolled_back = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=25),
                       analysis=result("Fail", T0 + timedelta(seconds=25)))  # fmt: skip
    assert rolled_back.status.phase == "RolledBack"
    assert canary_service_points(rolled_back)[-1] == "r1", "back to stable once the canary has no share"
    routed_off = next(i for i, a in enumerate(rolled_back.actions) if isinstance(a, e.SetRouting))
    moved = rolled_back.actions.index(e.PointService("canary", "r1"))
    assert rolled_back.actions[routed_off].routing.canary_weight == 0 and routed_off < moved, "weights first"


def test_only_a_new_canary_with_nothing_else_to_undo_may_be_recorded_before_its_actions():
    """record_first: every action of that decision is asked for again by the next decision made
    from its status, so a crash between the status write and the actions loses nothing."""
    spec = mkspec()
    steady = stable_status(spec)
    start = tick(spec, steady, "r2", {"r1": ready()}, T0)
    assert start.record_first and start.status.canaryRevision == "r2"
    again = tick(spec, start.status, "r2", {"r1": ready()}, T0 + timedelta(seconds=1))  # crashed before the actions
    assert e.EnsureRevision("r2", 2) in again.actions and not again.record_first
    assert [a for a in again.actions if isinstance(a, e.PointService)] == [
        a for a in start.actions if isinstance(a, e.PointService)
    ]
    superseding = tick(spec, start.status, "r3", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=2))
    assert superseding.status.canaryRevision == "r3" and not superseding.record_first, "it also ends r2's canary"
    switched = mkspec(traffic={"istio": {"hosts": ["fraud"]}})
    steady_switched = steady.model_copy(update={"routesProvider": "gatewayAPI"})
    moved = tick(switched, steady_switched, "r2", {"r1": ready()}, T0)
    assert any(isinstance(a, e.PruneRoutes) for a in moved.actions) and not moved.record_first
    assert not tick(spec, steady, "r1", {"r1": ready()}, T0).record_first


def test_first_revision_progress_deadline_degrades_once_and_recovers():
    spec = mkspec()
    d = tick(spec, ModelDeploymentStatus(), "r1", {}, T0)
    d = tick(spec, d.status, "r1", {"r1": unready()}, T0 + timedelta(seconds=61))
    assert d.status.phase == "Failed"
    assert cond(d.status, "Degraded").status == "True"
    assert cond(d.status, "Degraded").reason == "ProgressDeadlineExceeded"
    assert d.transition == e.Transition("Initializing", "Failed", "ProgressDeadlineExceeded", T0)
    again = tick(spec, d.status, "r1", {"r1": unready()}, T0 + timedelta(seconds=90))
    assert again.transition is None
    assert not [a for a in again.actions if isinstance(a, e.Emit) and a.reason == "ProgressDeadlineExceeded"]
    assert again.status == d.status
    healed = tick(spec, again.status, "r1", {"r1": ready()}, T0 + timedelta(seconds=95))
    assert healed.status.phase == "Succeeded" and cond(healed.status, "Degraded").status == "False"


def test_steady_state_is_a_fixed_point():
    spec = mkspec()
    d = tick(spec, ModelDeploymentStatus(), "r1", {}, T0)
    d = tick(spec, d.status, "r1", {"r1": ready()}, T0)
    again = tick(spec, d.status, "r1", {"r1": ready()}, T0 + timedelta(hours=1))
    assert again.status == d.status
    assert not [a for a in again.actions if isinstance(a, e.Emit)]


def stable_status(spec) -> ModelDeploymentStatus:
    d = tick(spec, ModelDeploymentStatus(), "r1", {}, T0)
    return tick(spec, d.status, "r1", {"r1": ready()}, T0).status


def test_canary_gets_no_traffic_until_ready_then_walks_the_steps():
    spec = mkspec()
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    assert d.status.phase == "Progressing" and d.status.canaryRevision == "r2" and d.status.canaryWeight == 0
    assert weights_in(d) == [0]
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=1))
    assert d.status.canaryWeight == 0
    now = T0 + timedelta(seconds=2)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, now)
    assert d.status.canaryWeight == 10 and d.status.currentStep == 0
    weights = [10]
    for _ in range(6):
        now += timedelta(seconds=11)
        d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, now)
        weights.append(d.status.canaryWeight)
    assert weights[:3] == [10, 50, 100]
    assert d.status.phase == "Succeeded" and d.status.stableRevision == "r2" and d.status.canaryRevision is None


def test_failed_gate_rolls_back_weights_first_and_is_not_retried():
    spec = mkspec(
        analysis={"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.1}]}
    )
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert d.status.canaryWeight == 10
    now = T0 + timedelta(seconds=40)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Fail", now))
    assert d.status.phase == "RolledBack" and d.status.canaryWeight == 0 and d.status.stableRevision == "r1"
    # Weights first; the canary keeps its pods for scaleDownDelay (30s) while proxies catch up.
    assert e.EnsureRevision("r2", 0) not in d.actions
    assert [(r.revision, r.scaleDownAt) for r in d.status.retiring] == [("r2", now + timedelta(seconds=30))]
    assert e.next_due(spec, d.status, now) == now + timedelta(seconds=30)
    held = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, now + timedelta(seconds=29))
    assert not any(isinstance(a, e.EnsureRevision) and a.revision == "r2" for a in held.actions)
    d = tick(spec, held.status, "r2", {"r1": ready(), "r2": ready()}, now + timedelta(seconds=30))
    assert e.EnsureRevision("r2", 0) in d.actions and d.status.retiring == []
    assert "r2" in d.status.failedRevisions
    assert cond(d.status, "Degraded").status == "True" and "ErrorRate" in cond(d.status, "Degraded").reason
    later = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready(0)}, now + timedelta(minutes=5))
    assert later.status.canaryRevision is None and later.status.phase == "RolledBack"
    retried = tick(spec, later.status, "r2", {"r1": ready()}, now + timedelta(minutes=6),
                   annotations={"modelrollout.io/retry": "t1"})  # fmt: skip
    assert retried.status.canaryRevision == "r2" and retried.status.phase == "Progressing"


def test_inconclusive_holds_then_fails_safe():
    spec = mkspec(
        analysis={"inconclusiveLimit": 2, "prometheus": {"address": "http://p:9090"},
                  "metrics": [{"name": "error-rate", "max": 0.1}]}
    )  # fmt: skip
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0)
    now = T0 + timedelta(seconds=30)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Inconclusive", now))
    assert d.status.canaryWeight == 10 and d.status.phase == "Progressing"
    now += timedelta(seconds=30)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Inconclusive", now))
    assert d.status.phase == "RolledBack" and cond(d.status, "Degraded").reason == "InconclusiveLimitReached"


def test_new_spec_mid_rollout_supersedes_the_canary():
    spec = mkspec()
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0)
    d = tick(spec, d.status, "r3", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert d.status.canaryRevision == "r3" and d.status.canaryWeight == 0
    assert [r.revision for r in d.status.retiring] == ["r2"] and e.EnsureRevision("r2", 0) not in d.actions
    assert next(h for h in d.status.history if h.revision == "r2").phase == "Superseded"


def test_spec_back_to_stable_abandons_the_canary_and_points_its_service_at_stable():
    spec = mkspec()
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0)
    d = tick(spec, d.status, "r1", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert d.status.phase == "Succeeded" and d.status.canaryRevision is None and d.status.canaryWeight == 0
    assert e.PointService("canary", "r1") in d.actions and [r.revision for r in d.status.retiring] == ["r2"]
    d = tick(spec, d.status, "r1", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=31))
    assert e.EnsureRevision("r2", 0) in d.actions and d.status.retiring == []


def test_canary_progress_deadline_rolls_back():
    spec = mkspec()
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=61))
    assert d.status.phase == "RolledBack" and cond(d.status, "Degraded").reason == "ProgressDeadlineExceeded"


def test_bake_failure_reverts_to_the_warm_previous_revision():
    spec = mkspec(
        bake={"duration": "5m"},
        analysis={
            "prometheus": {"address": "http://p:9090"},
            "metrics": [{"name": "error-rate", "max": 0.1}],
        },
    )
    st = stable_status(spec)
    deps = {"r1": ready(), "r2": ready()}
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    now = T0
    d = tick(spec, d.status, "r2", deps, now)
    for _ in range(3):
        now += timedelta(seconds=31)
        d = tick(spec, d.status, "r2", deps, now, analysis=result("Pass", now))
    assert d.status.phase == "Baking" and d.status.stableRevision == "r2" and d.status.previousStableRevision == "r1"
    assert e.EnsureRevision("r1", 2) in d.actions
    now += timedelta(seconds=31)
    d = tick(spec, d.status, "r2", deps, now, analysis=result("Fail", now))
    assert d.status.phase == "RolledBack" and d.status.stableRevision == "r1"
    assert e.PointService("stable", "r1") in d.actions and "r2" in d.status.failedRevisions


def test_prune_keeps_revision_history_limit():
    spec = mkspec(revisionHistoryLimit=1)
    st = stable_status(spec)
    now = T0
    for rev in ("r2", "r3", "r4"):
        d = tick(spec, st, rev, {"r1": ready()}, now)
        d = tick(spec, d.status, rev, {"r1": ready(), rev: ready()}, now)
        for _ in range(4):
            now += timedelta(seconds=11)
            d = tick(spec, d.status, rev, {"r1": ready(), rev: ready()}, now)
        st = d.status
    assert st.stableRevision == "r4"
    # r3 still has its pods for scaleDownDelay after r4's promotion, so it is not counted yet.
    assert [h.revision for h in st.history] == ["r2", "r3", "r4"] and [r.revision for r in st.retiring] == ["r3"]
    d = tick(spec, st, "r4", {"r1": ready(), "r4": ready()}, now + timedelta(seconds=31))
    assert [h.revision for h in d.status.history] == ["r3", "r4"] and e.DeleteRevision("r2") in d.actions


def test_canary_losing_its_pods_gets_no_traffic_then_recovers_or_rolls_back():
    spec = mkspec()
    st = stable_status(spec)
    d = tick(spec, st, "r2", {"r1": ready()}, T0)
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0)
    assert d.status.canaryWeight == 10
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=5))
    assert d.status.canaryWeight == 0 and weights_in(d) == [0] and d.status.phase == "Progressing"
    back = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=20))
    assert back.status.canaryWeight == 10 and back.status.stepStartedAt == T0 + timedelta(seconds=20)
    gone = tick(spec, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=70))
    assert gone.status.phase == "RolledBack" and cond(gone.status, "Degraded").reason == "ProgressDeadlineExceeded"


def gate_result(now, reason: str, rev: str = "r2", message: str = "") -> AnalysisResult:
    verdict = {"Passed": "Pass", "Failed": "Fail"}.get(reason, "Inconclusive")
    return AnalysisResult(
        time=now,
        revision=rev,
        verdict=verdict,
        metrics=[MetricResult(name="accuracy", verdict=verdict, reason=reason, value=0.9, message=message)],
    )


def gated_spec(**canary) -> ModelDeploymentSpec:
    return mkspec(
        strategy={"canary": {"steps": [10, 50, 100], "stepDuration": "10s", **canary}},
        analysis={"interval": "10s", "prometheus": {"address": "http://p:9090"},
                  "metrics": [{"name": "accuracy", "maxDropVsStable": 0.02}]},
    )  # fmt: skip


def at_first_step(spec):
    d = tick(spec, stable_status(spec), "r2", {"r1": ready()}, T0)
    return tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0)


BOTH = {"r1": ready(), "r2": ready()}


def test_evidence_counts_from_the_canarys_first_traffic_through_the_bake():
    spec = gated_spec()
    d = at_first_step(spec)
    assert d.status.currentStep == 0 and d.status.evidenceSince == T0
    now = T0 + timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Undecided"))
    assert d.status.currentStep == 1 and d.status.evidenceSince == T0  # a later step keeps the evidence


def test_waiting_for_evidence_holds_without_counting_and_says_why():
    spec = gated_spec()
    d = at_first_step(spec)
    now = T0
    for _ in range(12):  # far beyond inconclusiveLimit (5): waiting is not blindness
        now += timedelta(seconds=10)
        check = gate_result(now, "InsufficientSamples", message="waiting for samples: minSamples 100")
        d = tick(spec, d.status, "r2", BOTH, now, analysis=check)
    assert d.status.phase == "Progressing" and d.status.currentStep == 0 and d.status.canaryWeight == 10
    assert d.status.inconclusiveChecks == 0
    assert "step 1/3 at 10% waiting for evidence" in d.status.message
    assert "accuracy InsufficientSamples: waiting for samples: minSamples 100" in d.status.message
    assert cond(d.status, "Progressing").reason == "InsufficientTraffic"


def test_undecided_gates_let_early_steps_advance_but_the_proof_step_needs_a_pass():
    spec = gated_spec()
    assert e.proof_step([10, 50, 100]) == 1 and e.proof_step([100]) == 0 and e.proof_step([5, 99, 100]) == 1
    d = at_first_step(spec)
    now = T0 + timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Undecided"))
    assert d.status.currentStep == 1  # 10 % -> 50 %: nothing failed, samples are there
    for _ in range(3):
        now += timedelta(seconds=10)
        d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Undecided", message="drop: undecided"))
        assert d.status.currentStep == 1  # 50 % is the proof step: undecided holds
    assert cond(d.status, "Progressing").reason == "WaitingForEvidence"
    now += timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Passed"))
    assert d.status.currentStep == 2 and d.status.canaryWeight == 100
    now += timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Undecided"))
    assert d.status.stableRevision == "r2"  # the 100 % step needs no new proof, only no failure


def test_a_step_undecided_at_max_step_duration_rolls_back_with_a_distinct_reason():
    for reason, expected in (("InsufficientSamples", "InsufficientTraffic"), ("Undecided", "Undecided")):
        spec = gated_spec(maxStepDuration="60s")
        d = at_first_step(spec)
        now = T0
        while d.status.phase == "Progressing" and now < T0 + timedelta(minutes=5):
            now += timedelta(seconds=10)
            said = reason if now > T0 + timedelta(seconds=10) else "Undecided"  # past the first step first
            d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, said))
        assert d.status.phase == "RolledBack" and d.status.rollbackReason == expected
        assert now - T0 <= timedelta(seconds=80)
        assert cond(d.status, "Degraded").reason == expected
        assert "not decided within 60s" in d.status.message


def test_blind_checks_count_toward_the_fail_safe():
    spec = gated_spec()
    d = at_first_step(spec)
    now = T0
    for _ in range(5):
        now += timedelta(seconds=10)
        d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "QueryError"))
    assert d.status.phase == "RolledBack" and d.status.rollbackReason == "InconclusiveLimitReached"
    assert "5 blind checks in a row (accuracy)" in d.status.message


def test_max_step_duration_must_cover_step_duration():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="maxStepDuration must be at least stepDuration"):
        gated_spec(stepDuration="10m", maxStepDuration="5m")


def watched_spec(revert: bool) -> ModelDeploymentSpec:
    return mkspec(
        analysis={"interval": "10s", "prometheus": {"address": "http://p:9090"},
                  "metrics": [{"name": "accuracy", "min": 0.8}],
                  "continuous": {"window": "5m", "revert": revert}},
    )  # fmt: skip


def promoted(spec) -> tuple[e.Decision, datetime]:
    """r1 was stable, r2 was promoted and has finished its (zero-length) bake; and the time."""
    d = at_first_step(spec)
    now = T0
    while d.status.stableRevision != "r2":
        now += timedelta(seconds=10)
        d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Passed"))
    assert d.status.phase == "Succeeded"
    return d, now


def test_no_watch_after_bake_unless_asked():
    spec = gated_spec()
    d, _ = promoted(spec)
    assert e.analysis_due(spec, d.status, T0 + timedelta(hours=1)) is None


def test_the_continuous_watch_degrades_on_failure_and_recovers_on_evidence():
    spec = watched_spec(revert=False)
    d, now = promoted(spec)
    now += timedelta(seconds=10)
    assert e.analysis_due(spec, d.status, now) == "r2"
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Failed"))
    assert d.status.watchFailure == "WatchFailedAccuracy" and d.status.stableRevision == "r2"
    assert cond(d.status, "Degraded").status == "True" and cond(d.status, "Degraded").reason == "WatchFailedAccuracy"
    assert any(isinstance(a, e.Emit) and a.reason == "WatchFailedAccuracy" for a in d.actions)
    now += timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Undecided"))
    assert d.status.watchFailure == "WatchFailedAccuracy"  # only evidence of health clears it
    now += timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Passed"))
    assert d.status.watchFailure is None and cond(d.status, "Degraded").status == "False"


def test_the_watch_reverts_to_the_previous_revision_once_it_is_up_when_asked():
    spec = watched_spec(revert=True)
    d, now = promoted(spec)
    now += timedelta(seconds=10)
    down = {"r1": unready(), "r2": ready()}
    d = tick(spec, d.status, "r2", down, now, analysis=gate_result(now, "Failed"))
    assert e.EnsureRevision("r1", 2) in d.actions and d.status.stableRevision == "r2"  # r2 serves meanwhile
    assert "reverting to r1 once it is available" in d.status.message
    now += timedelta(seconds=5)
    d = tick(spec, d.status, "r2", BOTH, now)
    assert d.status.stableRevision == "r1" and d.status.phase == "RolledBack"
    assert "r2" in d.status.failedRevisions and d.status.rollbackReason == "WatchFailedAccuracy"
    assert e.PointService("stable", "r1") in d.actions and e.EnsureRevision("r2", 0) not in d.actions
    assert [r.revision for r in d.status.retiring] == ["r2"]  # it had all the traffic until now


def test_the_first_check_of_an_evidence_period_waits_one_interval():
    spec = gated_spec()  # interval 10s
    d = at_first_step(spec)  # the canary took its first traffic at T0
    assert e.analysis_due(spec, d.status, T0) is None  # nothing to count yet
    assert e.analysis_due(spec, d.status, T0 + timedelta(seconds=9)) is None
    assert e.analysis_due(spec, d.status, T0 + timedelta(seconds=10)) == "r2"


def test_other_providers_routes_are_pruned_once_after_the_new_routes_and_on_a_switch():
    spec = mkspec()
    st = stable_status(spec)  # the first stable decision prunes (a status from before the field, too)
    assert st.routesProvider == "gatewayAPI"
    d = tick(spec, st, "r2", {"r1": ready()}, T0, generation=2)  # a new model, same provider
    assert not [a for a in d.actions if isinstance(a, e.PruneRoutes)]
    istio = mkspec(traffic={"istio": {"hosts": ["fraud.ml.svc.cluster.local"]}})
    switched = tick(istio, st, "r1", {"r1": ready()}, T0, generation=3)
    kinds = [type(a).__name__ for a in switched.actions]
    assert kinds.count("PruneRoutes") == 1 and kinds.index("SetRouting") < kinds.index("PruneRoutes"), kinds
    assert switched.status.routesProvider == "istio"
    again = tick(istio, switched.status, "r1", {"r1": ready()}, T0 + timedelta(seconds=5), generation=3)
    assert not [a for a in again.actions if isinstance(a, e.PruneRoutes)]
