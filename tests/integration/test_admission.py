"""The API server itself rejects invalid ModelDeployments at admission, naming the field."""

import copy

import pytest
import yaml

pytestmark = pytest.mark.cluster

VALID = {
    "apiVersion": "modelrollout.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "adm"},
    "spec": {
        "model": {"name": "fraud", "uri": "https://m/a.onnx"},
        "traffic": {"none": {}},
        "analysis": {"prometheus": {"address": "http://prom:9090"}, "metrics": [{"name": "error-rate", "max": 0.01}]},
    },
}


GW = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}


def mutate(path: str, value):
    obj = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return obj


def ab_with(traffic: dict) -> dict:
    """VALID as an A/B test on ``traffic``."""
    obj = mutate("spec.traffic", traffic)
    obj["spec"]["strategy"] = {"abTest": {"split": 50}}
    return obj


def shadow_with(traffic: dict, percent: int = 100) -> dict:
    """VALID with a shadow phase on ``traffic``."""
    obj = mutate("spec.traffic", traffic)
    obj["spec"]["strategy"] = {"canary": {"shadow": {"percent": percent}}}
    return obj


PROM = {"address": "http://prom:9090"}
TLS_PROM = {"address": "https://prom:9090"}
REF = {"name": "prom", "key": "token"}
BASIC = {"username": {"name": "prom", "key": "user"}, "password": {"name": "prom", "key": "password"}}

