"""One local "cluster world" for the e2e tests, the demo and the rollback benchmark.

PodRunner (real model servers for the operator's pods) + Prometheus (scraping them with the target
labels the chart's PodMonitor adds: ``namespace``, ``pod``, ``modeldeployment`` and
``modelrollout_revision`` — the pod's own revision under a name of its own, so the server's
``revision`` label, which on feedback names the *predicting* revision, survives the scrape) + Gateway
(the HTTPRoute's data plane), started together and stopped together, so the three callers cannot
drift apart.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from hack.loopback.gateway import Gateway
from hack.loopback.modelserver import MODELS_DIR as MODELS
from hack.loopback.pods import PodProcess, PodRunner
from hack.loopback.prometheus import Prometheus, Target

SHA256 = dict(line.split()[::-1] for line in (MODELS / "SHA256SUMS").read_text().splitlines())


def model_spec(model: str, sha256: str | None = None) -> dict:
    """``spec.model`` for an example model (baseline, better, worse, slow, broken, coinflip), checksum included."""
    return {"name": "fraud", "uri": f"file://{MODELS / model}.onnx", "sha256": sha256 or SHA256[f"{model}.onnx"]}


def serving_spec(warmup: int = 5, replicas: int = 1) -> dict:
    """``spec.serving`` whose pods the PodRunner serves with real model servers."""
    return {"replicas": replicas, "warmup": {"requests": warmup}, "podLabels": {"modelrollout.io/simulate": "harness"}}


@dataclass
class LocalWorld:
    namespace: str
    runner: PodRunner
    prometheus: Prometheus
    gateway: Gateway


def target_labels(namespace: str, pod: PodProcess) -> dict[str, str]:
    """What the chart's PodMonitor relabelling puts on every sample of a model-server pod."""
    return {
        "namespace": namespace,
        "pod": pod.pod,
        "modeldeployment": pod.deployment,
        "modelrollout_revision": pod.revision,
    }


def _scrape_pods(runner: PodRunner, prometheus: Prometheus, namespace: str, stop: threading.Event) -> None:
    while not stop.is_set():
        prometheus.set_targets(
            Target(f"127.0.0.1:{p.port}", target_labels(namespace, p))
            for p in list(runner.pods.values())
            if p.proc.poll() is None
        )
        stop.wait(0.5)


@contextlib.contextmanager
def local_world(
    api: client.ApiClient, namespace: str, workdir: Path, logs: Path, scrape_interval: float = 1.0, route: str = "fraud"
) -> Iterator[LocalWorld]:
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(PodRunner(api, namespace, logs))
        prometheus = stack.enter_context(Prometheus(workdir / "prometheus", scrape_interval=scrape_interval))
        gateway = stack.enter_context(Gateway(api, namespace, route, runner))
        thread = threading.Thread(target=_scrape_pods, args=(runner, prometheus, namespace, stop), daemon=True)
        thread.start()
        stack.callback(thread.join, 5)
        stack.callback(stop.set)
        yield LocalWorld(namespace, runner, prometheus, gateway)
