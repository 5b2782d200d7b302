"""The test bed on the real node: Traefik (Gateway API), Prometheus (Kubernetes service discovery),
a model store, and the chart's operator, each a pod that kubelet runs from a locally built image.

``Testbed.install()`` is idempotent (server-side apply, ``helm upgrade --install``). Every pod of
the test bed and of the scenarios lands on the real node because their namespaces carry the
PodNodeSelector / PodTolerationRestriction annotations (the API server enables both plugins when
the real node is up); the kwok nodes keep every other pod. The host reaches Traefik and Prometheus
through kube-proxy NodePorts on the node's address; pods reach them by ClusterIP (no cluster DNS).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from hack.realnode.kube import BIN, REPO, TESTENV, Kube, NodeInfo, wait_until

TESTBED_NS = "mr-testbed"
OPERATOR_NS = "modelrollout-system"
OPERATOR_LEASE = "modelrollout-leader"  # the chart's <fullname>-leader
OPERATOR_IMAGE = "localhost/modelrollout/operator:dev"
SERVER_IMAGE = "localhost/modelrollout/modelserver:dev"
GATEWAY_CLASS = "traefik"
TRAEFIK_PORT = 8000
MODELS = REPO / "examples" / "models"
NODE_SELECTOR = "modelrollout.io/node=real"
TOLERATIONS = [{"key": "modelrollout.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]


def _pin(name: str) -> str:
    """A version from hack/versions.env (the same pins the shell scripts build from)."""
    lines = (REPO / "hack/versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))[name]


def traefik_image() -> str:
    return f"localhost/modelrollout/traefik:{_pin('TRAEFIK_VERSION')}"


def prometheus_image() -> str:
    return f"localhost/modelrollout/prometheus:{_pin('PROMETHEUS_VERSION')}"


def real_node_namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A namespace whose pods all run on the real node (and tolerate its taint)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": labels or {},
            "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": NODE_SELECTOR,
                "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(TOLERATIONS),
            },
        },
    }


def _restricted() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip


def _deployment(name: str, containers: list[dict], sa: str | None = None, volumes: list | None = None) -> dict:
    spec: dict[str, Any] = {"containers": containers, "enableServiceLinks": False, "volumes": volumes or [],
                            "automountServiceAccountToken": sa is not None}  # fmt: skip
    if sa:
        spec["serviceAccountName"] = sa
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": TESTBED_NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }  # fmt: skip


def _service(name: str, port: int, node_port: bool = False) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": TESTBED_NS},
        "spec": {"type": "NodePort" if node_port else "ClusterIP", "selector": {"app": name},
                 "ports": [{"name": "http", "port": port, "targetPort": port}]},
    }  # fmt: skip


def _cluster_rbac(name: str, rules: list[dict]) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": TESTBED_NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": f"mr-{name}"},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"mr-{name}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"mr-{name}"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": TESTBED_NS}]},
    ]  # fmt: skip


def _probe(path: str, port: int, period: int = 2) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": 30}


PROMETHEUS_CONFIG = {
    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
    "scrape_configs": [
        {
            # What a user's Prometheus does with the prometheus.io/* annotations the operator puts on
            # every model-server pod: discover pods through the API server, keep the annotated ones.
            "job_name": "kubernetes-pods",
            "kubernetes_sd_configs": [{"role": "pod"}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep",
                 "regex": "true"},
                {"source_labels": ["__meta_kubernetes_pod_phase"], "action": "drop",
                 "regex": "Pending|Succeeded|Failed"},
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace",
                 "target_label": "__metrics_path__", "regex": "(.+)"},
                {"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                 "action": "replace", "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2",
                 "target_label": "__address__"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            ],
        }
    ],
}  # fmt: skip


def prometheus_objects() -> list[dict]:
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus", "namespace": TESTBED_NS},
              "data": {"prometheus.yml": json.dumps(PROMETHEUS_CONFIG, indent=1)}}  # fmt: skip
    container = {
        "name": "prometheus", "image": prometheus_image(), "imagePullPolicy": "Never",
        "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                 "--web.listen-address=:9090", "--storage.tsdb.retention.time=2h"],
        "ports": [{"containerPort": 9090}], "readinessProbe": _probe("/-/ready", 9090),
        "securityContext": _restricted(), "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                         {"name": "data", "mountPath": "/prometheus"}],
    }  # fmt: skip
    volumes = [{"name": "config", "configMap": {"name": "prometheus"}}, {"name": "data", "emptyDir": {}}]
    return [*_cluster_rbac("prometheus", rules), config,
            _deployment("prometheus", [container], sa="prometheus", volumes=volumes),
            _service("prometheus", 9090, node_port=True)]  # fmt: skip


def traefik_objects() -> list[dict]:
    rules = [
        {"apiGroups": [""], "resources": ["namespaces", "secrets", "configmaps", "services"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["*/status"], "verbs": ["update", "patch"]},
    ]  # fmt: skip
    container = {
        "name": "traefik", "image": traefik_image(), "imagePullPolicy": "Never",
        "args": [f"--entryPoints.web.address=:{TRAEFIK_PORT}", "--entryPoints.traefik.address=:8080",
                 "--ping=true", "--ping.entryPoint=traefik", "--providers.kubernetesgateway=true",
                 # Weight changes reach the data plane within half a second.
                 "--providers.providersThrottleDuration=500ms", "--log.level=INFO",
                 "--metrics.prometheus=true", "--metrics.prometheus.entryPoint=traefik",
                 # The read-only API on the internal entry point: what Traefik applied, for diagnosis.
                 "--api.insecure=true"],
        "ports": [{"containerPort": TRAEFIK_PORT}, {"containerPort": 8080}],
        "readinessProbe": _probe("/ping", 8080), "livenessProbe": {**_probe("/ping", 8080, 10), "failureThreshold": 3},
        "securityContext": _restricted(), "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }  # fmt: skip
    gateway_class = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                     "metadata": {"name": GATEWAY_CLASS},
                     "spec": {"controllerName": "traefik.io/gateway-controller"}}  # fmt: skip
    service = _service("traefik", TRAEFIK_PORT, node_port=True)
    return [*_cluster_rbac("traefik", rules), gateway_class,
            _deployment("traefik", [container], sa="traefik", volumes=[{"name": "tmp", "emptyDir": {}}]),
            service]  # fmt: skip


def model_store_objects() -> list[dict]:
    """The example ONNX files and their metadata.json behind plain HTTP, as a user's artifact store."""
    import base64

    # metadata.json beside the models names the classes: without it a label such as "fraud" matches
    # no predicted class index and every label counts as incorrect.
    paths = [*sorted(MODELS.glob("*.onnx")), MODELS / "metadata.json"]
    files = {p.name: base64.b64encode(p.read_bytes()).decode() for p in paths}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "models", "namespace": TESTBED_NS},
              "binaryData": files}  # fmt: skip
    container = {
        "name": "http", "image": SERVER_IMAGE, "imagePullPolicy": "Never",
        "command": ["python", "-m", "http.server", "8000", "--directory", "/models"],
        "ports": [{"containerPort": 8000}], "readinessProbe": _probe("/baseline.onnx", 8000),
        "securityContext": _restricted(), "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
    }  # fmt: skip
    return [config, _deployment("model-store", [container], volumes=[{"name": "models",
            "configMap": {"name": "models"}}]), _service("model-store", 8000)]  # fmt: skip


