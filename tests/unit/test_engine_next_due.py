"""``engine.next_due`` is tight: an operator that wakes an object only at its next due time (and on
watch events) makes every transition exactly when one that looked every 250 ms would.

Each world below is driven twice through the real engine, as the shell drives it (a check runs when
``analysis_due`` says so and passes): once ticking every 250 ms, once jumping from one
``next_due`` to the next. Every transition (phase, step, weight, stable revision) must happen in the
same order and no later than 250 ms after the ticking world made it; a deadline missing from
``next_due`` would surface as a transition late by up to an analysis interval or the resync period.
(``test_engine_properties.test_nothing_is_decided_before_next_due`` checks the converse: nothing
changes before it.)
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from modelrollout import engine as e
from modelrollout.api.types import (
    AnalysisResult,
    GateReason,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelrollout.durations import parse_duration

from tests.unit.test_engine import ready, unready

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HORIZON = timedelta(minutes=5)
TICK = timedelta(milliseconds=250)
GATES = {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.1}]}


def spec(**over) -> ModelDeploymentSpec:
    body = {
        "model": {"name": "m", "uri": "https://m/a.onnx"},
        "serving": {"replicas": 2},
        "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        "strategy": {"canary": {"steps": [10, 50, 100], "stepDuration": "7s"}},
        "analysis": {"interval": "5s", **GATES},
        "bake": {"duration": "13s"},
        "progressDeadlineSeconds": 23,
    }
    body.update(over)
    return ModelDeploymentSpec.model_validate(body)


def stable_status(s: ModelDeploymentSpec) -> ModelDeploymentStatus:
    obs = e.Observations(1, e.DesiredRevision("r1", s.model, s.serving), {"r1": ready()})
    st = e.decide(s, ModelDeploymentStatus(), obs, T0 - timedelta(hours=1)).status
    return e.decide(s, st, obs, T0 - timedelta(hours=1)).status


def check(now: datetime, revision: str, verdict: str) -> AnalysisResult:
    """One gate check's result: a pass, or a gate that stays undecided (neither met nor breached)."""
    if verdict == "Pass":
        return AnalysisResult(time=now, revision=revision, verdict="Pass")
    gate = MetricResult(name="error-rate", verdict="Inconclusive", reason=GateReason.UNDECIDED)
    return AnalysisResult(time=now, revision=revision, verdict="Inconclusive", metrics=[gate])


def transitions(s: ModelDeploymentSpec, canary: e.DeploymentState, verdict: str, event_driven: bool) -> list[tuple]:
    """(seconds, what) at every change of the rollout's state, every check and every watch window,
    from the canary's creation at T0. A canary that is ready at first loses its pods at LOST (a
    watch event: the event-driven world wakes then too)."""
    status, now, seen = stable_status(s), T0, []
    lost = T0 + LOST if canary == LOSES_PODS else None
    while now - T0 <= HORIZON:
        gone = lost is not None and now >= lost
        deps = {"r1": ready(), "r2": unready() if gone or canary == unready() else ready()}
        target = e.analysis_due(s, status, now)
        analysis = check(now, target, verdict) if target else None
        obs = e.Observations(1, e.DesiredRevision("r2", s.model, s.serving), deps, {}, analysis)
        before = status
        status = e.decide(s, status, obs, now).status
        state = (status.phase, status.currentStep, status.canaryWeight, status.stableRevision)
        at = (now - T0).total_seconds()
        if not seen or before_state(before) != state:
            seen.append((at, *state))
        if analysis is not None:
            seen.append((at, "check", target))
        if status.watchSince is not None and status.watchSince != before.watchSince:
            seen.append((at, "watch window"))
        if event_driven:
            due = e.next_due(s, status, now)
            if lost is not None and now < lost and (due is None or due > lost):
                due = lost
            if due is None:
                break  # nothing more can happen without an event: the world is done
            now = due
        else:
            now += TICK
    return seen


LOST = timedelta(seconds=9)
LOSES_PODS = e.DeploymentState(replicas=2, updated=2, ready=2, available=2, up_to_date=False)
"""Marks the world whose canary is ready until LOST, then has no ready pod again."""


def before_state(status: ModelDeploymentStatus) -> tuple:
    return (status.phase, status.currentStep, status.canaryWeight, status.stableRevision)


WORLDS = {
    "canary with gates and a bake": (spec(), ready(), "Pass"),
    "canary without gates": (spec(analysis={"interval": "5s"}, bake={"duration": "0s"}), ready(), "Pass"),
    "canary steps longer than the interval": (
        spec(strategy={"canary": {"steps": [25, 100], "stepDuration": "12s", "maxStepDuration": "40s"}}),
        ready(),
        "Pass",
    ),
    "canary undecided until maxStepDuration": (
        spec(strategy={"canary": {"steps": [10, 50, 100], "stepDuration": "7s", "maxStepDuration": "31s"}}),
        ready(),
        "Undecided",
    ),
    "canary that never becomes ready": (spec(), unready(), "Pass"),
    "canary that loses its pods mid-step": (spec(), LOSES_PODS, "Pass"),
    "blue-green preview then scale-down delay": (
        spec(strategy={"blueGreen": {"previewDuration": "9s", "scaleDownDelay": "17s"}}, bake={"duration": "0s"}),
        ready(),
        "Pass",
    ),
    "continuous watch after promotion": (
        spec(analysis={"interval": "5s", **GATES, "continuous": {"window": "61s"}}),
        ready(),
        "Pass",
    ),
}


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_waking_only_at_next_due_misses_no_transition(world: str) -> None:
    s, canary, verdict = WORLDS[world]
    ticking = transitions(s, canary, verdict, event_driven=False)
    waking = transitions(s, canary, verdict, event_driven=True)
    assert [t[1:] for t in waking] == [t[1:] for t in ticking], (waking, ticking)
    assert len(ticking) >= 2, f"nothing happened in the {world} world: {ticking}"
    for (at_due, *state), (at_tick, *_) in zip(waking, ticking, strict=True):
        assert at_due <= at_tick + TICK.total_seconds(), f"{state} at {at_due}s, ticking world at {at_tick}s"
    # No check is repeated within the interval: a check whose result the engine does not record
    # would otherwise fall due again at once and the shell would query Prometheus in a busy loop.
    checks = [at for at, *what in waking if what[0] == "check"]
    interval = parse_duration(s.analysis.interval)
    assert all(b - a >= interval - 0.001 for a, b in itertools.pairwise(checks)), checks


def test_a_deadline_passes_at_its_moment_which_is_when_next_due_wakes() -> None:
    """``next_due`` names the deadline itself, and the decision changes exactly there: not a
    microsecond before (which would make the shell's wake-up late), not a moment after (which would
    make a decision between ``now`` and ``next_due`` differ from the one at ``now``; hypothesis found
    that with a 1 ms wake-up margin and a strict ``elapsed > limit``)."""
    s = spec()
    deps = {"r1": ready(), "r2": unready()}
    obs = e.Observations(1, e.DesiredRevision("r2", s.model, s.serving), deps)
    status = e.decide(s, stable_status(s), obs, T0).status
    deadline = T0 + timedelta(seconds=s.progressDeadlineSeconds)
    assert e.next_due(s, status, T0) == deadline
    before = e.decide(s, status, obs, deadline - timedelta(microseconds=1)).status
    at = e.decide(s, status, obs, deadline).status
    assert (before.phase, at.phase) == ("Progressing", "RolledBack"), (before.message, at.message)
