"""The engine and the contract check: a canary that breaks stable's signature never takes traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from modelrollout import engine as e
from modelrollout.api.types import ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.contract import Compatible, Incompatible, Unknown

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MISMATCH = Incompatible(
    ("input 'input': FP32 [-1,5] on stable, FP32 [-1,4] on canary", "feature 'channel' missing on canary")
)


def mkspec(allow: bool = False, deadline: int = 60) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "fraud", "uri": "https://m/a.onnx"},
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "serving": {"replicas": 2},
            "strategy": {"canary": {"steps": [10, 50, 100], "stepDuration": "10s", "allowSignatureChange": allow}},
            "progressDeadlineSeconds": deadline,
            "bake": {"duration": "0s"},
        }
    )


def ready(n: int = 2) -> e.DeploymentState:
    return e.DeploymentState(replicas=n, updated=n, ready=n, available=n)


def unready(n: int = 2) -> e.DeploymentState:
    return e.DeploymentState(replicas=n, updated=n, ready=0, available=0)


def tick(spec, status, rev, deps, now, contract=None) -> e.Decision:
    obs = e.Observations(1, e.DesiredRevision(rev, spec.model, spec.serving), deps, {}, None, contract)
    return e.decide(spec, status, obs, now)


def stable_status(spec) -> ModelDeploymentStatus:
    d = tick(spec, ModelDeploymentStatus(), "r1", {}, T0)
    return tick(spec, d.status, "r1", {"r1": ready()}, T0).status


def canary_started(spec) -> ModelDeploymentStatus:
    return tick(spec, stable_status(spec), "r2", {"r1": ready()}, T0).status


def weights(d: e.Decision) -> list[int]:
    return [a.routing.canary_weight for a in d.actions if isinstance(a, e.SetRouting)]


def events(d: e.Decision, reason: str) -> list[e.Emit]:
    return [a for a in d.actions if isinstance(a, e.Emit) and a.reason == reason]


def cond(status: ModelDeploymentStatus, type_: str):
    return next(c for c in status.conditions if c.type == type_)


def assert_refused(d: e.Decision) -> None:
    assert d.status.phase == "RolledBack" and d.status.rollbackReason == "ContractMismatch"
    assert "r2" in d.status.failedRevisions and d.status.canaryRevision is None
    assert set(weights(d)) == {0}, "never any traffic"
    degraded = cond(d.status, "Degraded")
    assert degraded.status == "True" and degraded.reason == "ContractMismatch"
    for text in (d.status.message, degraded.message, events(d, "RolledBack")[0].message):
        assert "input 'input': FP32 [-1,5] on stable, FP32 [-1,4] on canary" in text
        assert "feature 'channel' missing on canary" in text
    assert e.EnsureRevision("r2", 0) in d.actions


def test_an_incompatible_canary_is_rolled_back_before_any_traffic() -> None:
    spec = mkspec()
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=5), MISMATCH)
    assert_refused(d)
    again = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=10), MISMATCH)
    assert again.status.phase == "RolledBack" and not events(again, "RolledBack"), "a failed revision stays failed"


def test_an_incompatible_canary_is_refused_even_before_all_its_pods_are_ready() -> None:
    spec = mkspec()
    partly = e.DeploymentState(replicas=2, updated=2, ready=1, available=1)
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": partly}, T0 + timedelta(seconds=5), MISMATCH)
    assert_refused(d)


def test_unknown_holds_step_zero_with_the_reason_then_a_compatible_canary_proceeds() -> None:
    spec = mkspec()
    status = canary_started(spec)
    deps = {"r1": ready(), "r2": ready()}
    why = Unknown("no modelserver_model_signature_info from canary r2 yet (its pods have not been scraped)")
    for s in (5, 10, 30):
        d = tick(spec, status, "r2", deps, T0 + timedelta(seconds=s), why)
        assert d.status.currentStep is None and set(weights(d)) == {0}
        assert d.status.phase == "Progressing"
        assert "holding until its signature can be compared" in d.status.message and why.reason in d.status.message
        assert cond(d.status, "Progressing").message == d.status.message
        status = d.status
    d = tick(spec, status, "r2", deps, T0 + timedelta(seconds=35), Compatible())
    assert d.status.currentStep == 0 and weights(d)[-1] == 10


def test_unknown_past_the_progress_deadline_rolls_back_as_unverified() -> None:
    spec = mkspec(deadline=60)
    status = canary_started(spec)
    deps = {"r1": ready(), "r2": ready()}
    why = Unknown("Prometheus did not answer the signature query: Prometheus at http://p:9090 is unreachable")
    d = tick(spec, status, "r2", deps, T0 + timedelta(seconds=59.999), why)
    assert d.status.currentStep is None and d.status.phase == "Progressing"
    d = tick(spec, d.status, "r2", deps, T0 + timedelta(seconds=60), why)  # a deadline passes at its moment
    assert d.status.phase == "RolledBack" and d.status.rollbackReason == "ContractUnverified"
    assert "within progressDeadlineSeconds=60" in d.status.message and why.reason in d.status.message
    assert set(weights(d)) == {0}


def test_an_allowed_signature_change_proceeds_and_says_what_changed() -> None:
    spec = mkspec(allow=True)
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=5), MISMATCH)
    assert d.status.currentStep == 0 and d.status.canaryWeight == 10
    (note,) = events(d, "SignatureChangeAllowed")
    assert note.type == "Normal" and "feature 'channel' missing on canary" in note.message
    later = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=6), MISMATCH)
    assert not events(later, "SignatureChangeAllowed"), "said once, at the first step"


def test_an_allowed_change_does_not_wait_for_an_unknown_signature() -> None:
    spec = mkspec(allow=True)
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=5),
             Unknown("not scraped"))  # fmt: skip
    assert d.status.currentStep == 0


def test_a_skipped_comparison_proceeds_with_a_note() -> None:
    spec = mkspec()
    skipped = Compatible(note="stable revision r1 exports no modelserver_model_signature_info")
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=5), skipped)
    assert d.status.currentStep == 0
    (note,) = events(d, "SignatureNotCompared")
    assert note.type == "Normal" and skipped.note in note.message


def test_no_observation_changes_nothing() -> None:
    """No Prometheus, or no ready canary pod yet: the shell checks nothing and the engine goes on."""
    spec = mkspec()
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=5))
    assert d.status.currentStep is None
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=6))
    assert d.status.currentStep == 0


def test_once_the_canary_takes_traffic_the_contract_is_not_consulted() -> None:
    spec = mkspec()
    d = tick(spec, canary_started(spec), "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=5), Compatible())
    assert d.status.currentStep == 0
    d = tick(spec, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=6), MISMATCH)
    assert d.status.phase == "Progressing" and d.status.currentStep == 0


OUTCOMES = st.sampled_from([None, Compatible(), Compatible(note="skipped"), Unknown("not yet"), MISMATCH])


@settings(max_examples=200, deadline=None)
@given(
    allow=st.booleans(),
    ticks=st.lists(st.tuples(st.integers(0, 30), st.booleans(), OUTCOMES), min_size=1, max_size=12),
)
def test_without_allow_an_incompatible_canary_never_gets_traffic(allow: bool, ticks: list) -> None:
    """Whatever the order of readiness and observations: a mismatch seen before the first step means
    no traffic, ever, unless allowed; an unknown signature never lets a ready canary start."""
    spec = mkspec(allow=allow)
    status, now = canary_started(spec), T0
    refused = False
    for advance, is_ready, outcome in ticks:
        now += timedelta(seconds=advance)
        waiting = status.canaryRevision == "r2" and status.currentStep is None
        d = tick(spec, status, "r2", {"r1": ready(), "r2": ready() if is_ready else unready()}, now, outcome)
        if waiting and outcome == MISMATCH and not allow:
            refused = True
            assert d.status.rollbackReason == "ContractMismatch"
        if waiting and isinstance(outcome, Unknown) and not allow:
            assert d.status.currentStep is None
        if refused:
            assert max(weights(d), default=0) == 0 and d.status.canaryWeight == 0
        status = d.status
