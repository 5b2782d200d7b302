"""Reusable real-process helpers for end-to-end tests: Prometheus, model servers, labelled traffic.

Everything here runs real binaries on loopback and is meant to be driven from pytest fixtures:

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

from tests.e2e.harness.modelserver import ModelServer, model_path, start_all
from tests.e2e.harness.procs import free_port
from tests.e2e.harness.prometheus import Prometheus, PrometheusNotInstalledError, Target
from tests.e2e.harness.traffic import TrafficResult, TrafficSender

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
