"""The loopback test bed: the operator's whole world as real processes on 127.0.0.1, no containers.

Why it lives in ``hack/`` and not under ``tests/``: the e2e tests, ``make demo``
(``hack/demo.py``) and ``make bench-rollback`` (``hack/bench_rollback.py``) run the same world, and
``hack/`` never imports ``tests/`` (a unit test enforces it). ``hack/realnode/`` is the other test
bed, with kubelet, containerd and Traefik on a real node; this one needs none of them, so it starts
in seconds on any machine with the local control plane and Debian's Prometheus.

* :mod:`.cluster` — :class:`~.cluster.Cluster` (kubectl on the local control plane),
  :class:`~.cluster.OperatorProcess` (the real operator as a child process), ``TESTENV``, ``BIN``.
* :mod:`.pods` — :class:`~.pods.PodRunner`, a kubelet for pods labelled
  ``modelrollout.io/simulate=harness``: one real model server per pod, Ready when its warmup is done.
* :mod:`.gateway` — :class:`~.gateway.Gateway`, the data plane of the HTTPRoute the operator writes.
* :mod:`.world` — :func:`~.world.local_world`, pods + Prometheus + gateway started and stopped together.
* :mod:`.prometheus` — :class:`Prometheus`, a ``/usr/bin/prometheus`` process with its own config and
  TSDB in a temp dir, scraping a ``file_sd`` target list that can be rewritten while it runs
  (:meth:`Prometheus.set_targets`), plus query/wait helpers and ``pause``/``resume`` to simulate a hang.
* :mod:`.modelserver` — :class:`ModelServer`, one ``python -m modelserver`` process per revision
  (example models from ``examples/models``), started in parallel with :func:`start_all`.
* :mod:`.traffic` — :class:`TrafficSender`, bounded labelled requests (``examples/models/dataset.py``)
  split by weights across backends, with ground-truth feedback to the backend that answered.

Every process class is a context manager and has an idempotent ``stop()`` that escalates from
SIGTERM to SIGKILL, so a fixture that registers it (``with`` or ``ExitStack``) stops it even when the
test fails. Processes are stopped by their own PID only.

Example (a stable and a canary revision, scraped, with traffic)::

    with contextlib.ExitStack() as stack:
        prom = stack.enter_context(Prometheus(tmp_path / "prom"))
        stable = ModelServer("baseline", revision="r1", workdir=tmp_path)
        canary = ModelServer("worse", revision="r2", workdir=tmp_path)
        stack.enter_context(start_all([stable, canary]))
        prom.set_targets([stable.target("ml", "fraud-r1-0"), canary.target("ml", "fraud-r2-0")])
        prom.wait_targets_up(2)
        TrafficSender({"r1": stable.url, "r2": canary.url}).run(max_requests=400, max_seconds=30)
"""

from hack.loopback.modelserver import ModelServer, model_path, start_all
from hack.loopback.procs import free_port
from hack.loopback.prometheus import Prometheus, PrometheusNotInstalledError, Target
from hack.loopback.traffic import TrafficResult, TrafficSender

__all__ = [
    "ModelServer",
    "Prometheus",
    "PrometheusNotInstalledError",
    "Target",
    "TrafficResult",
    "TrafficSender",
    "free_port",
    "model_path",
    "start_all",
]
