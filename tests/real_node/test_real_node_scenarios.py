"""The user's stories on the real node, through the real proxy, with the images built from the Dockerfiles.

kubelet runs every pod (the chart's two operator replicas, a leader and a standby, under their own
ServiceAccount, two model-server pods per
revision with kubelet-executed startup/readiness/liveness probes, Traefik, Prometheus, the model
store); Traefik routes by the HTTPRoute weights the operator writes; Prometheus finds the pods by
Kubernetes service discovery. Predictions and their labels both go through Traefik.

Each story has its own namespace, Gateway host and traffic, and one operator serves them all, as it
serves many teams' ModelDeployments on a cluster. So the stories run two at a time (``LANES``), which
also shows one rollout's gates are not disturbed by another's traffic on the same node. The story
that deletes the leading operator's pod goes last: the one story still running beside it sees no
operator deciding for the seconds the standby takes to lead (it releases the Lease on SIGTERM), which
only delays that story's next step, as it would for every rollout on a cluster.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from hack.realnode.story import Story

if TYPE_CHECKING:  # not at run time: pytest would try to collect a class named Test*
    from hack.realnode.testbed import Testbed

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(900)]
LANES = 2  # stories at a time: each runs 4 model-server pods and 40 labelled requests/s on 2 shared cores


def promote(story: Story) -> None:
    story.given_a_stable_model("baseline")
    story.when_the_user_rolls_out("better")
    story.then_testers_reach_it_by_header()
    story.then_it_is_promoted()
    story.then_the_split_follows_the_weights()


def errors(story: Story) -> None:
    story.given_a_stable_model("baseline")
    story.when_the_user_rolls_out("broken")
    story.then_it_is_rolled_back("ErrorRate")
    story.then_the_split_follows_the_weights()


def warmup(story: Story) -> None:
    story.given_a_stable_model("baseline")
    # slow.onnx takes ~75 ms a call: 10,000 warmup calls outlast the startup probe's 20 s, so
    # kubelet restarts the container, and the progress deadline ends the rollout.
    story.when_the_user_rolls_out("slow", warmup=10000, startup_timeout=20, deadline=60)
    story.then_its_pods_are_never_ready()
    story.then_it_is_rolled_back("ProgressDeadlineExceeded")


def resume(story: Story) -> None:
    story.given_a_stable_model("baseline")
    story.when_the_user_rolls_out("better", step="15s")
    story.when_the_leading_operator_pod_is_deleted(at_weight=20)
    story.then_it_is_promoted()
    story.then_the_split_follows_the_weights()


# The longest first, so the two lanes finish close together; the leading operator's pod is deleted last.
# The accuracy gate's rollback of a worse model runs with two replicas in tests/e2e/test_feedback_routed.py
# (make test's time budget); on the real node the better model's accuracy is judged and passes.
CONCURRENT: dict[str, Callable[[Story], None]] = {"warmup": warmup, "promote": promote, "errors": errors,
                                                  "resume": resume}  # fmt: skip


@dataclass
class Told:
    """What one story said, line by line, and the figures it measured."""

    lines: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def tell(testbed: Testbed, title: str, plot: Callable[[Story], None]) -> Told:
    """Run one story; on failure its own lines go with the error (threads share pytest's capture)."""
    told = Told()
    try:
        with Story.open(testbed, title, told.lines.append) as story:
            plot(story)
            told.figures = story.figures
    except BaseException as exc:
        exc.add_note(f"story {title}, as it went:\n" + "\n".join(told.lines))
        raise
    return told


@pytest.fixture(scope="module")
def stories(testbed: Testbed) -> Iterator[dict[str, cf.Future[Told]]]:
    """The stories, started together on first use, ``LANES`` at a time."""
    with cf.ThreadPoolExecutor(max_workers=LANES, thread_name_prefix="story") as pool:
        futures = {name: pool.submit(tell, testbed, name, plot) for name, plot in CONCURRENT.items()}
        try:
            yield futures
        finally:
            for f in futures.values():
                f.cancel()  # the ones not started yet; a running story ends by its own deadlines


def record(figures: list, told: Told) -> None:
    for line in told.lines:
        print(line, flush=True)
    figures.append((os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1], told.figures))


def test_operator_runs_as_a_pod_on_the_real_node_with_its_service_account(testbed):
    pods = testbed.operator_pods()
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]  # the chart's default: a leader and a standby
    assert testbed.leader() in [p["metadata"]["name"] for p in pods]
    pod = pods[0]
    assert pod["status"]["phase"] == "Running", pod
    assert pod["spec"]["nodeName"] == testbed.node.name
    assert pod["spec"]["serviceAccountName"] == "modelrollout"
    assert pod["spec"]["containers"][0]["image"] == "localhost/modelrollout/operator:dev"
    assert pod["status"]["podIP"].startswith(testbed.node.pod_cidr.rsplit(".", 2)[0])


def test_a_better_model_is_promoted_and_the_split_follows_the_weights(stories, figures):
    record(figures, stories["promote"].result())


def test_a_broken_model_is_rolled_back_by_the_error_rate_gate(stories, figures):
    record(figures, stories["errors"].result())


def test_a_model_whose_warmup_never_finishes_is_held_unready_by_kubelet(stories, figures):
    record(figures, stories["warmup"].result())


def test_the_leading_operator_pod_deleted_mid_rollout_the_standby_finishes_it(stories, figures):
    record(figures, stories["resume"].result())
