"""Fixtures that run real ``python -m modelserver`` processes on free loopback ports.

Every server a test starts is stopped by the fixture that started it (SIGTERM, then SIGKILL after
a grace period), also when the test fails; stdout/stderr go to files so a failing test can show
the server's own account of what happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "examples" / "models"
SERVER_SRC = REPO / "server-image"
MODEL_NAME = "fraud"
REVISION = "rev-test"
# ``examples.models.dataset`` resolves as a namespace package from the repository root; appended, so
# nothing in the root (e.g. ``operator/``) can shadow an installed or standard-library module.
# ``server-image`` is appended as a fallback for checkouts where the package is not installed (editable).
for _path in (REPO, SERVER_SRC):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One model-server process; ``url`` is its loopback base URL."""

    def __init__(self, args: list[str], env: dict[str, str] | None, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir / f"server-{self.port}.out"
        self.stderr_path = workdir / f"server-{self.port}.err"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVER_")}
        full_env["PYTHONPATH"] = str(SERVER_SRC) + os.pathsep + full_env.get("PYTHONPATH", "")
        # No gRPC unless a test asks for it (--grpc-port): many servers run at once on this host.
        full_env["MODELSERVER_GRPC_PORT"] = "0"
        full_env.update(env or {})
        command = [sys.executable, "-m", "modelserver", "--host", "127.0.0.1", "--port", str(self.port), *args]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, env=full_env, cwd=workdir)

    def wait_live(self, timeout: float = 30.0) -> None:
        self._wait(lambda r: r.status_code == 200, "/v2/health/live", timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait(lambda r: r.status_code == 200, "/v2/health/ready", timeout)

    def _wait(self, ok, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            with contextlib.suppress(requests.ConnectionError):
                if ok(requests.get(self.url + path, timeout=2)):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{path} not OK after {timeout}s:\n{self.logs()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        return f"--- stderr ---\n{self.stderr()[-4000:]}\n--- stdout ---\n{self.stdout()[-2000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text


def model_args(model: str = "baseline", *extra: str) -> list[str]:
    return ["--model-uri", str(MODELS / f"{model}.onnx"), "--model-name", MODEL_NAME, "--revision", REVISION, *extra]


class ServerFactory:
    """Starts servers on demand and stops all of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[ServerProcess] = []

    def start(self, args: list[str], env: dict[str, str] | None = None, ready: bool = True) -> ServerProcess:
        server = ServerProcess(args, env, self.workdir)
        self.servers.append(server)
        if ready:
            server.wait_ready()
        else:
            server.wait_live()
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def session_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def baseline(session_factory: ServerFactory) -> ServerProcess:
    """A ready server for the baseline model (shared: tests must not depend on absolute counters)."""
    return session_factory.start(model_args("baseline", "--warmup-requests", "5"))


@pytest.fixture(scope="session")
def broken(session_factory: ServerFactory) -> ServerProcess:
    return session_factory.start(model_args("broken", "--warmup-requests", "2"))


# ------------------------------------------------------------------- models fetched from a store

STORED_MODEL = (MODELS / "baseline.onnx").read_bytes()
"""What the storage tests put in their stores, and its sha256 (``--sha256``)."""
STORED_DIGEST = hashlib.sha256(STORED_MODEL).hexdigest()


def serve_uri(
    factory: ServerFactory,
    uri: str,
    env: dict[str, str],
    ready: bool = True,
    sha256: str = STORED_DIGEST,
    retries: int = 0,
) -> ServerProcess:
    """A server loading ``uri`` with ``env`` (the pod's storage environment)."""
    args = ["--model-uri", uri, "--model-name", MODEL_NAME, "--sha256", sha256, "--download-retries", str(retries)]
    return factory.start(args, env=env, ready=ready)


def load_failure(server: ServerProcess) -> str:
    """The reason a server that must fail to load gives in ``/v2/health/ready``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = requests.get(server.url + "/v2/health/ready", timeout=5).json()
        if body.get("state") == "failed":
            return str(body["reason"])
        time.sleep(0.05)
    raise AssertionError(f"the server did not fail: {body}")


def assert_served_with_metadata(server: ServerProcess) -> None:
    """Served the stored model, with the feature schema of the metadata.json fetched from beside it."""
    meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert meta["parameters"]["sha256"] == STORED_DIGEST
    assert meta["parameters"]["features"], "metadata.json was fetched from beside the model with the same credentials"