INVALID = [
    ("steps not increasing", mutate("spec.strategy", {"canary": {"steps": [10, 5, 100]}}),
     ["spec.strategy.canary.steps", "strictly increasing"]),
    ("last step not 100", mutate("spec.strategy", {"canary": {"steps": [10, 50]}}),
     ["spec.strategy.canary.steps", "last canary step must be 100"]),
    ("step out of range", mutate("spec.strategy", {"canary": {"steps": [-1, 100]}}),
     ["spec.strategy.canary.steps", "0"]),
    ("dark step without canary routes", mutate("spec.strategy", {"canary": {"steps": [0, 100]}}),
     ["spec.strategy.canary.steps", "needs traffic.canaryRoutes"]),
    ("two strategies", mutate("spec.strategy", {"canary": {"steps": [100]}, "blueGreen": {}}),
     ["spec.strategy", "set one strategy: canary, blueGreen or abTest"]),
    ("an A/B test and a canary", mutate("spec.strategy", {"canary": {"steps": [100]}, "abTest": {}}),
     ["spec.strategy", "set one strategy: canary, blueGreen or abTest"]),
    ("an A/B test with canary routes",
     ab_with({**GW, "canaryRoutes": [{"header": {"name": "x", "value": "1"}}]}),
     ["spec.strategy.abTest", "remove them for the experiment"]),
    ("an A/B metric with half a pair", mutate("spec.strategy", {"abTest": {"metric": {"name": "cv", "trials": "x"}}}),
     ["spec.strategy.abTest.metric.successes", "set successes and trials together"]),
    ("an A/B split of 100", mutate("spec.strategy", {"abTest": {"split": 100}}),
     ["spec.strategy.abTest.split", "99"]),
    ("preview longer than its maximum",
     mutate("spec.strategy", {"blueGreen": {"previewDuration": "10m", "maxPreviewDuration": "5m"}}),
     ["spec.strategy.blueGreen.maxPreviewDuration", "at least previewDuration"]),
    ("canary routes without a traffic layer",
     mutate("spec.traffic", {"none": {}, "canaryRoutes": [{"header": {"name": "x-canary", "value": "1"}}]}),
     ["spec.traffic.canaryRoutes", "need a traffic layer"]),
    ("canary route with header and cookie",
     mutate("spec.traffic", {**GW, "canaryRoutes": [{"header": {"name": "x", "value": "1"}, "cookie": {"name": "c"}}]}),
     ["spec.traffic.canaryRoutes[0]", "exactly one of header or cookie"]),
    ("header name that is no token",
     mutate("spec.traffic", {**GW, "canaryRoutes": [{"header": {"name": "x y", "value": "1"}}]}),
     ["spec.traffic.canaryRoutes[0].header.name"]),
    ("two header routes on nginx",
     mutate("spec.traffic", {"nginx": {"host": "a.example.com"},
                             "canaryRoutes": [{"header": {"name": n, "value": "1"}} for n in ("a", "b")]}),
     ["spec.traffic.canaryRoutes", "at most one header and one cookie"]),
    ("nginx cookie value other than always",
     mutate("spec.traffic", {"nginx": {"host": "a.example.com"},
                             "canaryRoutes": [{"cookie": {"name": "c", "value": "yes"}}]}),
     ["spec.traffic.canaryRoutes", "'always'"]),
    ("two traffic providers", mutate("spec.traffic", {"none": {}, "nginx": {"host": "a.example.com"}}),
     ["spec.traffic", "exactly one traffic provider"]),
    ("no traffic provider", mutate("spec.traffic", {}), ["spec.traffic", "exactly one traffic provider"]),
    ("unparseable interval", mutate("spec.analysis.interval", "10 minutes"), ["spec.analysis.interval"]),
    ("duration too short", mutate("spec.analysis.interval", "0s"), ["spec.analysis.interval", "at least 1s"]),
    ("unknown gate without template", mutate("spec.analysis.metrics", [{"name": "foo", "max": 1}]),
     ["spec.analysis.metrics[0].template", "set template"]),
    ("min above max", mutate("spec.analysis.metrics", [{"name": "accuracy", "min": 0.9, "max": 0.5}]),
     ["spec.analysis.metrics[0].min", "min must be <= max"]),
    ("ratio out of range", mutate("spec.analysis.metrics", [{"name": "error-rate", "max": 1.5}]),
     ["spec.analysis.metrics[0].max", "proportions between 0 and 1"]),
    ("slow-requests without its SLO", mutate("spec.analysis.metrics", [{"name": "slow-requests", "max": 0.01}]),
     ["spec.analysis.metrics[0].slowerThanMs", "slowerThanMs (the latency SLO in milliseconds) is required"]),
    ("SLO on another gate", mutate("spec.analysis.metrics", [{"name": "error-rate", "max": 0.1, "slowerThanMs": 5}]),
     ["spec.analysis.metrics[0].slowerThanMs", "not allowed otherwise"]),
    ("margin above 1", mutate("spec.analysis.metrics", [{"name": "accuracy", "maxDropVsStable": 2}]),
     ["spec.analysis.metrics[0].max", "proportions between 0 and 1"]),
    ("maxStepDuration under stepDuration",
     mutate("spec.strategy", {"canary": {"steps": [50, 100], "stepDuration": "10m", "maxStepDuration": "5m"}}),
     ["spec.strategy.canary.maxStepDuration", "at least stepDuration"]),
    ("watch window too short", mutate("spec.analysis.continuous", {"window": "10s"}),
     ["spec.analysis.continuous.window", "at least 1m"]),
    ("custom without query", mutate("spec.analysis.metrics", [{"name": "q", "template": "custom", "max": 1}]),
     ["spec.analysis.metrics[0].query", "query is required"]),
    ("gate without threshold", mutate("spec.analysis.metrics", [{"name": "error-rate"}]),
     ["spec.analysis.metrics[0]", "at least one threshold"]),
    ("duplicate gates", mutate("spec.analysis.metrics", [{"name": "error-rate", "max": 0.1}] * 2),
     ["spec.analysis.metrics", "unique"]),
    ("authorization and basic auth",
     mutate("spec.analysis.prometheus", {**PROM, "authorization": {"credentials": REF}, "basicAuth": BASIC}),
     ["spec.analysis.prometheus.basicAuth", "set one of authorization and basicAuth"]),
    ("tls on an http address", mutate("spec.analysis.prometheus", {**PROM, "tls": {"ca": REF}}),
     ["spec.analysis.prometheus.tls", "tls needs an https:// address"]),
    ("client certificate without its key", mutate("spec.analysis.prometheus", {**TLS_PROM, "tls": {"cert": REF}}),
     ["spec.analysis.prometheus.tls.cert", "cert and key go together"]),
    ("a CA that would be ignored",
     mutate("spec.analysis.prometheus", {**TLS_PROM, "tls": {"ca": REF, "insecureSkipVerify": True}}),
     ["spec.analysis.prometheus.tls.insecureSkipVerify", "ca is ignored"]),
    ("Basic as a token scheme",
     mutate("spec.analysis.prometheus", {**PROM, "authorization": {"type": "basic", "credentials": REF}}),
     ["spec.analysis.prometheus.authorization.type", "use basicAuth for Basic credentials"]),
    ("an Authorization header in headers",
     mutate("spec.analysis.prometheus", {**PROM, "headers": [{"name": "Authorization", "value": "Bearer x"}]}),
     ["spec.analysis.prometheus.headers[0].name", "set by the operator"]),
    ("one header twice",
     mutate("spec.analysis.prometheus", {**PROM, "headers": [{"name": n, "value": "1"} for n in ("X-A", "x-a")]}),
     ["spec.analysis.prometheus.headers", "header names must be unique"]),
    ("a Secret name that is no name",
     mutate("spec.analysis.prometheus", {**PROM, "authorization": {"credentials": {"name": "Prom_Token", "key": "t"}}}),
     ["spec.analysis.prometheus.authorization.credentials.name"]),
    ("storage on an https model", mutate("spec.model.storage", {"secretName": "store"}),
     ["spec.model.storage", "storage is for s3://, gs://, azure://, abfs[s]:// and oci:// URIs"]),
    ("plain HTTP for a bucket",
     mutate("spec.model", {"name": "fraud", "uri": "s3://m/a.onnx", "storage": {"plainHTTP": True}}),
     ["spec.model.storage.plainHTTP", "plainHTTP is for oci:// URIs"]),
    ("an endpoint for a registry",
     mutate("spec.model", {"name": "fraud", "uri": "oci://r.example.com/m:v1", "storage": {"endpoint": "http://x"}}),
     ["spec.model.storage.endpoint", "endpoint is for s3://, gs://, azure:// and abfs[s]:// URIs"]),
    ("a region for a GCS bucket",
     mutate("spec.model", {"name": "fraud", "uri": "gs://m/a.onnx", "storage": {"region": "europe-west1"}}),
     ["spec.model.storage.region", "region is for s3:// URIs"]),
    ("gs uri without an object", mutate("spec.model.uri", "gs://bucket/"), ["spec.model.uri"]),
    ("a region for an Azure container",
     mutate("spec.model", {"name": "fraud", "uri": "azure://acct/models/a.onnx", "storage": {"region": "westeurope"}}),
     ["spec.model.storage.region", "region is for s3:// URIs"]),
    ("azure uri without a container", mutate("spec.model.uri", "azure://acct/a.onnx"), ["spec.model.uri"]),
    ("abfss uri on the blob host", mutate("spec.model.uri", "abfss://models@acct.blob.core.windows.net/a.onnx"),
     ["spec.model.uri"]),
    ("s3 uri without a key", mutate("spec.model.uri", "s3://bucket/"), ["spec.model.uri"]),
    ("gRPC on the HTTP port", mutate("spec.serving", {"grpcPort": 8080}), ["spec.serving.grpcPort", "must differ"]),
    ("CUDA without a GPU", mutate("spec.serving", {"executionProvider": "CUDA"}),
     ["spec.serving.executionProvider", "CUDA needs a GPU"]),
    ("pvc uri without a path", mutate("spec.model.uri", "pvc://models/"), ["spec.model.uri"]),
    ("a volume named like the model store", mutate("spec.serving.volumes", [{"name": "model-store", "emptyDir": {}}]),
     ["spec.serving.volumes", "model-store"]),
    ("unsupported uri scheme", mutate("spec.model.uri", "ftp://bucket/model.onnx"), ["spec.model.uri"]),
    ("bad sha256", mutate("spec.model.sha256", "XYZ"), ["spec.model.sha256"]),
    ("negative replicas", mutate("spec.serving.replicas", -1), ["spec.serving.replicas"]),
    ("name too long", mutate("metadata.name", "a" * 41), ["metadata.name", "at most 40 characters"]),
    ("drift gate without a PSI bound", mutate("spec.analysis.metrics", [{"name": "drift", "max": 0.2}]),
     ["spec.analysis.metrics[0].maxPSI", "a drift gate needs maxPSI and/or maxPSIVsStable"]),
    ("a PSI bound on another gate", mutate("spec.analysis.metrics", [{"name": "error-rate", "max": 0.1, "maxPSI": 1}]),
     ["spec.analysis.metrics[0].maxPSI", "other gates take neither"]),
    ("a drift gate with a max", mutate("spec.analysis.metrics", [{"name": "drift", "maxPSI": 0.2, "max": 0.1}]),
     ["spec.analysis.metrics[0].max", "a drift gate's thresholds are maxPSI and maxPSIVsStable"]),
    ("features on another gate",
     mutate("spec.analysis.metrics", [{"name": "error-rate", "max": 0.1, "features": ["amount"]}]),
     ["spec.analysis.metrics[0].features", "features is for drift gates only"]),
    ("shadow without a traffic layer", mutate("spec.strategy", {"canary": {"shadow": {}}}),
     ["spec.strategy.canary.shadow", "traffic.none cannot mirror"]),
    ("shadow with canary routes", shadow_with({**GW, "canaryRoutes": [{"header": {"name": "x", "value": "1"}}]}),
     ["spec.strategy.canary.shadow", "answers no client"]),
    ("nginx shadow below 100 %", shadow_with({"nginx": {"host": "m.example.com", "path": "/v2"}}, percent=50),
     ["spec.strategy.canary.shadow.percent", "mirrors every request"]),
    ("agreement without a shadow", mutate("spec.analysis.metrics", [{"name": "agreement", "min": 0.9}]),
     ["spec.analysis.metrics", "set strategy.canary.shadow"]),
    ("score difference off the server's edges",
     mutate("spec.analysis.metrics", [{"name": "score-difference", "scoreDifferenceAbove": 0.15, "max": 0.1}]),
     ["spec.analysis.metrics[0].scoreDifferenceAbove", "bucket edges"]),
    ("agreement against stable", mutate("spec.analysis.metrics", [{"name": "agreement", "maxDropVsStable": 0.1}]),
     ["spec.analysis.metrics[0].maxDropVsStable", "already compare with the stable model"]),
    ("retraining without an image", mutate("spec.retraining", {"job": {"args": ["x"]}}),
     ["spec.retraining.job.image", "Required value"]),
    ("retraining backoff above its ceiling",
     mutate("spec.retraining", {"job": {"image": "t:1"}, "backoff": "2h", "maxBackoff": "1h"}),
     ["spec.retraining.maxBackoff", "maxBackoff must be at least backoff"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "manifest", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_rejected_by_api_server(cluster, namespace, case, manifest, expected):
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=False
    )
    assert proc.returncode != 0, f"{case}: accepted but should be rejected"
    assert "is invalid" in proc.stderr or "Invalid value" in proc.stderr, proc.stderr
    for fragment in expected:
        assert fragment in proc.stderr, f"{case}: {fragment!r} not in API server message: {proc.stderr}"


def test_valid_manifest_accepted(cluster, namespace):
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(VALID))
    assert "created (server dry run)" in proc.stdout


def test_azure_models_with_storage_are_accepted(cluster, namespace):
    storage = {"secretName": "blob-creds", "endpoint": "http://azurite.storage:10000/modelstore"}
    for uri in ("azure://modelstore/models/a.onnx", "abfss://models@modelstore.dfs.core.windows.net/a.onnx"):
        manifest = mutate("spec.model", {"name": "fraud", "uri": uri, "storage": storage})
        proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
        assert "created (server dry run)" in proc.stdout, uri


def test_every_prometheus_credential_is_accepted(cluster, namespace):
    manifest = mutate("spec.analysis.prometheus", {
        **TLS_PROM,
        "basicAuth": BASIC,
        "tls": {"ca": REF, "cert": {"name": "client", "key": "tls.crt"}, "key": {"name": "client", "key": "tls.key"}},
        "headers": [{"name": "X-Scope-OrgID", "value": "ml"}],
    })  # fmt: skip
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "created (server dry run)" in proc.stdout
    bearer = mutate("spec.analysis.prometheus", {**PROM, "authorization": {"type": "Token", "credentials": REF}})
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(bearer))
    assert "created (server dry run)" in proc.stdout


