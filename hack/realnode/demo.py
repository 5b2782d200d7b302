"""`make demo-real`: the demo's story on the real node, through the real proxy.

The local control plane with its real worker node (hack/cluster-up.sh), the images built from the
Dockerfiles without Docker and loaded into the node's containerd, the chart's operator as a pod,
Traefik routing by the HTTPRoute weights, Prometheus finding the pods by Kubernetes service
discovery. Then: baseline -> better (promoted, with the observed split per step) and better ->
worse (rolled back by the accuracy gate). With CI=true the cluster it started is stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hack.realnode.kube import REPO, TESTENV, Kube
from hack.realnode.story import Story
from hack.realnode.testbed import Testbed


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main() -> int:
    started_cluster = not Kube().reachable()
    subprocess.run(["bash", str(REPO / "hack/cluster-up.sh")], check=True)
    testbed = Testbed.connect()
    testbed.install()
    ok = True
    try:
        with Story.open(testbed, "demo", say) as story:
            story.given_a_stable_model("baseline")
            story.when_the_user_rolls_out("better")
            story.then_it_is_promoted()
            story.then_the_split_follows_the_weights()
            # The promoted model is the stable one now; the worse one should be sent back.
            story.stable, story.canary = story.canary, None
            story.when_the_user_rolls_out("worse")
            story.then_it_is_rolled_back("Accuracy")
            log = story.traffic.log if story.traffic else None
            if log:
                say(f"traffic: {len(log.samples)} requests through Traefik, answered by {dict(log.by_revision())}; "
                    f"labels sent back through Traefik: {dict(log.feedback)}")  # fmt: skip
            print(Kube().run("get", "mdep,deploy,pods,httproute", "-n", story.namespace, "-o", "wide"))
    except (AssertionError, TimeoutError) as exc:
        say(f"demo failed: {exc}")
        ok = False
    if os.environ.get("CI") == "true" and started_cluster:
        subprocess.run(["bash", str(REPO / "hack/cluster-down.sh")], check=False)
    elif os.environ.get("CI") != "true":
        say(f"cluster stays up: KUBECONFIG={TESTENV / 'kubeconfig'}; make cluster-down stops it")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
