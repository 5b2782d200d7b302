"""Real model-server processes (``python -m modelserver``), one per revision, on loopback ports.

Why real processes: the gates read what the real server exports (request counters by status class,
the latency histogram, feedback joined by request id), and the example models misbehave for real —
``worse`` is less accurate, ``broken`` emits NaN (answered 500), ``slow`` takes tens of
milliseconds — so a passing e2e says the whole chain works, not that a fake agrees with itself.

Usage::

    stable = ModelServer("baseline", revision="r1", workdir=tmp_path)
    canary = ModelServer("worse", revision="r2", workdir=tmp_path)
    with start_all([stable, canary]):          # parallel start, waits for /v2/health/ready
        prom.set_targets([stable.target("ml", "fraud-r1-0"), canary.target("ml", "fraud-r2-0")])
        ...

The models are ``examples/models/{baseline,better,worse,broken,slow,coinflip}.onnx`` (see
``examples/models/generate.py``); any path to an ONNX file works too.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import requests

from hack.loopback.procs import REPO, LoopbackProcess, free_port, wait_for
from hack.loopback.prometheus import Target

MODELS_DIR = REPO / "examples" / "models"
SERVER_SRC = REPO / "server-image"
EXAMPLE_MODELS = ("baseline", "better", "worse", "broken", "slow", "coinflip")


def model_path(model: str | Path) -> Path:
    """``examples/models/<model>.onnx`` for an example name, else ``model`` as a path."""
    if isinstance(model, str) and model in EXAMPLE_MODELS:
        return MODELS_DIR / f"{model}.onnx"
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}; example models are {', '.join(EXAMPLE_MODELS)}")
    return path


class ModelServer(LoopbackProcess):
    """One ``python -m modelserver`` process serving ``model`` as ``model_name`` with ``--revision``.

    ``url`` is the loopback base URL; :meth:`target` gives the Prometheus scrape target with the
    ``namespace``/``pod`` labels the operator's scrape configuration would add. ``warmup_requests``
    is kept small by default to start quickly. Logs go to ``workdir/modelserver-<revision>-<port>.log``.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        revision: str,
        workdir: Path,
        model_name: str = "fraud",
        port: int | None = None,
        warmup_requests: int = 5,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.model = model_path(model)
        self.revision = revision
        self.model_name = model_name
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.warmup_requests = warmup_requests
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.log_path = self.workdir / f"modelserver-{revision}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the scrape target address (Prometheus' ``instance`` label)."""
        return f"127.0.0.1:{self.port}"

    def target(self, namespace: str, pod: str | None = None, **labels: str) -> Target:
        """The scrape target for this server with ``namespace``, ``pod`` and any extra labels."""
        return Target(
            self.address, {"namespace": namespace, "pod": pod or f"{self.model_name}-{self.revision}", **labels}
        )

    def launch(self) -> ModelServer:
        """Start the process without waiting (see :meth:`wait_ready`); a no-op while it runs."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVER_")}
        env["MODELSERVER_GRPC_PORT"] = "0"  # many servers share 127.0.0.1; tests that want gRPC pass --grpc-port
        env["PYTHONPATH"] = os.pathsep.join([str(SERVER_SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(self.extra_env)
        command = [
            sys.executable, "-m", "modelserver",
            "--model-uri", self.model.as_uri(),
            "--model-name", self.model_name,
            "--revision", self.revision,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--warmup-requests", str(self.warmup_requests),
            "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.workdir
            )
        return self

    def ready(self) -> bool:
        """``GET /v2/health/ready`` is 200; raises if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"model server {self.revision} exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return requests.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = 60.0) -> ModelServer:
        """Wait for readiness; a timeout carries the server's log tail (e.g. why the model did not load)."""
        try:
            wait_for(self.ready, timeout, f"model server {self.revision} ({self.model.name}) to be ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- {self.log_path.name} ---\n{self.logs(2000)}") from None
        return self

    def start(self, timeout: float = 60.0) -> ModelServer:
        """Launch and wait until ready; stops the process again if it never gets ready."""
        self.launch()
        try:
            return self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise


@contextlib.contextmanager
def start_all(servers: Iterable[ModelServer], timeout: float = 90.0) -> Iterator[list[ModelServer]]:
    """Start ``servers`` in parallel, wait until all are ready, and stop all of them on exit.

    Starting in parallel matters on two cores: each server spends most of its start importing
    onnxruntime and FastAPI, which overlaps well. If any server fails to start, all are stopped.
    """
    started = list(servers)
    try:
        for server in started:
            server.launch()
        for server in started:
            server.wait_ready(timeout)
        yield started
    finally:
        for server in started:
            server.stop()
