"""The engine's drift watch and retraining runs, tick by tick, no cluster."""

from datetime import timedelta

import pytest
from modelrollout import engine as e
from modelrollout import retraining
from modelrollout.api.types import AnalysisResult, FeatureDrift, MetricResult, RetrainingSpec
from pydantic import ValidationError

from tests.unit.test_engine import BOTH, T0, at_first_step, cond, gate_result, mkspec, tick

GATES = [{"name": "accuracy", "min": 0.8}, {"name": "drift", "maxPSI": 0.2}]
RETRAIN = {"job": {"image": "trainer:1"}, "cooldown": "1h", "backoff": "10m", "maxBackoff": "1h"}


def drift_spec(failure_limit: int = 2, retrain: dict | None = None):
    over = {
        "analysis": {"interval": "10s", "prometheus": {"address": "http://p:9090"}, "metrics": GATES,
                     "failureLimit": failure_limit, "continuous": {"window": "1h"}},
    }  # fmt: skip
    if retrain is not None:
        over["retraining"] = retrain
    return mkspec(**over)


def check(now, drift: str, accuracy: str = "Pass", rev: str = "r2") -> AnalysisResult:
    """A watch check: accuracy's verdict, and the drift gate's (``Fail`` names amount)."""
    amount = FeatureDrift(name="amount", psi=0.41 if drift == "Fail" else 0.01, pValue=1e-30, samples=5000,
                          drifted=drift == "Fail")  # fmt: skip
    reason = {"Pass": "Passed", "Fail": "Failed", "Inconclusive": "InsufficientSamples"}
    metrics = [
        MetricResult(name="accuracy", verdict=accuracy, reason=reason[accuracy], value=0.9),
        MetricResult(name="drift", verdict=drift, reason=reason[drift], value=amount.psi,
                     features=[] if drift == "Inconclusive" else [amount]),
    ]  # fmt: skip
    verdict = "Fail" if "Fail" in (drift, accuracy) else "Pass"
    return AnalysisResult(time=now, revision=rev, verdict=verdict, metrics=metrics)


def watched(spec):
    """r2 promoted and watched; the decision and the time."""
    d, now = at_first_step(spec), T0
    while d.status.stableRevision != "r2":
        now += timedelta(seconds=10)
        d = tick(spec, d.status, "r2", BOTH, now, analysis=gate_result(now, "Passed"))
    return d, now


def step(spec, d, now, analysis=None, job=None):
    obs = e.Observations(1, e.DesiredRevision("r2", spec.model, spec.serving), BOTH, {}, analysis,
                         name="fraud", retraining_job=job)  # fmt: skip
    return e.decide(spec, d.status, obs, now)


def events(d: e.Decision, reason: str) -> list[e.Emit]:
    return [a for a in d.actions if isinstance(a, e.Emit) and a.reason == reason]


def starts(d: e.Decision) -> list[e.StartRetraining]:
    return [a for a in d.actions if isinstance(a, e.StartRetraining)]


def test_sustained_drift_sets_drifted_naming_the_feature_without_failing_the_watch():
    spec = drift_spec(failure_limit=2)
    d, now = watched(spec)
    assert cond(d.status, "Drifted").status == "False" and cond(d.status, "Drifted").reason == "NoDrift"
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    assert cond(d.status, "Drifted").status == "False", "one drifted check is not sustained drift"
    assert d.status.drift.checks == 1 and d.status.drift.since == now
    first = now
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    drifted = cond(d.status, "Drifted")
    assert drifted.status == "True" and drifted.reason == "DriftDetected"
    assert "amount PSI 0.41" in drifted.message and d.status.drift.since == first
    assert [ev.type for ev in events(d, "Drifted")] == ["Warning"]
    # The data moved, the model did not get worse: no watch failure, no Degraded, no revert.
    assert d.status.watchFailure is None and cond(d.status, "Degraded").status == "False"
    assert d.status.lastAnalysis.verdict == "Pass" and d.status.phase == "Succeeded"
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    assert not events(d, "Drifted"), "the Event is sent once per episode"


def test_a_fresh_window_waiting_for_values_keeps_drifted_and_a_clean_check_clears_it():
    spec = drift_spec(failure_limit=1)
    d, now = watched(spec)
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    assert cond(d.status, "Drifted").status == "True"
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Inconclusive"))
    assert cond(d.status, "Drifted").status == "True", "too few values to judge is no evidence of recovery"
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Pass"))
    assert cond(d.status, "Drifted").status == "False" and d.status.drift.checks == 0
    assert len(events(d, "DriftCleared")) == 1


