"""Models in a private bucket of a real S3-compatible store (versitygw), fetched with SigV4; in a real
OCI registry (CNCF distribution, htpasswd) as an artifact; and in a private Hugging Face repository
(``hf://``) behind a token.

The store checks every signature against its root user's keys, so these tests show the signer is
right (a model served), that refused or missing credentials keep the server unready with a reason
that says what to fix (and never the secret), and that a pod started after a rotation with the new
keys is served while the old keys are refused.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from modelserver.s3 import S3Config

from hack.loopback.objectstore import ObjectStore
from hack.loopback.registry import Registry, docker_config
from tests.server.conftest import (
    MODEL_NAME,
    MODELS,
    STORED_DIGEST,
    STORED_MODEL,
    ServerFactory,
    ServerProcess,
    serve_uri,
)
from tests.server.conftest import load_failure as failure

ACCESS, SECRET = "MODELROLLOUTTEST", "s3cr3t-" + "k" * 33
REFUSED = "the store refused the request (HTTP 403"
MODEL, DIGEST = STORED_MODEL, STORED_DIGEST


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with ObjectStore(tmp_path_factory.mktemp("s3"), ACCESS, SECRET) as store:
        store.put("models", "fraud/v1/model.onnx", MODEL)
        store.put("models", "fraud/v1/metadata.json", (MODELS / "metadata.json").read_bytes())
        yield store


def serve(
    factory: ServerFactory, env: dict[str, str], uri: str = "s3://models/fraud/v1/model.onnx", ready: bool = True
) -> ServerProcess:
    return serve_uri(factory, uri, env, ready, retries=1)


def test_a_model_in_a_private_bucket_is_served_with_the_pods_credentials(
    store: ObjectStore, server_factory: ServerFactory
) -> None:
    server = serve(server_factory, store.env())
    meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert meta["parameters"]["sha256"] == DIGEST
    assert meta["parameters"]["features"], "metadata.json was fetched from beside the model, signed too"
    features = {"amount": 12.5, "channel": "web", "account_age_days": 300, "hour": 14, "distance_km": 3.2}
    row = {"parameters": {"features": features}}
    answer = requests.post(f"{server.url}/v2/models/{MODEL_NAME}/infer", json=row, timeout=5)
    assert answer.status_code == 200, answer.text


def test_the_bucket_is_private(store: ObjectStore) -> None:
    assert requests.get(f"{store.url}/models/fraud/v1/model.onnx", timeout=5).status_code == 403


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-" + "x" * 34}, f"{REFUSED} SignatureDoesNotMatch)"),
        ({"AWS_ACCESS_KEY_ID": "NOSUCHKEY"}, "the store refused the request (HTTP 40"),
        ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, f"{REFUSED} AccessDenied)"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "S3 credentials are incomplete: AWS_SECRET_ACCESS_KEY is not set"),
    ],
    ids=["wrong-secret", "unknown-key", "no-credentials", "half-credentials"],
)  # fmt: skip
def test_refused_or_missing_credentials_keep_the_server_unready_with_the_reason(
    store: ObjectStore, server_factory: ServerFactory, env: dict[str, str], reason: str
) -> None:
    server = serve(server_factory, {**store.env(), **env}, ready=False)
    message = failure(server)
    assert reason in message
    assert "s3://models/fraud/v1/model.onnx" in message
    assert SECRET not in message and SECRET not in server.logs()


def test_a_missing_object_is_named(store: ObjectStore, server_factory: ServerFactory) -> None:
    server = serve(server_factory, store.env(), uri="s3://models/fraud/v9/model.onnx", ready=False)
    assert "s3://models/fraud/v9/model.onnx answered HTTP 404 NoSuchKey" in failure(server)


def test_after_a_rotation_new_pods_use_the_new_keys(tmp_path: Path, server_factory: ServerFactory) -> None:
    with ObjectStore(tmp_path / "s3", ACCESS, SECRET) as store:
        uri = store.put("models", "fraud/model.onnx", MODEL)
        old = store.env()
        store.rotate("ROTATEDKEY", "rotated-" + "r" * 32)
        refused = failure(serve(server_factory, old, uri=uri, ready=False))
        assert "the store refused the request (HTTP 40" in refused  # versitygw: 404 XAdminUserNotFound
        serve(server_factory, store.env(), uri=uri)  # ready: the pod that starts after the rotation


def test_the_config_never_shows_the_secret() -> None:
    config = S3Config.from_env({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET})
    assert SECRET not in repr(config) and "AKIA..." in repr(config)


class _PrivateHub(http.server.BaseHTTPRequestHandler):
    """The Hub's download layout (``/<owner>/<repo>/resolve/<revision>/<path>``) for one private
    repository: a bearer token is required, as for a private or gated repository."""

    token = "hf_" + "t" * 34

    def do_GET(self) -> None:
        prefix = "/acme/fraud/resolve/v1/"
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_error(401, "Unauthorized")
            return
        if not self.path.startswith(prefix) or not (MODELS / self.path.removeprefix(prefix)).is_file():
            self.send_error(404, "Entry not found")
            return
        data = (MODELS / self.path.removeprefix(prefix)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PrivateHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_hub_model_is_fetched_with_hf_token_and_refused_without(server_factory: ServerFactory, hub: str) -> None:
    """Against a local server with the Hub's URL layout (HF_ENDPOINT), not the Hub itself: no internet here."""
    args = ["--model-uri", "hf://acme/fraud@v1/baseline.onnx", "--model-name", MODEL_NAME, "--sha256", DIGEST,
            "--download-retries", "0"]  # fmt: skip
    served = server_factory.start(args, env={"HF_ENDPOINT": hub, "HF_TOKEN": _PrivateHub.token})
    meta = requests.get(f"{served.url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert meta["parameters"]["sha256"] == DIGEST and meta["parameters"]["features"], "metadata.json beside it too"
    refused = failure(server_factory.start(args, env={"HF_ENDPOINT": hub, "HF_TOKEN": ""}, ready=False))
    assert "hf://acme/fraud@v1/baseline.onnx: the Hub refused the request (HTTP 401" in refused
    assert "HF_TOKEN" in refused


# ------------------------------------------------------------------------------------------ oci://

REGISTRY_USER, REGISTRY_PASSWORD = "puller", "registry-" + "p" * 31


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, Path]]:
    """A real registry that wants credentials, with the model and its metadata pushed as one artifact."""
    workdir = tmp_path_factory.mktemp("registry")
    with Registry(workdir, {REGISTRY_USER: REGISTRY_PASSWORD}) as registry:
        files = {"model.onnx": MODEL, "metadata.json": (MODELS / "metadata.json").read_bytes()}
        digest = registry.push("models/fraud", "v1", files)
        config = docker_config(workdir / "docker", registry.host, REGISTRY_USER, REGISTRY_PASSWORD)
        yield registry, digest, config


