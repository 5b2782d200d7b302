"""The CLI and kubectl plugin against the real API server.

Status is written here directly through the status subresource (as the operator would), so every
assertion is about what the CLI shows and writes, not about the engine. The session's operator is
paused for this module so it cannot rewrite those statuses underneath the tests.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.loopback.cluster import BIN, Cluster, wait_until

pytestmark = pytest.mark.cluster

TESTDATA = Path(__file__).resolve().parents[1] / "unit" / "testdata" / "argocd"
VENV_BIN = Path(sys.executable).parent
FRAME_END = "(Ctrl-C to stop)"


@pytest.fixture(scope="module")
def paused_operator(request: pytest.FixtureRequest) -> Iterator[None]:
    op = request.getfixturevalue("operator")
    op.stop()
    try:
        yield
    finally:
        op.start()


@pytest.fixture
def ns(cluster: Cluster, paused_operator: None, namespace: str) -> str:
    return namespace


def cli(cluster: Cluster, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
    env = {**cluster.env, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def create(cluster: Cluster, ns: str, name: str = "fraud", status_from: str | None = "progressing.yaml") -> dict:
    obj = yaml.safe_load((TESTDATA / "progressing.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": ns}
    cluster.apply(obj)
    if status_from:
        set_status(cluster, ns, name, yaml.safe_load((TESTDATA / status_from).read_text())["status"])
    return cluster.get("mdep", name, ns)


def set_status(cluster: Cluster, ns: str, name: str, status: dict[str, Any]) -> None:
    status = {**status, "observedGeneration": 1}
    cluster.kubectl(
        "patch", "mdep", name, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )


def test_list_status_history_and_json(cluster: Cluster, ns: str) -> None:
    create(cluster, ns)
    out = cli(cluster, "-n", ns, "list")
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE"]
    assert row.split()[:6] == ["fraud", "Progressing", "5d8f2c1a", "a1c2e3f4", "25%", "3/5"]

    everywhere = cli(cluster, "list", "-A")
    assert any(line.split()[:2] == [ns, "fraud"] for line in everywhere.stdout.splitlines())

    status = cli(cluster, "-n", ns, "status", "fraud")
    assert status.returncode == 0, status.stderr
    assert "Traffic split:  stable 5d8f2c1a 75%   canary a1c2e3f4 25%" in status.stdout
    assert "error-rate" in status.stdout and "max 0.01" in status.stdout

    raw = cli(cluster, "-n", ns, "status", "fraud", "-o", "json")
    assert json.loads(raw.stdout)["canaryWeight"] == 25

    history = cli(cluster, "-n", ns, "history", "fraud")
    assert history.returncode == 0 and history.stdout == "No revisions recorded yet.\n"


def test_kubectl_finds_the_plugin(cluster: Cluster, ns: str) -> None:
    plugin = VENV_BIN / "kubectl-modelrollout"
    assert plugin.exists(), "pip install -e . installs the kubectl-modelrollout entry point"
    create(cluster, ns)
    env = {**cluster.env, "PATH": f"{VENV_BIN}:{BIN}:/usr/bin:/bin"}
    listed = subprocess.run(
        [str(BIN / "kubectl"), "plugin", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert str(plugin) in listed.stdout
    out = subprocess.run(
        [str(BIN / "kubectl"), "modelrollout", "-n", ns, "status", "fraud"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Phase:          Progressing" in out.stdout
    usage = subprocess.run([str(plugin), "--help"], capture_output=True, text=True, env=env, check=False)
    assert usage.stdout.startswith("usage: kubectl modelrollout")
    # Flags after the command and its NAME, as with every kubectl plugin.
    for args in (["status", "fraud", "-n", ns], ["status", "-n", ns, "fraud"], ["list", "-n", ns]):
        after = subprocess.run([str(BIN / "kubectl"), "modelrollout", *args], capture_output=True, text=True,
                               env=env, check=False)  # fmt: skip
        assert after.returncode == 0, (args, after.stderr)
        assert ("Phase:          Progressing" if args[0] == "status" else "Progressing") in after.stdout


def test_flags_go_anywhere(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    """``-n``, ``--kubeconfig``, ``--context``, ``-A``, ``-o`` before or after the command and NAME."""
    create(cluster, ns)
    # A kubeconfig whose current context points nowhere: only --context makes these calls work.
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["contexts"].append({"name": "broken", "context": {"cluster": "nowhere", "user": "admin"}})
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}})
    config["current-context"] = "broken"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    real = "modelrollout-local"
    for args in (
        ["--kubeconfig", str(kubeconfig), "--context", real, "-n", ns, "status", "fraud", "-o", "json"],
        ["status", "fraud", "-o", "json", "-n", ns, "--context", real, "--kubeconfig", str(kubeconfig)],
        ["-o", "json", "status", f"--context={real}", "fraud", f"--namespace={ns}", f"--kubeconfig={kubeconfig}"],
    ):
        out = cli(cluster, *args)
        assert out.returncode == 0, (args, out.stderr)
        assert json.loads(out.stdout)["canaryWeight"] == 25
    listed = cli(cluster, "list", "--context", real, "-A", "--kubeconfig", str(kubeconfig))
    assert listed.returncode == 0 and any(line.split()[:2] == [ns, "fraud"] for line in listed.stdout.splitlines())
    assert cli(cluster, "-A", "list").returncode == 0
    history = cli(cluster, "history", "fraud", "-n", ns)
    assert history.returncode == 0, history.stderr
    wrong = cli(cluster, "status", "fraud", "-n", ns, "-A")
    assert wrong.returncode == 2 and "unrecognized arguments: -A" in wrong.stderr


def test_promote_sets_only_an_annotation(cluster: Cluster, ns: str) -> None:
    before = create(cluster, ns)
    out = cli(cluster, "-n", ns, "promote", "fraud")
    assert out.returncode == 0, out.stderr
    after = json.loads(cluster.kubectl("get", "mdep", "fraud", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    value = after["metadata"]["annotations"]["modelrollout.io/promote"]
    assert value.endswith("Z") and value[:4].isdigit() and value in out.stdout
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    mine = [m for m in after["metadata"]["managedFields"] if m["manager"] == "kubectl-modelrollout"]
    assert len(mine) == 1
    assert set(mine[0]["fieldsV1"]) == {"f:metadata"}
    assert set(mine[0]["fieldsV1"]["f:metadata"]) == {"f:annotations"}

    again = cli(cluster, "-n", ns, "promote", "fraud")
    later = cluster.get("mdep", "fraud", ns)["metadata"]["annotations"]["modelrollout.io/promote"]
    assert again.returncode == 0 and later > value  # every request is distinct


def test_moot_actions_are_refused_and_write_nothing(cluster: Cluster, ns: str) -> None:
    create(cluster, ns, status_from="succeeded.yaml")
    for action in ("promote", "abort", "retry"):
        out = cli(cluster, "-n", ns, action, "fraud")
        assert out.returncode == 1 and f"nothing to {action}" in out.stderr
    assert not (cluster.get("mdep", "fraud", ns)["metadata"].get("annotations") or {}).keys() & {
        "modelrollout.io/promote",
        "modelrollout.io/abort",
        "modelrollout.io/retry",
    }
    forced = cli(cluster, "-n", ns, "retry", "fraud", "--force")
    assert forced.returncode == 0
    assert "modelrollout.io/retry" in cluster.get("mdep", "fraud", ns)["metadata"]["annotations"]


def test_missing_resource_is_a_clear_error(cluster: Cluster, ns: str) -> None:
    for args in (["status", "nope"], ["promote", "nope"], ["history", "nope"], ["status", "nope", "-w"]):
        out = cli(cluster, "-n", ns, *args)
        assert out.returncode == 3, (args, out.stderr)
        assert out.stderr.strip() == f'error: ModelDeployment "nope" not found in namespace "{ns}"'


def test_permission_denied_is_a_clear_error(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    create(cluster, ns)
    cluster.kubectl("create", "serviceaccount", "viewer", "-n", ns)
    cluster.kubectl("create", "role", "mdep-viewer", "-n", ns, "--verb=get,list,watch",
                    "--resource=modeldeployments.modelrollout.io")  # fmt: skip
    cluster.kubectl("create", "rolebinding", "viewer", "-n", ns, "--role=mdep-viewer", f"--serviceaccount={ns}:viewer")
    token = cluster.kubectl("create", "token", "viewer", "-n", ns).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig = tmp_path / "viewer"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "v", "context": {"cluster": "c", "user": "viewer", "namespace": ns}}],
        "current-context": "v",
    }))  # fmt: skip

    # Reading works (the context's namespace is the default), and the Deployments the viewer may
    # not list are simply left out of the view.
    status = cli(cluster, "status", "fraud", kubeconfig=kubeconfig)
    assert status.returncode == 0, status.stderr
    assert "Phase:          Progressing" in status.stdout
    denied = cli(cluster, "promote", "fraud", kubeconfig=kubeconfig)
    assert denied.returncode == 4
    assert denied.stderr.startswith("error: permission denied: ")
    assert "cannot patch resource" in denied.stderr and f"system:serviceaccount:{ns}:viewer" in denied.stderr
    elsewhere = cli(cluster, "list", "-A", kubeconfig=kubeconfig)
    assert elsewhere.returncode == 4 and "cannot list resource" in elsewhere.stderr


class Watcher:
    """``status -w`` as a child process; frames are collected as they are printed."""

    def __init__(self, cluster: Cluster, ns: str, *extra: str) -> None:
        env = {**cluster.env, "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout.cli", "-n", ns, "status", "fraud", "-w", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.frames: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        frame: list[str] = []
        for line in self.proc.stdout:
            frame.append(line)
            if FRAME_END in line:
                self.frames.put("".join(frame))
                frame = []

    def next_frame(self, timeout: float = 20) -> str:
        return self.frames.get(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def watcher(cluster: Cluster, ns: str) -> Iterator[Any]:
    started: list[Watcher] = []

    def start(*extra: str) -> Watcher:
        w = Watcher(cluster, ns, *extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def test_watch_redraws_on_each_change_only_and_exits_when_done(cluster: Cluster, ns: str, watcher: Any) -> None:
    create(cluster, ns)
    w = watcher("--until-done", "--timeout", "120")
    assert "canary a1c2e3f4 25%" in w.next_frame()
    # Event-driven, not polling: nothing changes, nothing is redrawn.
    time.sleep(3)
    assert w.frames.empty()

    base = yaml.safe_load((TESTDATA / "progressing.yaml").read_text())["status"]
    set_status(cluster, ns, "fraud", {**base, "canaryWeight": 50, "currentStep": 3})
    frame = w.next_frame()
    assert "canary a1c2e3f4 50%" in frame and "[50%]" in frame
    set_status(cluster, ns, "fraud", yaml.safe_load((TESTDATA / "succeeded.yaml").read_text())["status"])
    assert "Phase:          Succeeded" in w.next_frame()
    assert w.proc.wait(20) == 0


def test_watch_exits_nonzero_on_rollback_and_on_deletion(cluster: Cluster, ns: str, watcher: Any) -> None:
    create(cluster, ns)
    w = watcher("--until-done")
    w.next_frame()
    set_status(cluster, ns, "fraud", yaml.safe_load((TESTDATA / "rolled-back.yaml").read_text())["status"])
    assert "GateFailedErrorRate" in w.next_frame()
    assert w.proc.wait(20) == 1

    live = watcher()  # without --until-done: keeps watching until the object goes away
    live.next_frame()
    cluster.kubectl("delete", "mdep", "fraud", "-n", ns)
    assert live.proc.wait(20) == 3
    assert live.proc.stderr is not None and "was deleted" in live.proc.stderr.read()


def test_watch_times_out(cluster: Cluster, ns: str, watcher: Any) -> None:
    create(cluster, ns)
    w = watcher("--until-done", "--timeout", "2")
    w.next_frame()
    assert w.proc.wait(20) == 6


def test_watch_shows_revision_deployments_live(cluster: Cluster, ns: str, watcher: Any) -> None:
    create(cluster, ns)
    w = watcher()
    w.next_frame()
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud-a1c2e3f4", "namespace": ns,
                     "labels": {"modelrollout.io/deployment": "fraud", "modelrollout.io/revision": "a1c2e3f4"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                         "spec": {"containers": [{"name": "c", "image": "modelrollout/modelserver:0.1.0"}]}},
        },
    }  # fmt: skip
    cluster.apply(dep)

    def shows_ready() -> bool:
        try:
            return "canary a1c2e3f4 25% (1/1 ready)" in w.next_frame(timeout=2)
        except queue.Empty:
            return False

    wait_until(shows_ready, 60, what="the canary Deployment's readiness in the live view")
