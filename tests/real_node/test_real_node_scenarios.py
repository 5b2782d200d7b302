"""The user's stories on the real node, through the real proxy, with the images built from the Dockerfiles.

kubelet runs every pod (the chart's operator under its own ServiceAccount, two model-server pods per
revision with kubelet-executed startup/readiness/liveness probes, Traefik, Prometheus, the model
store); Traefik routes by the HTTPRoute weights the operator writes; Prometheus finds the pods by
Kubernetes service discovery. Predictions and their labels both go through Traefik.
"""

from __future__ import annotations

import os

import pytest

from hack.realnode.story import Story

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(900)]


def say(line: str) -> None:
    print(line, flush=True)


def record(figures: list, story: Story) -> None:
    figures.append((os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1], story.figures))


def test_operator_runs_as_a_pod_on_the_real_node_with_its_service_account(testbed):
    pod = testbed.operator_pod()
    assert pod and pod["status"]["phase"] == "Running", pod
    assert pod["spec"]["nodeName"] == testbed.node.name
    assert pod["spec"]["serviceAccountName"] == "modelrollout"
    assert pod["spec"]["containers"][0]["image"] == "localhost/modelrollout/operator:dev"
    assert pod["status"]["podIP"].startswith(testbed.node.pod_cidr.rsplit(".", 2)[0])


def test_a_better_model_is_promoted_and_the_split_follows_the_weights(testbed, figures):
    with Story.open(testbed, "promote", say) as story:
        story.given_a_stable_model("baseline")
        story.when_the_user_rolls_out("better")
        story.then_it_is_promoted()
        story.then_the_split_follows_the_weights()
        record(figures, story)


def test_a_worse_model_is_rolled_back_by_the_accuracy_gate(testbed, figures):
    with Story.open(testbed, "accuracy", say) as story:
        story.given_a_stable_model("baseline")
        story.when_the_user_rolls_out("worse")
        story.then_it_is_rolled_back("Accuracy")
        story.then_the_split_follows_the_weights()
        record(figures, story)


def test_a_broken_model_is_rolled_back_by_the_error_rate_gate(testbed, figures):
    with Story.open(testbed, "errors", say) as story:
        story.given_a_stable_model("baseline")
        story.when_the_user_rolls_out("broken")
        story.then_it_is_rolled_back("ErrorRate")
        story.then_the_split_follows_the_weights()
        record(figures, story)


def test_a_model_whose_warmup_never_finishes_is_held_unready_by_kubelet(testbed, figures):
    with Story.open(testbed, "warmup", say) as story:
        story.given_a_stable_model("baseline")
        # slow.onnx takes ~75 ms a call: 10,000 warmup calls outlast the startup probe's 20 s, so
        # kubelet restarts the container, and the progress deadline ends the rollout.
        story.when_the_user_rolls_out("slow", warmup=10000, startup_timeout=20, deadline=60)
        story.then_its_pods_are_never_ready()
        story.then_it_is_rolled_back("ProgressDeadlineExceeded")
        record(figures, story)


def test_the_operator_pod_deleted_mid_rollout_resumes_it(testbed, figures):
    with Story.open(testbed, "resume", say) as story:
        story.given_a_stable_model("baseline")
        story.when_the_user_rolls_out("better", step="15s")
        story.when_the_operator_pod_is_deleted(at_weight=20)
        story.then_it_is_promoted()
        story.then_the_split_follows_the_weights()
        record(figures, story)
