"""The Helm chart on the real local API server: it renders, installs, and its RBAC is enough and no more.

"Enough" is shown by running the real operator with the chart's ServiceAccount token (not the admin
certificate) through a complete rollout; "no more" by requests the API server must deny. Both watch
modes are covered: namespace mode (Roles only) and cluster mode (one ClusterRole).

kwok marks pods Ready without running them, so the operator's Deployment becomes Available although
its image is never pulled — that is expected here; the operator process itself runs on this machine.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hack.loopback.cluster import BIN, Cluster, wait_until
from hack.loopback.procs import REPO, free_port

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "modelrollout"


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(BIN / "helm"), *args], capture_output=True, text=True, env=cluster.env, timeout=300, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(cluster: Cluster, namespace: str, *values: str, crds: bool = False) -> list[dict[str, Any]]:
    args = ["template", "mr", str(CHART), "-n", namespace, *(["--include-crds"] if crds else [])]
    for v in values:
        args += ["--set", v]
    return [d for d in yaml.safe_load_all(helm(cluster, *args).stdout) if d]


@contextlib.contextmanager
def extra_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@contextlib.contextmanager
def release(cluster: Cluster, name: str, namespace: str, *values: str) -> Iterator[None]:
    args = ["install", name, str(CHART), "-n", namespace, "--wait", "--timeout", "120s"]
    for v in values:
        args += ["--set", v]
    helm(cluster, *args)
    try:
        yield
    finally:
        helm(cluster, "uninstall", name, "-n", namespace, "--wait", "--timeout", "60s", check=False)


def sa_kubeconfig(cluster: Cluster, namespace: str, sa: str, path: Path) -> Cluster:
    """A kubeconfig that authenticates as the ServiceAccount with a freshly minted token."""
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": server}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa, "namespace": namespace}}],
                "current-context": sa,
            }
        )
    )
    return Cluster(path)


def denied(as_sa: Cluster, *args: str) -> str:
    proc = as_sa.kubectl(*args, check=False)
    assert proc.returncode != 0, f"kubectl {' '.join(args)} should have been denied, got: {proc.stdout}"
    assert "forbidden" in proc.stderr.lower(), proc.stderr
    return proc.stderr


def allowed(as_sa: Cluster, *args: str) -> str:
    return as_sa.kubectl(*args).stdout


def can_i(as_sa: Cluster, *args: str) -> bool:
    proc = as_sa.kubectl("auth", "can-i", *args, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def manifest(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"name": "fraud", "uri": uri},
            "serving": {"replicas": 1},
            "traffic": {"none": {}},
            "strategy": {"canary": {"steps": [50, 100], "stepDuration": "1s"}},
            "bake": {"duration": "1s"},
            "progressDeadlineSeconds": 60,
        },
    }


@contextlib.contextmanager
def operator_as(as_sa: Cluster, log: Path, *scope: str) -> Iterator[subprocess.Popen]:
    """The real operator, authenticated only by the ServiceAccount token; stopped by its PID."""
    port = free_port()
    env = {**as_sa.env, "MODELROLLOUT_TICK_SECONDS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout", "run", *scope, f"--liveness=http://127.0.0.1:{port}/healthz"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"operator exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    try:
        wait_until(healthy, 60, what="operator liveness endpoint")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def no_other_operator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pause the session's admin operator so that only the ServiceAccount's operator acts here.

    Otherwise a rollout could succeed because the admin operator did the work, which would prove
    nothing about the chart's RBAC.
    """
    op = request.getfixturevalue("operator")
    op.stop()
    try:
        yield
    finally:
        op.start()