def pull(factory: ServerFactory, uri: str, env: dict[str, str], ready: bool = True) -> ServerProcess:
    args = ["--model-uri", uri, "--model-name", MODEL_NAME, "--sha256", DIGEST, "--download-retries", "0"]
    return factory.start(args, env={"OCI_PLAIN_HTTP": "true", **env}, ready=ready)


def test_an_oci_artifact_is_pulled_with_the_docker_config(
    registry: tuple[Registry, str, Path], server_factory: ServerFactory
) -> None:
    reg, digest, config = registry
    for uri in (f"oci://{reg.host}/models/fraud:v1", f"oci://{reg.host}/models/fraud@{digest}#model.onnx"):
        served = pull(server_factory, uri, {"DOCKER_CONFIG": str(config)})
        meta = requests.get(f"{served.url}/v2/models/{MODEL_NAME}", timeout=5).json()
        assert meta["parameters"]["sha256"] == DIGEST
        assert meta["parameters"]["features"], "metadata.json came from the artifact's layer of that name"


def test_registry_refusals_say_what_to_fix(
    registry: tuple[Registry, str, Path], server_factory: ServerFactory, tmp_path: Path
) -> None:
    reg, _, _ = registry
    uri = f"oci://{reg.host}/models/fraud:v1"
    wrong = docker_config(tmp_path / "wrong", reg.host, REGISTRY_USER, "not-the-password")
    refused = failure(pull(server_factory, uri, {"DOCKER_CONFIG": str(wrong)}, ready=False))
    assert f"{uri}: the registry refused the request (HTTP 401" in refused and "not-the-password" not in refused
    anonymous = failure(pull(server_factory, uri, {"DOCKER_CONFIG": str(tmp_path / "none")}, ready=False))
    assert f"registry {reg.host} wants credentials and none are configured for it" in anonymous
    reg_config = registry[2]
    missing = failure(pull(server_factory, f"oci://{reg.host}/models/fraud:v9", {"DOCKER_CONFIG": str(reg_config)},
                           ready=False))  # fmt: skip
    assert f"oci://{reg.host}/models/fraud:v9 answered HTTP 404" in missing
