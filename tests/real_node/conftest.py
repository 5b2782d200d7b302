"""The real node's test bed for the scenarios: installed once per session, run first.

Why first: every other operator the suite starts (a host process watching all namespaces) would
reconcile these namespaces too. So the real-node scenarios run before everything else, and when
they are done the chart's operator is uninstalled, so that it never touches the other tests'
namespaces. With a cluster started with MODELROLLOUT_REAL_NODE=0 they are skipped, with that reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.realnode.kube import BIN, NodeInfo
from hack.realnode.testbed import OPERATOR_NS, Testbed

HERE = Path(__file__).resolve().parent
# (test, figures), printed in the closing summary. Tests reach it through the ``figures`` fixture:
# importing it from this module would load a second copy (pytest imports conftests under its own
# name), whose list the summary never sees.
FIGURES: list[tuple[str, dict]] = []


def pytest_collection_modifyitems(session, config, items) -> None:
    """Real-node scenarios first (see the module docstring); the rest keeps its order."""
    first = [i for i in items if HERE in Path(str(i.fspath)).parents]
    rest = [i for i in items if HERE not in Path(str(i.fspath)).parents]
    items[:] = first + rest


@pytest.fixture(scope="module")
def testbed(cluster) -> Iterator[Testbed]:
    """Installed before the module's first scenario; the operator is uninstalled after its last."""
    if os.environ.get("MODELROLLOUT_REAL_NODE") == "0" or NodeInfo.load() is None:
        pytest.skip("the cluster has no real node (MODELROLLOUT_REAL_NODE=0): kwok-only run")
    bed = Testbed.connect()
    bed.install()
    try:
        yield bed
    finally:
        subprocess.run([str(BIN / "helm"), "uninstall", "modelrollout", "-n", OPERATOR_NS, "--wait",
                        "--kubeconfig", str(bed.kube.kubeconfig)], check=False, capture_output=True)  # fmt: skip


@pytest.fixture(scope="session")
def figures() -> list[tuple[str, dict]]:
    return FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not FIGURES:
        return
    terminalreporter.section("real node: time-to-rollback and traffic split per step (weight, n, canary, z)")
    for test, figures in FIGURES:
        terminalreporter.write_line(f"{test}: {figures}")
