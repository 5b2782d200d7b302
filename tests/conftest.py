"""Shared fixtures: the real local control plane and a real operator process.

The session fixture reuses a cluster that is already up (``make cluster-up``) and otherwise starts
one with ``hack/cluster-up.sh`` and stops it at the end, so a developer's cluster is never torn down
by a test run and CI still gets a clean one. The kubectl wrapper and the operator process live in
``hack/loopback/cluster.py``, because the demo and the rollback benchmark use them too.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from hack.loopback.cluster import TESTENV, Cluster, OperatorProcess, reachable
from hack.loopback.procs import REPO


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    kubeconfig = TESTENV / "kubeconfig"
    started = False
    if not reachable(kubeconfig):
        subprocess.run(["bash", str(REPO / "hack/cluster-up.sh")], check=True, cwd=REPO)
        started = True
    c = Cluster(kubeconfig)
    try:  # a failure from here on must still stop the cluster this session started
        c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        c.wait_established("modeldeployments.modelrollout.io")
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
    cluster.wait_established(*ROUTE_CRDS)
    return dirs


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(cluster.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture(scope="session")
def operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def alone(operator: OperatorProcess) -> Iterator[None]:
    """The session's operator stops so that only the operators a test starts act."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
