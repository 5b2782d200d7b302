"""A traffic provider whose API the cluster does not serve: the condition says which, and what to do.

Against the real API server: discovery answers for groups that do not exist, versions a group does
not serve and resources a group/version lacks; and the operator, with the HTTPRoute CRD deleted
from this (test-owned) cluster, reports the missing API instead of ``404 page not found``, then
recovers by itself once the CRD is back. The CRD is re-installed whatever happens.


The module's name sorts it after test_routers.py on purpose: it deletes and re-creates the HTTPRoute
CRD, and the garbage collector then needs its next discovery (every 30 s) before it collects
HTTPRoutes again, which test_routers.py waits for after every owner it deletes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from modelrollout.routers import apis, explain, missing_apis

from hack.loopback.cluster import Cluster, wait_until

pytestmark = pytest.mark.cluster

HTTPROUTES = "httproutes.gateway.networking.k8s.io"


def test_discovery_tells_what_is_missing(cluster, upstream_crds, api):
    for provider in apis.REQUIRED:
        assert missing_apis(provider, api) == [], f"{provider}: every API is installed here"

    nothing = apis.missing(apis.RouteAPI("widgets.example.invalid", "v1", "Widget", "widgets"), api)
    assert nothing is not None and nothing.served_versions == () and not nothing.group_version_served
    assert nothing.describe() == "widgets.example.invalid/v1 Widget: no widgets.example.invalid API is installed"

    old = apis.missing(apis.RouteAPI("gateway.networking.k8s.io", "v9", "HTTPRoute", "httproutes"), api)
    assert old is not None and "v1" in old.served_versions
    assert "gateway.networking.k8s.io is served only at v1" in old.describe()

    no_kind = apis.missing(apis.RouteAPI("networking.k8s.io", "v1", "Widget", "widgets"), api)
    assert no_kind is not None and no_kind.group_version_served
    assert no_kind.describe() == (
        "networking.k8s.io/v1 Widget (widgets): networking.k8s.io/v1 is served but has no widgets"
    )


def test_discovery_failure_hides_nothing(cluster):
    """An unreachable API server while explaining: no explanation, no exception (the 404 stands)."""
    from kubernetes import client

    conf = client.Configuration()
    conf.host = "https://127.0.0.1:1"
    with client.ApiClient(conf) as unreachable:
        unreachable.configuration.retries = 0
        assert missing_apis("gatewayAPI", unreachable) == []


@pytest.fixture
def without_httproutes(cluster: Cluster, upstream_crds: list[str]) -> Iterator[None]:
    """Delete the HTTPRoute CRD for one test; put the upstream one back afterwards, Established."""
    cluster.kubectl("delete", "crd", HTTPROUTES, "--wait=true", "--timeout=120s")
    wait_until(lambda: cluster.kubectl("api-resources", "--api-group=gateway.networking.k8s.io", "-o", "name")
               .stdout.count("httproutes") == 0, 60, what="httproutes gone from discovery")  # fmt: skip
    try:
        yield
    finally:
        restore(cluster, upstream_crds)


def restore(cluster: Cluster, dirs: list[str]) -> None:
    crd = next(f"{d}/{HTTPROUTES}.yaml" for d in dirs if "gateway" in d)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelrollout-tests", "-f", crd)
    cluster.wait_established(HTTPROUTES)


def manifest() -> dict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"name": "fraud", "uri": "https://models.example.com/a.onnx"},
            "serving": {"replicas": 1},
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "progressDeadlineSeconds": 60,
        },
    }


def status_of(cluster: Cluster, ns: str) -> dict:
    return (cluster.get("mdep", "fraud", ns) or {}).get("status") or {}


def degraded(status: dict) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == "Degraded"), {})


def test_a_missing_route_api_is_named_with_what_to_install_and_heals(
    cluster, operator, upstream_crds, namespace, without_httproutes
):
    cluster.apply(manifest(), namespace)
    cond = wait_until(lambda: (c := degraded(status_of(cluster, namespace))).get("reason") == "TrafficAPIMissing" and c,
                      90, 0.5, "Degraded=TrafficAPIMissing")  # fmt: skip
    assert cond["status"] == "True"
    message = cond["message"]
    assert message.startswith("traffic.gatewayAPI needs an API this cluster does not serve: ")
    assert "gateway.networking.k8s.io/v1 HTTPRoute (httproutes)" in message
    assert "install the Gateway API CRDs, standard channel v1.0 or later" in message
    assert "or choose another provider in spec.traffic (istio, nginx, none)" in message
    assert "404 page not found" not in message
    assert status_of(cluster, namespace).get("phase") == "Initializing", "nothing routed, nothing promoted"

    time.sleep(4)  # several ticks: the same explanation is one Event and one status write
    rv = cluster.get("mdep", "fraud", namespace)["metadata"]["resourceVersion"]
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=fraud",
                          "-o", "json").stdout  # fmt: skip
    warnings = [e for e in json.loads(out)["items"] if e["reason"] == "TrafficAPIMissing"]
    assert sum(e.get("count", 1) for e in warnings) == 1 and warnings[0]["type"] == "Warning"
    assert warnings[0]["message"] == message
    time.sleep(3)
    assert cluster.get("mdep", "fraud", namespace)["metadata"]["resourceVersion"] == rv, "no hot loop"
    assert operator.proc.poll() is None

    restore(cluster, upstream_crds)
    healed = wait_until(lambda: (s := status_of(cluster, namespace)).get("phase") == "Succeeded" and s, 90, 0.5,
                        "Succeeded once the CRD is back")  # fmt: skip
    assert degraded(healed)["status"] == "False"
    assert cluster.get("httproute", "fraud", namespace) is not None


def test_the_message_for_each_provider() -> None:
    gap = [apis.Missing(apis.REQUIRED["istio"][0])]
    text = explain("istio", gap)
    assert "networking.istio.io/v1 VirtualService: no networking.istio.io API is installed" in text
    assert "install Istio 1.22 or later" in text and "(gatewayAPI, nginx, none)" in text
    nginx = explain("nginx", [apis.Missing(apis.REQUIRED["nginx"][0], group_version_served=True)])
    assert "networking.k8s.io/v1 Ingress (ingresses)" in nginx and "Kubernetes 1.19" in nginx