def run_rollout(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """First revision, then a model change through every canary step to Succeeded."""

    def phase(want: str, stable_not: str | None = None) -> Any:
        def check() -> Any:
            obj = cluster.get("mdep", "fraud", namespace) or {}
            st = obj.get("status") or {}
            ok = st.get("phase") == want and st.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if ok and st.get("stableRevision") != stable_not else None

        return wait_until(check, 90, what=f"{namespace}/fraud {want}")

    cluster.apply(manifest("https://models.example.com/v1.onnx"), namespace)
    first = phase("Succeeded")["status"]["stableRevision"]
    cluster.apply(manifest("https://models.example.com/v2.onnx"), namespace)
    obj = phase("Succeeded", stable_not=first)
    history = {h["revision"]: h["phase"] for h in obj["status"]["history"]}
    assert history[first] in ("Succeeded", "Superseded") and history[obj["status"]["stableRevision"]] == "Succeeded"
    return obj


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def api_requests(metrics: str) -> dict[tuple[str, str], float]:
    """(method, resource) -> requests the operator sent, from ``modelrollout_api_requests_total``."""
    sent: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "modelrollout_api_requests_total":
                key = (sample.labels["method"], sample.labels["resource"])
                sent[key] = sent.get(key, 0.0) + sample.value
    return sent


def assert_no_permission_errors(log: Path) -> None:
    """Not one denial: in namespace mode the operator does not even try kopf's cluster-wide scans."""
    bad = [line for line in log.read_text().splitlines() if "forbidden" in line.lower() or " 403" in line]
    assert not bad, "the operator hit RBAC denials:\n" + "\n".join(bad[:20])


# ------------------------------------------------------------------------------------- rendering


def test_helm_lint_is_clean_in_both_modes(cluster: Cluster) -> None:
    for mode in ("cluster", "namespace"):
        out = helm(cluster, "lint", str(CHART), "--strict", "--set", f"watch.mode={mode}").stdout
        assert "0 chart(s) failed" in out
    bad = helm(cluster, "lint", str(CHART), "--set", "watch.mode=everywhere", check=False)
    assert bad.returncode != 0 and "watch.mode" in (bad.stdout + bad.stderr).replace("/", ".")


@pytest.mark.parametrize("mode", ["cluster", "namespace"])
def test_server_side_dry_run_accepts_every_object(cluster: Cluster, namespace: str, mode: str) -> None:
    with extra_namespace(cluster) as other:
        docs = render(cluster, namespace, f"watch.mode={mode}", f"watch.namespaces={{{namespace},{other}}}", crds=True)
        kinds = sorted(d["kind"] for d in docs)
        # Either mode also has the leader-election Role (the Lease) in the release namespace.
        watch_roles = [
            d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader-election")
        ]
        assert kinds.count("Role") == kinds.count("RoleBinding") == len(watch_roles) + 1
        if mode == "cluster":
            assert kinds.count("ClusterRole") == 1 and not watch_roles
        else:
            assert len(watch_roles) == 2 and "ClusterRole" not in kinds
            assert {d["metadata"]["namespace"] for d in watch_roles} == {namespace, other}
        proc = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(d) for d in docs)
        )
        assert proc.stdout.count("(server dry run)") == len(docs), proc.stdout