def test_a_dark_step_with_header_and_cookie_routes_is_accepted(cluster, namespace):
    manifest = mutate("spec.traffic", {**GW, "canaryRoutes": [
        {"header": {"name": "x-canary", "value": "always"}},
        {"header": {"name": "x-tester", "value": "^(alice|bob)$", "match": "RegularExpression"}},
        {"cookie": {"name": "canary"}},
    ]})  # fmt: skip
    manifest["spec"]["strategy"] = {"canary": {"steps": [0, 50, 100]}}
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "created (server dry run)" in proc.stdout


def test_a_blue_green_rollout_without_a_traffic_layer_is_accepted(cluster, namespace):
    manifest = mutate("spec.strategy", {"blueGreen": {"previewDuration": "1m", "scaleDownDelay": "5m"}})
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "created (server dry run)" in proc.stdout


def test_a_shadow_with_its_gates_is_accepted(cluster, namespace):
    manifest = mutate("spec.traffic", GW)
    manifest["spec"]["strategy"] = {"canary": {"steps": [20, 100], "shadow": {"percent": 25, "duration": "5m"}}}
    manifest["spec"]["analysis"]["metrics"] = [
        {"name": "agreement", "min": 0.97},
        {"name": "score-difference", "scoreDifferenceAbove": 0.1, "max": 0.05},
        {"name": "accuracy", "min": 0.8},
    ]
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "created (server dry run)" in proc.stdout


def test_an_ab_test_on_a_custom_metric_is_accepted(cluster, namespace):
    manifest = mutate("spec.traffic", GW)
    manifest["spec"]["strategy"] = {"abTest": {"split": 20, "minDuration": "2h", "maxDuration": "168h", "metric": {
        "name": "conversion",
        "successes": 'sum(increase(conversions_total{revision="{{revision}}"}[{{range}}]))',
        "trials": 'sum(increase(sessions_total{revision="{{revision}}"}[{{range}}]))',
    }}}  # fmt: skip
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "created (server dry run)" in proc.stdout
