"""The local control plane and the real operator, as the tests, the demo and the benchmark drive them.

Why here and not in ``tests/conftest.py``: ``hack/demo.py`` and ``hack/bench_rollback.py`` need the
same kubectl wrapper and the same operator child process as the pytest fixtures, and ``hack/`` never
imports ``tests/``. The fixtures in ``tests/conftest.py`` are thin wrappers around what is here.

* :class:`Cluster` — the pinned kubectl against the kubeconfig of one test environment
  (``$MODELROLLOUT_TESTENV``, default ``.testenv``; ``hack/cluster-up.sh`` writes it).
* :func:`reachable` — whether that environment's API server answers ``/readyz`` (so a caller can
  reuse a running cluster and only stop one it started itself).
* :class:`OperatorProcess` — ``python -m modelrollout run`` as a child process, stopped by its PID.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hack.loopback.procs import REPO, free_port, wait_for

TESTENV = Path(os.environ.get("MODELROLLOUT_TESTENV", REPO / ".testenv"))
CACHE = Path(
    os.environ.get("MODELROLLOUT_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelrollout"
)
BIN = CACHE / "bin"


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; ``AssertionError`` naming ``what`` otherwise.

    An AssertionError, not :func:`~hack.loopback.procs.wait_for`'s TimeoutError, because tests call
    this for what they expect of the operator: a timeout is a failed expectation, not an error.
    """
    try:
        return wait_for(predicate, timeout, what, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


@dataclass
class Cluster:
    """kubectl (the pinned binary from ``BIN``) against one kubeconfig; failures name the command."""

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

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each CRD's ``Established`` condition is True. Not ``kubectl wait``: right after
        the CRD is created its status has no conditions yet, and kubectl 1.35 then fails at once
        (".status.conditions accessor error: <nil>") instead of waiting; the ModelDeployment CRD is
        large enough that fresh-clone CI runs met this twice."""
        path = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        for crd in crds:
            wait_until(lambda crd=crd: self.kubectl("get", "crd", crd, "-o", path, check=False).stdout == "True",
                       timeout, interval=0.5, what=f"CRD {crd} established")  # fmt: skip

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, stdin=text)


def reachable(kubeconfig: Path) -> bool:
    """The API server of ``kubeconfig`` answers ``/readyz`` within 3 s (False without kubectl)."""
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


_OPERATOR_LOGS = itertools.count(1)
"""Numbers the operator logs of this test process across every OperatorProcess: a per-instance count
made a test's second operator overwrite the session operator's log, losing what a failure needed."""


class OperatorProcess:
    """The real operator (``python -m modelrollout run``) as a child process, stoppable by PID; each
    start logs to its own ``operator-<pid>-<n>.log`` in the test environment."""

    def __init__(
        self,
        cluster: Cluster,
        tick_seconds: float = 1.0,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.cluster = cluster
        self.tick = tick_seconds
        self.extra_env = extra_env or {}
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0
        self.log_path = TESTENV / "operator-not-started.log"

    def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        self.log_path = TESTENV / f"operator-{os.getpid()}-{next(_OPERATOR_LOGS)}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 - child owns it
        env = {
            **self.cluster.env,
            "MODELROLLOUT_TICK_SECONDS": str(self.tick),
            # Tests scrape every second, so gate windows of a few seconds hold enough samples.
            "MODELROLLOUT_MIN_QUERY_WINDOW": "4s",
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout", "run", "--all-namespaces",
             f"--liveness=http://127.0.0.1:{self.port}/healthz", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        wait_until(self._healthy, 60, what="operator liveness endpoint")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}; see {self.log_path}")
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
