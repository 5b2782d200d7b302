"""Models in Google Cloud Storage (``gs://``): with HMAC keys against a real SigV4-checking store
(versitygw, region ``auto``, as GCS's interoperability mode signs), and with a bearer token from a
loopback GCE metadata server (or ``GOOGLE_OAUTH_ACCESS_TOKEN``) against fake-gcs-server behind a
proxy that refuses any other token.

They show which credentials the loader picks from the environment, that the metadata server's token
is fetched once and shared by the model and its metadata.json, that refusals and missing objects
keep the server unready with a reason that says what to fix (never the secret), that an unreachable
metadata server fails fast instead of hanging the pod, and that key files are refused clearly.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver import gcs
from modelserver.errors import LoadError
from modelserver.loader import FetchPolicy, fetch, normalise_uri, sibling_uri

from hack.loopback.authproxy import BearerProxy
from hack.loopback.fakegcs import FakeGcs
from hack.loopback.gce_metadata import MetadataServer
from hack.loopback.objectstore import ObjectStore
from tests.server.conftest import (
    MODELS,
    STORED_DIGEST,
    STORED_MODEL,
    ServerFactory,
    ServerProcess,
    assert_served_with_metadata,
    serve_uri,
)
from tests.server.conftest import load_failure as failure

ACCESS, SECRET = "GOOG1EMODELROLLOUTTEST", "gcs-hmac-" + "h" * 31
TOKEN = "ya29.modelrollout-" + "t" * 40
URI = "gs://models/fraud/v1/model.onnx"
MODEL, DIGEST = STORED_MODEL, STORED_DIGEST
FILES = {"fraud/v1/model.onnx": MODEL, "fraud/v1/metadata.json": (MODELS / "metadata.json").read_bytes()}
# Every credential variable blank unless a test sets it: the developer's own environment must not leak in.
CREDENTIAL_VARIABLES = (
    "GCS_HMAC_ACCESS_KEY_ID", "GCS_HMAC_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST", "GCS_ENDPOINT",
)  # fmt: skip
CLEAN = dict.fromkeys(CREDENTIAL_VARIABLES, "")


def serve(factory: ServerFactory, env: dict[str, str], uri: str = URI, ready: bool = True) -> ServerProcess:
    return serve_uri(factory, uri, {**CLEAN, **env}, ready)


# ------------------------------------------------------------------------------- HMAC keys (SigV4)


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A private bucket that checks SigV4 for region ``auto``, the scope GCS's XML API signs for."""
    with ObjectStore(tmp_path_factory.mktemp("gcs-hmac"), ACCESS, SECRET, region="auto") as store:
        for name, data in FILES.items():
            store.put("models", name, data)
        yield store


def hmac_env(store: ObjectStore, secret: str = SECRET) -> dict[str, str]:
    return {"GCS_ENDPOINT": store.url, "GCS_HMAC_ACCESS_KEY_ID": ACCESS, "GCS_HMAC_SECRET": secret}


def test_hmac_keys_sign_for_a_private_bucket(interop: ObjectStore, server_factory: ServerFactory) -> None:
    assert_served_with_metadata(serve(server_factory, hmac_env(interop)))


def test_hmac_refusals_and_missing_objects_are_named(interop: ObjectStore, server_factory: ServerFactory) -> None:
    wrong = serve(server_factory, hmac_env(interop, secret="wrong-" + "x" * 34), ready=False)
    missing = serve(server_factory, hmac_env(interop), uri="gs://models/fraud/v9/model.onnx", ready=False)
    refused = failure(wrong)
    assert f"{URI}: the store refused the request (HTTP 403 SignatureDoesNotMatch)" in refused
    assert "GCS_HMAC_ACCESS_KEY_ID" in refused
    assert SECRET not in refused and SECRET not in wrong.logs()
    assert "gs://models/fraud/v9/model.onnx answered HTTP 404 NoSuchKey" in failure(missing)


# ---------------------------------------------------------------------------- OAuth2 bearer tokens


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BearerProxy]:
    """fake-gcs-server with the model, behind a proxy that forwards only ``Bearer TOKEN``."""
    with FakeGcs(tmp_path_factory.mktemp("gcs")) as store, BearerProxy(store.url, TOKEN) as proxy:
        for name, data in FILES.items():
            store.put("models", name, data)
        yield proxy


def test_a_workload_identity_token_is_fetched_once_and_cached(
    bucket: BearerProxy, server_factory: ServerFactory
) -> None:
    with MetadataServer(TOKEN) as metadata:
        served = serve(server_factory, {"GCS_ENDPOINT": bucket.url, "GCE_METADATA_HOST": metadata.host})
        assert_served_with_metadata(served)
        assert metadata.requests == 1, "the model and its metadata.json share one cached token"


def test_wrong_tokens_are_refused_with_the_reason(bucket: BearerProxy, server_factory: ServerFactory) -> None:
    with MetadataServer("ya29.not-the-token") as metadata:
        host = metadata.host
        from_metadata = serve(server_factory, {"GCS_ENDPOINT": bucket.url, "GCE_METADATA_HOST": metadata.host},
                              ready=False)  # fmt: skip
        static = serve(server_factory, {"GCS_ENDPOINT": bucket.url, "GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.stale"},
                       ready=False)  # fmt: skip
        refused = failure(from_metadata)
    assert f"{URI}: the store refused the request (HTTP 401 Unauthorized)" in refused
    assert f"the metadata server's token ({host})" in refused and "Workload Identity" in refused
    assert "GOOGLE_OAUTH_ACCESS_TOKEN" in failure(static)