def test_other_gates_still_fail_the_watch_next_to_drift():
    spec = drift_spec(failure_limit=1)
    d, now = watched(spec)
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Pass", accuracy="Fail"))
    assert d.status.watchFailure == "WatchFailedAccuracy" and cond(d.status, "Drifted").status == "False"


def test_drift_in_a_rollout_is_a_gate_like_any_other():
    spec = drift_spec(failure_limit=1)
    d = at_first_step(spec)
    now = T0 + timedelta(seconds=10)
    d = tick(spec, d.status, "r2", BOTH, now, analysis=check(now, "Fail"))
    assert d.status.phase == "RolledBack" and d.status.rollbackReason == "GateFailedDrift"


def test_drift_starts_one_retraining_run_and_the_cooldown_holds_the_next():
    spec = drift_spec(failure_limit=1, retrain=RETRAIN)
    d, now = watched(spec)
    assert d.status.retraining is None
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    (start,) = starts(d)
    assert start.job == "fraud-retrain-1" and start.revision == "r2" and start.model_uri == "https://m/a.onnx"
    assert [f.name for f in start.drift.features] == ["amount"]
    assert d.status.retraining.outcome == "Running" and d.status.retraining.job == "fraud-retrain-1"
    # The same status decided again (a restart before the status write) asks for the same Job.
    assert [a.job for a in starts(step(spec, watched(spec)[0], now, check(now, "Fail")))] == ["fraud-retrain-1"]

    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"), job=e.JobState(e.RetrainingOutcome.RUNNING))
    assert not starts(d), "at most one run at a time"
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"), job=e.JobState(e.RetrainingOutcome.SUCCEEDED, "Job x succeeded"))
    runs = d.status.retraining
    assert runs.outcome == "Succeeded" and runs.nextRunAfter == now + timedelta(hours=1) and runs.failures == 0
    assert len(events(d, "RetrainingSucceeded")) == 1 and not starts(d)
    assert e.next_due(spec, d.status, now) <= runs.nextRunAfter
    for minutes in (10, 59):
        later = now + timedelta(minutes=minutes)
        assert not starts(step(spec, d, later, check(later, "Fail"))), "still drifted, but in the cooldown"
    later = now + timedelta(hours=1)
    d = step(spec, d, later, check(later, "Fail"))
    assert [a.job for a in starts(d)] == ["fraud-retrain-2"] and d.status.retraining.runs == 2


def test_failed_runs_back_off_exponentially_with_jitter_up_to_the_ceiling():
    spec = drift_spec(failure_limit=1, retrain=RETRAIN)
    d, now = watched(spec)
    waits = []
    for run in range(1, 5):
        now += timedelta(seconds=10)
        d = step(spec, d, now, check(now, "Fail"))
        assert [a.job for a in starts(d)] == [f"fraud-retrain-{run}"]
        now += timedelta(seconds=10)
        failed = (
            e.JobState(e.RetrainingOutcome.FAILED, "Job failed: BackoffLimitExceeded") if run % 2 else e.JobState(None)
        )
        d = step(spec, d, now, check(now, "Fail"), job=failed)
        assert d.status.retraining.outcome == "Failed" and d.status.retraining.failures == run
        waits.append((d.status.retraining.nextRunAfter - now).total_seconds())
        assert events(d, "RetrainingFailed")
        now = d.status.retraining.nextRunAfter
    assert "deleted before it finished" in d.status.retraining.message  # the Job vanished
    # backoff 10m doubled per failure, equal jitter (half to all of it), capped at maxBackoff 1h
    for failures, wait in enumerate(waits, start=1):
        full = min(600 * 2 ** (failures - 1), 3600)
        assert full / 2 <= wait <= full, (failures, wait)


def test_no_run_without_drift_and_none_for_a_drift_of_a_replaced_revision():
    spec = drift_spec(failure_limit=1, retrain=RETRAIN)
    d, now = watched(spec)
    now += timedelta(seconds=10)
    assert not starts(step(spec, d, now, check(now, "Pass")))
    drifted = step(spec, d, now, check(now, "Fail"))
    stale = drifted.status.model_copy(deep=True)
    stale.retraining = None
    stale.drift.revision = "r1"  # Drifted was about the previous stable
    assert not starts(step(spec, e.Decision(stale), now + timedelta(seconds=10)))


