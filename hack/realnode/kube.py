"""kubectl and the real node's coordinates, for the test bed, the scenarios, the demo and benchmarks.

Why a subprocess around the pinned kubectl: it is the binary the README tells users to run, it
needs nothing from ``tests/`` (``hack/`` never imports ``tests/``), and server-side apply through it
is idempotent, so installing the test bed twice changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TESTENV = Path(os.environ.get("MODELROLLOUT_TESTENV", REPO / ".testenv"))
CACHE = Path(
    os.environ.get("MODELROLLOUT_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelrollout"
)
BIN = CACHE / "bin"
FIELD_MANAGER = "modelrollout-testbed"


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its arguments and stderr."""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")


@dataclass(frozen=True)
class NodeInfo:
    """What hack/node/node.sh recorded about the real node of one test environment."""

    name: str
    node_ip: str
    host_ip: str
    pod_cidr: str
    netns: str
    containerd_sock: str

    @classmethod
    def load(cls, testenv: Path = TESTENV) -> NodeInfo | None:
        """The node of ``testenv``, or None when the cluster was started without it."""
        path = testenv / "run" / "node.env"
        if not path.exists():
            return None
        env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return cls(env["NODE_NAME"], env["NODE_IP"], env["HOST_IP"], env["POD_CIDR"], env["NETNS"],
                   env["CONTAINERD_SOCK"])  # fmt: skip


class Kube:
    """The pinned kubectl against one kubeconfig."""

    def __init__(self, kubeconfig: Path = TESTENV / "kubeconfig") -> None:
        self.kubeconfig = kubeconfig

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": f"{BIN}:{os.environ['PATH']}"}

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        proc = subprocess.run(
            [str(BIN / "kubectl"), *args], input=stdin, capture_output=True, text=True, env=self.env,
            timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        """Server-side apply (idempotent; forces ownership of the fields we set)."""
        text = yaml.safe_dump_all(objects)
        ns = ["-n", namespace] if namespace else []
        self.run("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", *ns, "-f", "-",
                 stdin=text)  # fmt: skip

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        out = self.run("get", kind, name, *ns, "-o", "json", check=False)
        return json.loads(out) if out.strip() else None

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
        return json.loads(self.run(*args))["items"]

    def reachable(self) -> bool:
        if not self.kubeconfig.exists() or not (BIN / "kubectl").exists():
            return False
        return subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), "get", "--raw", "/readyz",
             "--request-timeout=3s"], capture_output=True, check=False,
        ).returncode == 0  # fmt: skip