def test_a_static_token_is_sent_as_is(bucket: BearerProxy, server_factory: ServerFactory) -> None:
    serve(server_factory, {"GCS_ENDPOINT": bucket.url, "GOOGLE_OAUTH_ACCESS_TOKEN": TOKEN})


# ------------------------------------------------------------------------------ units: no servers


def test_gs_uris_parse_and_map_to_the_xml_api() -> None:
    config = gcs.GcsConfig()
    assert gcs.parse_gs_uri("gs://models/fraud/v1/model.onnx") == ("models", "fraud/v1/model.onnx")
    assert gcs.object_url(config, "models", "a b/ü.onnx") == "https://storage.googleapis.com/models/a%20b/%C3%BC.onnx"
    assert normalise_uri(URI) == URI
    assert sibling_uri(URI, "metadata.json") == "gs://models/fraud/v1/metadata.json"
    for bad in ("gs://models", "gs://models/", "gs:///model.onnx", "gs://models/dir/", "gs://models/m.onnx?x=1"):
        with pytest.raises(LoadError, match="is not gs://<bucket>/<object> of one object"):
            gcs.parse_gs_uri(bad)


def test_credentials_are_chosen_from_the_environment(tmp_path: Path) -> None:
    def chosen(**env: str) -> gcs.GcsConfig:
        return gcs.GcsConfig.from_env(env, product_name=tmp_path / "product_name")

    hmac = chosen(GCS_HMAC_ACCESS_KEY_ID="GOOG1E", GCS_HMAC_SECRET=SECRET, AWS_ACCESS_KEY_ID="AKIA",
                  AWS_SECRET_ACCESS_KEY="aws", GOOGLE_OAUTH_ACCESS_TOKEN=TOKEN)  # fmt: skip
    assert hmac.hmac is not None and hmac.hmac.access_key == "GOOG1E" and hmac.hmac.region == "auto"
    assert SECRET not in repr(hmac) and hmac.credentials == "HMAC keys"
    aws = chosen(AWS_ACCESS_KEY_ID="GOOG1EAWS", AWS_SECRET_ACCESS_KEY=SECRET, GCS_ENDPOINT="http://gcs.local/")
    assert aws.hmac is not None and aws.hmac.access_key == "GOOG1EAWS" and aws.endpoint == "http://gcs.local"
    assert chosen(GOOGLE_OAUTH_ACCESS_TOKEN=TOKEN).headers("x") == {"Authorization": f"Bearer {TOKEN}"}
    assert chosen(GCE_METADATA_HOST="127.0.0.1:9").metadata_host == "127.0.0.1:9"
    anonymous = chosen()
    assert anonymous.credentials == "none (anonymous)" and anonymous.headers("x") == {}
    assert "Workload Identity" in anonymous.advice()
    (tmp_path / "product_name").write_text("Google Compute Engine\n")
    assert chosen().metadata_host == gcs.METADATA_HOST, "on GCE (GKE nodes) the metadata server is asked"
    with pytest.raises(LoadError, match="is not an http"):
        chosen(GCS_ENDPOINT="storage.googleapis.com")
    with pytest.raises(LoadError, match="incomplete: GCS_HMAC_SECRET is not set"):
        chosen(GCS_HMAC_ACCESS_KEY_ID="GOOG1E", AWS_ACCESS_KEY_ID="AKIA", AWS_SECRET_ACCESS_KEY="aws")


def test_a_service_account_key_file_is_refused_with_what_to_use(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nsecret"}))
    with pytest.raises(LoadError) as caught:
        gcs.GcsConfig.from_env({"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    message = str(caught.value)
    assert "type service_account) is not supported" in message and "PRIVATE KEY" not in message
    assert "Workload Identity (serving.serviceAccountName) or HMAC keys (model.storage.secretName)" in message


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_metadata_tokens_are_cached_until_shortly_before_they_expire() -> None:
    clock = _Clock()
    with MetadataServer("ya29.first", expires_in=600) as metadata:
        tokens = gcs.MetadataTokens(metadata.host, clock=clock)
        assert tokens.token() == "ya29.first" and tokens.token() == "ya29.first"
        assert metadata.requests == 1
        metadata.token = "ya29.second"
        clock.now += 600 - gcs.REFRESH_MARGIN - 1
        assert tokens.token() == "ya29.first", "still well within its lifetime"
        clock.now += 1
        assert tokens.token() == "ya29.second" and metadata.requests == 2


def test_a_silent_metadata_host_fails_fast() -> None:
    with socket.socket() as silent:  # listens, never answers: what a black-holed route looks like
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        tokens = gcs.MetadataTokens(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.2)
        started = time.monotonic()
        with pytest.raises(gcs.MetadataUnavailableError, match=r"did not answer within 0\.2s"):
            tokens.token()
        assert time.monotonic() - started < 2


def test_an_unreachable_metadata_server_is_retried_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: connection refused
        for name, value in {**CLEAN, "GCE_METADATA_HOST": host, "GCS_ENDPOINT": "http://127.0.0.1:9"}.items():
            monkeypatch.setenv(name, value)
        sleeps: list[float] = []
        with pytest.raises(LoadError) as caught:
            fetch(URI, FetchPolicy(1 << 20, timeout=1, retries=2, backoff_base=0.01), sleep=sleeps.append)
    assert f"download of {URI} failed after 3 attempts: the metadata server http://{host}" in str(caught.value)
    assert len(sleeps) == 2