@dataclass
class Testbed:
    """The installed test bed: where the host and the pods reach each part."""

    kube: Kube
    node: NodeInfo

    @classmethod
    def connect(cls) -> Testbed:
        node = NodeInfo.load()
        if node is None:
            raise RuntimeError(
                f"no real node in {TESTENV}: start the cluster with it (make cluster-down; make cluster-up) "
                "or leave MODELROLLOUT_REAL_NODE unset"
            )
        return cls(Kube(), node)

    def _service(self, name: str) -> dict:
        svc = self.kube.get("svc", name, TESTBED_NS)
        if not svc:
            raise RuntimeError(f"service {TESTBED_NS}/{name} is missing: run Testbed.install() first")
        return svc

    def node_url(self, service: str) -> str:
        """The host's URL of a test-bed Service: the node's address and the Service's NodePort."""
        return f"http://{self.node.node_ip}:{self._service(service)['spec']['ports'][0]['nodePort']}"

    def cluster_url(self, service: str) -> str:
        """The pods' URL of a test-bed Service: its ClusterIP (there is no cluster DNS)."""
        svc = self._service(service)
        return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    @property
    def gateway_url(self) -> str:
        return self.node_url("traefik")

    @property
    def prometheus_url(self) -> str:
        return self.node_url("prometheus")

    def model_uri(self, model: str) -> str:
        return f"{self.cluster_url('model-store')}/{model}.onnx"

    # ------------------------------------------------------------------ install
    def build_and_load_images(self) -> None:
        """Build (cached) and copy into the node's containerd every image the test bed runs.

        ``MODELROLLOUT_SKIP_IMAGE_BUILD=1`` loads the images built last (while iterating on tests).
        """
        if os.environ.get("MODELROLLOUT_SKIP_IMAGE_BUILD") != "1":
            subprocess.run(["bash", str(REPO / "hack/images/build.sh"), "all"], check=True)
        images = [OPERATOR_IMAGE, SERVER_IMAGE, prometheus_image(), traefik_image()]
        subprocess.run(["bash", str(REPO / "hack/node/node.sh"), "load", *images], check=True)

    def install_crds(self) -> None:
        dirs = subprocess.run(["bash", str(REPO / "hack/fetch-crds.sh")], check=True, capture_output=True,
                              text=True).stdout.split()  # fmt: skip
        for d in [str(REPO / "crds"), dirs[0]]:
            self.kube.run("apply", "--server-side", "--force-conflicts", "--field-manager=modelrollout-tests",
                          "-f", d)  # fmt: skip
        self.kube.run("wait", "--for=condition=Established", "crd/modeldeployments.modelrollout.io",
                      "crd/httproutes.gateway.networking.k8s.io", "crd/gateways.gateway.networking.k8s.io",
                      "--timeout=60s")  # fmt: skip

    def install_operator(self, tick_seconds: int = 1) -> None:
        """``helm upgrade --install`` of charts/modelrollout with the locally built images."""
        self.kube.apply(real_node_namespace(OPERATOR_NS))
        subprocess.run(
            [str(BIN / "helm"), "upgrade", "--install", "modelrollout", str(REPO / "charts/modelrollout"),
             "--kubeconfig", str(self.kube.kubeconfig), "-n", OPERATOR_NS,
             "--set", "image.repository=localhost/modelrollout/operator", "--set", "image.tag=dev",
             "--set", "image.pullPolicy=Never", "--set", f"operator.modelServerImage={SERVER_IMAGE}",
             "--set", "operator.logFormat=plain", "--set", f"operator.tickSeconds={tick_seconds}",
             # Prometheus scrapes every second, so a gate window of 4 s already holds samples.
             "--set", "operator.extraEnv[0].name=MODELROLLOUT_MIN_QUERY_WINDOW",
             "--set-string", "operator.extraEnv[0].value=4s",
             "--wait", "--timeout", "300s"],
            check=True, env=self.kube.env, capture_output=True, text=True,
        )  # fmt: skip

    def install(self) -> None:
        t0 = time.monotonic()
        self.build_and_load_images()
        self.install_crds()
        self.kube.apply(real_node_namespace(TESTBED_NS))
        self.kube.apply(*prometheus_objects(), *traefik_objects(), *model_store_objects())
        self.install_operator()
        for name in ("prometheus", "traefik", "model-store"):
            self.kube.run("rollout", "status", f"deploy/{name}", "-n", TESTBED_NS, "--timeout=300s", timeout=320)
        self.kube.run("rollout", "status", "deploy/modelrollout", "-n", OPERATOR_NS, "--timeout=300s", timeout=320)
        wait_until(self._prometheus_ready, 60, "Prometheus ready through its NodePort")
        print(f"test bed ready in {time.monotonic() - t0:.0f}s: gateway {self.gateway_url}, "
              f"Prometheus {self.prometheus_url}", flush=True)  # fmt: skip

    def _prometheus_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.prometheus_url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def operator_pods(self) -> list[dict]:
        """The chart's operator pods that are not being deleted (two: a leader and a standby)."""
        pods = self.kube.items("pods", OPERATOR_NS, "app.kubernetes.io/name=modelrollout")
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def operator_pod(self) -> dict | None:
        live = self.operator_pods()
        return live[0] if live else None

    def leader(self) -> str | None:
        """The pod holding the operator's Lease (its identity is the pod name)."""
        lease = self.kube.get("lease", OPERATOR_LEASE, OPERATOR_NS)
        return None if lease is None else lease["spec"].get("holderIdentity")


if __name__ == "__main__":
    Testbed.connect().install()
