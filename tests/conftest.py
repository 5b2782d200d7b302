"""Shared fixtures: the real local control plane and a real operator process.

The session fixture reuses a cluster that is already up (``make cluster-up``) and otherwise starts
one with ``hack/cluster-up.sh`` and stops it at the end, so a developer's cluster is never torn down
by a test run and CI still gets a clean one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
TESTENV = Path(os.environ.get("MODELROLLOUT_TESTENV", REPO / ".testenv"))
CACHE = Path(
    os.environ.get("MODELROLLOUT_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelrollout"
)
BIN = CACHE / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    kubeconfig: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": f"{BIN}:{os.environ['PATH']}"}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(BIN / "kubectl"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, stdin=text)


def _reachable(kubeconfig: Path) -> bool:
    if not kubeconfig.exists() or not (BIN / "kubectl").exists():
        return False
    proc = subprocess.run(
        [
            str(BIN / "kubectl"),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "--raw",
            "/readyz",
            "--request-timeout=3s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    kubeconfig = TESTENV / "kubeconfig"
    started = False
    if not _reachable(kubeconfig):
        subprocess.run(["bash", str(REPO / "hack/cluster-up.sh")], check=True, cwd=REPO)
        started = True
    c = Cluster(kubeconfig)
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    c.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelrollout.io", "--timeout=60s")
    try:
        yield c
    finally:
        if started and not os.environ.get("MODELROLLOUT_KEEP_CLUSTER"):
            subprocess.run(["bash", str(REPO / "hack/cluster-down.sh")], check=False, cwd=REPO)


ROUTE_CRDS = [
    "httproutes.gateway.networking.k8s.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
]


@pytest.fixture(scope="session")
def upstream_crds(cluster: Cluster) -> list[str]:
    """Fetch (cached) and install the Gateway API and Istio networking CRDs; wait until Established.

    Server-side apply makes this idempotent and safe when another test session installs the same
    CRDs at the same time. CRDs are cluster-wide and shared: they are never deleted here.
    """
    proc = subprocess.run(
        ["bash", str(REPO / "hack/fetch-crds.sh")], capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, f"hack/fetch-crds.sh failed: {proc.stderr}"
    dirs = proc.stdout.split()
    assert len(dirs) == 2, proc.stdout
    for d in dirs:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelrollout-tests", "-f", d)
    cluster.kubectl("wait", "--for=condition=Established", *(f"crd/{c}" for c in ROUTE_CRDS), "--timeout=60s")
    return dirs


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(cluster.kubeconfig)) as api_client:
        yield api_client


class OperatorProcess:
    """The real operator (``python -m modelrollout run``) as a child process, stoppable by PID."""

    def __init__(self, cluster: Cluster, tick_seconds: float = 1.0, extra_env: dict[str, str] | None = None):
        self.cluster = cluster
        self.tick = tick_seconds
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        log = open(TESTENV / f"operator-{os.getpid()}-{self.starts}.log", "w")  # noqa: SIM115 - child owns it
        env = {
            **self.cluster.env,
            "MODELROLLOUT_TICK_SECONDS": str(self.tick),
            # Tests scrape every second, so gate windows of a few seconds hold enough samples.
            "MODELROLLOUT_MIN_QUERY_WINDOW": "4s",
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout", "run", "--all-namespaces",
             f"--liveness=http://127.0.0.1:{self.port}/healthz"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        wait_until(self._healthy, 60, what="operator liveness endpoint")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}; see {TESTENV}/operator-*.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True
        return False

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, exactly like a node dying under the operator."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
