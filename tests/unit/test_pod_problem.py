"""Why a revision's pods are not ready, read from their status as the kubelet writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelrollout import engine
from modelrollout.api.types import ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.kube import PROBLEM_CHARS, pod_problem
from modelrollout.revision import revision_hash


def pod(name: str, **status: object) -> dict:
    return {"metadata": {"name": name}, "status": status}


def container(state: dict, last: dict | None = None, restarts: int = 0) -> dict:
    return {"name": "modelserver", "state": state, "lastState": last or {}, "restartCount": restarts}


def test_a_container_that_cannot_be_created_names_its_secret() -> None:
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "store" not found'}}
    assert pod_problem([pod("fraud-r2-a", containerStatuses=[container(waiting)])]) == (
        'pod fraud-r2-a: CreateContainerConfigError: secret "store" not found'
    )


def test_a_crash_loop_carries_the_last_termination_message() -> None:
    last = {"terminated": {"exitCode": 1, "reason": "Error", "message": "s3://m/a.onnx: the store refused the request"}}
    crashing = container({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}, last, restarts=3)
    assert pod_problem([pod("fraud-r2-b", containerStatuses=[crashing])]) == (
        "pod fraud-r2-b: CrashLoopBackOff; last exit 1: s3://m/a.onnx: the store refused the request"
    )


def test_an_unschedulable_pod_and_how_many_more() -> None:
    unscheduled = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}  # fmt: skip
    pulling = {"containerStatuses": [container({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})]}
    problem = pod_problem([pod("b", **pulling), pod("a", **unscheduled)])
    assert problem == "pod a: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu. (and 1 more)"


def test_pods_that_are_only_starting_have_no_problem() -> None:
    starting = container({"waiting": {"reason": "ContainerCreating"}})
    running = container({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    assert pod_problem([pod("a", containerStatuses=[starting]), pod("b", containerStatuses=[running])]) is None
    assert pod_problem([pod("c")]) is None


def test_a_long_message_is_cut() -> None:
    last = {"terminated": {"exitCode": 1, "message": "x" * 5000}}
    problem = pod_problem([pod("a", containerStatuses=[container({"waiting": {"reason": "CrashLoopBackOff"}}, last)])])
    assert problem is not None and len(problem) == PROBLEM_CHARS and problem.endswith("...")


def first_revision() -> tuple[ModelDeploymentSpec, str, engine.DesiredRevision]:
    """A ModelDeployment's first revision, with a 60 s progress deadline."""
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "fraud", "uri": "https://m/a.onnx"}, "traffic": {"none": {}}, "progressDeadlineSeconds": 60}
    )
    rev = revision_hash(spec.model, spec.serving, "img")
    return spec, rev, engine.DesiredRevision(rev, spec.model, spec.serving)


def test_the_engine_says_why_it_waits_and_why_it_gave_up() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec, rev, desired = first_revision()
    stuck = engine.DeploymentState(1, 1, 0, 0, problem='pod p: CreateContainerConfigError: secret "s" not found')
    obs = engine.Observations(generation=1, desired=desired, deployments={rev: stuck})
    first = engine.decide(spec, ModelDeploymentStatus(), obs, now).status
    assert first.message == f"waiting for revision {rev} to become available: {stuck.problem}"
    later = engine.decide(spec, first, obs, now + timedelta(seconds=60)).status
    assert later.message == f"revision {rev} not available within progressDeadlineSeconds=60: {stuck.problem}"


def test_a_failed_first_revision_keeps_its_message_current() -> None:
    """The deadline can pass before the pods can say why (a slow start): the reason joins later."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec, rev, desired = first_revision()
    starting = engine.Observations(generation=1, desired=desired, deployments={rev: engine.DeploymentState(1, 1, 0, 0)})
    failed = engine.decide(spec, engine.decide(spec, ModelDeploymentStatus(), starting, now).status, starting,
                           now + timedelta(seconds=61)).status  # fmt: skip
    assert failed.message == f"revision {rev} not available within progressDeadlineSeconds=60"
    crashing = engine.DeploymentState(1, 1, 0, 0, problem="pod p: CrashLoopBackOff; last exit 1: sha256 mismatch")
    later = engine.Observations(generation=1, desired=desired, deployments={rev: crashing})
    assert engine.decide(spec, failed, later, now + timedelta(seconds=70)).status.message == (
        f"revision {rev} not available within progressDeadlineSeconds=60: {crashing.problem}"
    )