def test_operator_deployment_is_hardened_and_scoped(cluster: Cluster, namespace: str) -> None:
    docs = render(cluster, namespace, "watch.mode=namespace", "watch.namespaces={a,b}")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    # Two replicas, one leader: the update rolls (a new pod starts as a standby) instead of Recreate.
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--leader-elect" in c["args"] and "--leader-elect-name=mr-modelrollout-leader" in c["args"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    lease_role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election"))
    assert lease_role["metadata"]["namespace"] == namespace
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    single = next(d for d in render(cluster, namespace, "replicas=1", "leaderElection.enabled=false")
                  if d["kind"] == "Deployment")  # fmt: skip
    assert single["spec"]["strategy"] == {"type": "Recreate"} and single["spec"]["replicas"] == 1
    assert "--leader-elect" not in single["spec"]["template"]["spec"]["containers"][0]["args"]
    racing = helm(cluster, "template", "mr", str(CHART), "--set", "leaderElection.enabled=false", check=False)
    assert racing.returncode != 0 and "replicas > 1 needs leaderElection.enabled=true" in racing.stderr
    assert c["args"][:1] == ["run"] and "--namespace=a" in c["args"] and "--namespace=b" in c["args"]
    assert "--all-namespaces" not in c["args"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert "--metrics-port=8081" in c["args"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["securityContext"]["readOnlyRootFilesystem"] and not c["securityContext"]["allowPrivilegeEscalation"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert c["resources"]["requests"] and c["resources"]["limits"]
    cluster_args = next(d for d in render(cluster, namespace) if d["kind"] == "Deployment")
    assert "--all-namespaces" in cluster_args["spec"]["template"]["spec"]["containers"][0]["args"]


def test_monitors_render_when_enabled(cluster: Cluster, namespace: str) -> None:
    """ServiceMonitor/PodMonitor need the Prometheus Operator CRDs, so they are checked as rendered."""
    docs = render(
        cluster, namespace, "metrics.serviceMonitor.enabled=true", "modelServerMetrics.podMonitor.enabled=true"
    )
    sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
    svc = next(d for d in docs if d["kind"] == "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    pm = next(d for d in docs if d["kind"] == "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "modelserver",
        "app.kubernetes.io/managed-by": "modelrollout",
    }
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    assert not [d for d in render(cluster, namespace) if d["kind"] in ("ServiceMonitor", "PodMonitor")]


def secret_verbs(docs: list[dict[str, Any]]) -> set[str]:
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d.get("rules", [])]
    return {v for r in rules if "secrets" in r["resources"] for v in r["verbs"]}


def test_reading_secrets_is_opt_in(cluster: Cluster, namespace: str) -> None:
    """By default the operator only creates Secrets; rbac.readSecrets adds get, and nothing more."""
    assert secret_verbs(render(cluster, namespace)) == {"create"}
    assert secret_verbs(render(cluster, namespace, "rbac.readSecrets=true")) == {"create", "get"}
    namespaced = render(cluster, namespace, "rbac.readSecrets=true", "watch.mode=namespace")
    assert secret_verbs(namespaced) == {"create", "get"}


def test_default_prometheus_credentials_are_mounted_from_one_secret(cluster: Cluster, namespace: str) -> None:
    sets = ["operator.prometheusAddress=https://prom:9090", "operator.prometheusAuth.secretName=prom",
            "operator.prometheusAuth.bearerTokenKey=token", "operator.prometheusAuth.caKey=ca.crt",
            "operator.prometheusAuth.headers.X-Scope-OrgID=ml"]  # fmt: skip
    dep = next(d for d in render(cluster, namespace, *sets) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELROLLOUT_PROMETHEUS_BEARER_TOKEN_FILE"] == "/etc/modelrollout/prometheus/token"
    assert env["MODELROLLOUT_PROMETHEUS_CA_FILE"] == "/etc/modelrollout/prometheus/ca.crt"
    assert env["MODELROLLOUT_PROMETHEUS_HEADERS"] == "X-Scope-OrgID=ml"
    assert "MODELROLLOUT_PROMETHEUS_CERT_FILE" not in env
    mount = next(m for m in container["volumeMounts"] if m["name"] == "prometheus-auth")
    assert mount == {"name": "prometheus-auth", "mountPath": "/etc/modelrollout/prometheus", "readOnly": True}
    assert {"name": "prometheus-auth", "secret": {"secretName": "prom"}} in pod["volumes"]
    proc = helm(cluster, "template", "mr", str(CHART), "--set", "operator.prometheusAuth.bearerTokenKey=t", check=False)
    assert proc.returncode != 0 and "operator.prometheusAuth: set secretName" in proc.stderr


# --------------------------------------------------------------------------- install and RBAC


def test_namespace_mode_install_rbac_and_rollout(
    cluster: Cluster, namespace: str, no_other_operator: None, tmp_path: Path
) -> None:
    with extra_namespace(cluster) as other, release(cluster, "mr", namespace, "watch.mode=namespace"):
        dep = cluster.get("deploy", "mr-modelrollout", namespace)
        available = next(c for c in dep["status"]["conditions"] if c["type"] == "Available")
        assert available["status"] == "True"

        sa = sa_kubeconfig(cluster, namespace, "mr-modelrollout", tmp_path / "sa.kubeconfig")
        # Enough: what the operator does in its namespace.
        allowed(sa, "get", "mdep", "-n", namespace)
        allowed(sa, "get", "deploy", "-n", namespace)
        assert can_i(sa, "patch", "modeldeployments.modelrollout.io", "--subresource=status", "-n", namespace)
        # The object itself is read-only for the operator: the API server enforces "never writes spec".
        for verb in ("patch", "update", "delete"):
            assert not can_i(sa, verb, "modeldeployments.modelrollout.io", "-n", namespace)
        # Secrets: create only (each ModelDeployment's prediction-token key); never read, listed or changed.
        assert can_i(sa, "create", "secrets", "-n", namespace)
        for verb in ("get", "list", "watch", "update", "patch", "delete"):
            assert not can_i(sa, verb, "secrets", "-n", namespace), f"{verb} secrets must be denied"
        assert not can_i(sa, "create", "secrets", "-n", other)
        # No more: nothing sensitive, nothing outside the watched namespace, nothing cluster-scoped.
        denied(sa, "get", "secrets", "-n", namespace)
        denied(sa, "get", "secrets", "fraud-feedback-key", "-n", namespace)
        denied(sa, "get", "configmaps", "-n", namespace)
        denied(sa, "get", "mdep", "-n", other)
        denied(sa, "create", "deployment", "x", "--image=busybox", "-n", other)
        denied(sa, "get", "mdep", "--all-namespaces")
        denied(sa, "get", "namespaces")
        denied(sa, "get", "crd")
        denied(sa, "delete", "mdep", "fraud", "-n", namespace)
        denied(sa, "create", "rolebinding", "x", "--clusterrole=admin", "--user=me", "-n", namespace)

        # A ModelDeployment outside the watched namespace must stay untouched.
        cluster.apply(manifest("https://models.example.com/v1.onnx"), other)
        log = tmp_path / "operator.log"
        metrics_port = free_port()
        election = [
            "--leader-elect",
            f"--leader-elect-namespace={namespace}",
            "--leader-elect-name=mr-modelrollout-leader",
        ]
        with operator_as(sa, log, f"--namespace={namespace}", f"--metrics-port={metrics_port}", *election):
            obj = run_rollout(cluster, namespace)
            assert cluster.get("lease", "mr-modelrollout-leader", namespace)["spec"]["holderIdentity"]
            assert cluster.get("mdep", "fraud", other).get("status") is None
            key = cluster.get("secret", "fraud-feedback-key", namespace)  # created by the ServiceAccount
            assert key["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
            # The operator records a transition right after its status write lands, so the
            # series may trail the status we just read by a moment.
            labels = f'name="fraud",namespace="{namespace}"'
            expected = [
                f'modelrollout_phase{{{labels},phase="Succeeded"}} 1.0',
                f"modelrollout_rollouts_started_total{{{labels}}} 2.0",  # v1 (first revision), v2 (canary)
                f"modelrollout_rollouts_succeeded_total{{{labels}}} 2.0",
                f"modelrollout_canary_weight{{{labels}}} 0.0",
            ]
            wait_until(
                lambda: [e for e in expected if e not in scrape(metrics_port)] == [],
                15,
                what=f"operator metrics {expected}",
            )
            # Two revisions, a dozen reconciles: the Deployments were listed once (the watch and the
            # operator's own writes kept that list), the key Secret created once, no Service deleted.
            sent = api_requests(scrape(metrics_port))
            assert sent.get(("GET", "deployments")) == 1, sent
            assert sent.get(("POST", "secrets")) == 1, sent
            assert ("DELETE", "services") not in sent, sent
        assert obj["status"].get("canaryRevision") is None
        assert (
            cluster.get("svc", "fraud-canary", namespace)["spec"]["selector"]["modelrollout.io/revision"]
            == (obj["status"]["stableRevision"])
        ), "the canary Service stays, on the stable revision"
        assert_no_permission_errors(log)


def test_cluster_mode_install_rbac_and_rollout(
    cluster: Cluster, namespace: str, no_other_operator: None, tmp_path: Path
) -> None:
    with extra_namespace(cluster) as workload_ns, release(cluster, "mrc", namespace, "watch.mode=cluster"):
        dep = cluster.get("deploy", "mrc-modelrollout", namespace)
        assert next(c for c in dep["status"]["conditions"] if c["type"] == "Available")["status"] == "True"
        roles = json.loads(cluster.kubectl("get", "roles", "-A", "-l", "app.kubernetes.io/instance=mrc", "-o",
                                           "json").stdout)["items"]  # fmt: skip
        # The only namespaced Role: the Lease, in the release namespace.
        assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles] == [
            (namespace, "mrc-modelrollout-leader-election")
        ]

        sa = sa_kubeconfig(cluster, namespace, "mrc-modelrollout", tmp_path / "sa.kubeconfig")
        allowed(sa, "get", "mdep", "--all-namespaces")
        allowed(sa, "get", "crd")
        assert can_i(sa, "patch", "modeldeployments.modelrollout.io", "--subresource=status", "-A")
        assert not can_i(sa, "patch", "modeldeployments.modelrollout.io", "-A")
        assert can_i(sa, "create", "secrets", "-n", workload_ns)
        for verb in ("get", "list", "watch", "update", "patch", "delete"):
            assert not can_i(sa, verb, "secrets", "-A"), f"{verb} secrets must be denied"
        denied(sa, "get", "secrets", "--all-namespaces")
        denied(sa, "get", "secrets", "-n", workload_ns)
        denied(sa, "get", "configmaps", "-n", workload_ns)
        # Pods: listed (why a revision is not ready), nothing else.
        assert can_i(sa, "list", "pods", "-n", workload_ns)
        for verb in ("get", "watch", "delete", "create", "patch"):
            assert not can_i(sa, verb, "pods", "-n", workload_ns), f"{verb} pods must be denied"
        denied(sa, "get", "pod", "any", "-n", workload_ns)
        denied(sa, "create", "namespace", "x")
        denied(sa, "get", "nodes")
        denied(sa, "delete", "crd", "modeldeployments.modelrollout.io")
        denied(sa, "create", "clusterrolebinding", "x", "--clusterrole=cluster-admin", "--user=me")

        assert can_i(sa, "update", "leases.coordination.k8s.io", "-n", namespace)
        assert not can_i(sa, "update", "leases.coordination.k8s.io", "-n", workload_ns)

        log = tmp_path / "operator.log"
        election = [
            "--leader-elect",
            f"--leader-elect-namespace={namespace}",
            "--leader-elect-name=mrc-modelrollout-leader",
        ]
        with operator_as(sa, log, "--all-namespaces", *election):
            run_rollout(cluster, workload_ns)
            lease = cluster.get("lease", "mrc-modelrollout-leader", namespace)
            assert lease["spec"]["holderIdentity"], lease
        assert cluster.get("secret", "fraud-feedback-key", workload_ns) is not None
        assert_no_permission_errors(log)