def test_retraining_spec_and_job_are_checked_and_built():
    with pytest.raises(ValidationError, match="maxBackoff must be at least backoff"):
        RetrainingSpec.model_validate({"job": {"image": "t"}, "backoff": "2h", "maxBackoff": "1h"})
    with pytest.raises(ValidationError, match="image"):
        RetrainingSpec.model_validate({"job": {}})
    assert retraining.job_name("a" * 80, 12) == "a" * 52 + "-retrain-12"
    spec = RetrainingSpec.model_validate(
        {"job": {"image": "t:1", "args": ["--x"], "env": [{"name": "MODELROLLOUT_REVISION", "value": "spoof"},
                                                          {"name": "A", "value": "1"}],
                 "serviceAccountName": "trainer"}}
    )  # fmt: skip
    owner = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelDeployment",
             "metadata": {"name": "fraud", "namespace": "ns", "uid": "u1"}}  # fmt: skip
    job = retraining.build_job(owner, spec, "fraud-retrain-1", "r2", "s3://b/m.onnx", '{"version": 1}')
    pod = job["spec"]["template"]["spec"]
    env = {v["name"]: v["value"] for v in pod["containers"][0]["env"]}
    assert (
        env["MODELROLLOUT_REVISION"] == "r2"
        and env["A"] == "1"
        and env["MODELROLLOUT_DRIFT_REPORT"] == '{"version": 1}'
    )
    assert env["MODELROLLOUT_MODEL_URI"] == "s3://b/m.onnx" and env["MODELROLLOUT_NAMESPACE"] == "ns"
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "trainer"
    assert job["spec"]["backoffLimit"] == 0 and job["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert job["metadata"]["labels"][retraining.LABEL_RETRAINING] == "fraud"


def test_drifted_clears_once_the_drifted_features_are_judged_clean_though_others_still_wait():
    """At low traffic a twenty-bin score may never gather its values in a window: a recovered
    amount must not stay Drifted because of it."""
    spec = drift_spec(failure_limit=1)
    d, now = watched(spec)
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    assert cond(d.status, "Drifted").status == "True"
    clean = FeatureDrift(name="amount", psi=0.01, pValue=0.4, samples=900, drifted=False)
    waiting = check(now, "Inconclusive")
    other = waiting.metrics[1].model_copy(update={"features": [clean.model_copy(update={"name": "hour"})]})
    now += timedelta(seconds=10)
    d = step(spec, d, now, waiting.model_copy(update={"time": now, "metrics": [waiting.metrics[0], other]}))
    assert cond(d.status, "Drifted").status == "True", "amount was not judged again"
    judged = waiting.metrics[1].model_copy(update={"features": [clean]})
    now += timedelta(seconds=10)
    d = step(spec, d, now, waiting.model_copy(update={"time": now, "metrics": [waiting.metrics[0], judged]}))
    assert cond(d.status, "Drifted").status == "False" and len(events(d, "DriftCleared")) == 1


def test_removing_the_drift_gate_clears_drifted_and_a_running_run_still_ends():
    spec = drift_spec(failure_limit=1, retrain=RETRAIN)
    d, now = watched(spec)
    now += timedelta(seconds=10)
    d = step(spec, d, now, check(now, "Fail"))
    assert cond(d.status, "Drifted").status == "True" and d.status.retraining.outcome == "Running"
    plain = mkspec(analysis={**spec.analysis.model_dump(), "metrics": [GATES[0]]})
    now += timedelta(seconds=10)
    d = step(plain, d, now, job=e.JobState(e.RetrainingOutcome.SUCCEEDED, "Job fraud-retrain-1 succeeded"))
    assert cond(d.status, "Drifted").status == "False" and d.status.drift is None
    assert d.status.retraining.outcome == "Succeeded" and d.status.retraining.nextRunAfter is None


def test_a_jobs_outcome_is_read_from_the_job_controllers_final_condition():
    from modelrollout.kube import job_state

    def job(*conditions: dict) -> dict:
        return {"metadata": {"name": "fraud-retrain-1"}, "status": {"conditions": list(conditions)}}

    assert job_state(job()).phase == e.RetrainingOutcome.RUNNING
    assert job_state(job({"type": "Complete", "status": "False"})).phase == e.RetrainingOutcome.RUNNING
    done = job_state(job({"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}))
    assert done.phase == e.RetrainingOutcome.SUCCEEDED and "fraud-retrain-1 succeeded" in done.message
    failed = job_state(job({"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                            "message": "Job was active longer than specified deadline"}))  # fmt: skip
    assert failed.phase == e.RetrainingOutcome.FAILED and "longer than specified deadline" in failed.message
    assert job_state(None).phase is None and "does not exist" in job_state(None).message
