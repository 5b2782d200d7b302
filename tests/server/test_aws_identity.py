"""A model in a private bucket fetched with the pod's ServiceAccount identity instead of keys: IRSA's
web-identity token exchanged with STS, and EKS Pod Identity's credentials endpoint (both played on
loopback by ``hack/loopback/aws_identity.py``), the temporary keys then checked by the real store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from modelserver import aws_identity
from modelserver.errors import LoadError
from modelserver.s3 import S3Config, signed_headers

from hack.loopback.aws_identity import AwsIdentity
from hack.loopback.objectstore import ObjectStore
from tests.server.conftest import MODEL_NAME, MODELS, STORED_DIGEST, STORED_MODEL, ServerFactory, serve_uri
from tests.server.conftest import load_failure as failure
from tests.server.test_storage import ACCESS, SECRET

ROLE = "arn:aws:iam::000000000000:role/fraud-model-reader"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.projected-serviceaccount-token.signature"
URI = "s3://models/fraud/v1/model.onnx"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with ObjectStore(tmp_path_factory.mktemp("s3-identity"), ACCESS, SECRET) as store:
        store.put("models", "fraud/v1/model.onnx", STORED_MODEL)
        store.put("models", "fraud/v1/metadata.json", (MODELS / "metadata.json").read_bytes())
        yield store


@pytest.fixture
def aws(store: ObjectStore) -> Iterator[AwsIdentity]:
    """Without session tokens: versitygw refuses any it did not mint (see hack/loopback/aws_identity.py)."""
    with AwsIdentity(ROLE, TOKEN, (ACCESS, SECRET), session_tokens=False) as aws:
        yield aws


def token_file(tmp_path: Path, token: str = TOKEN) -> str:
    path = tmp_path / f"token-{len(list(tmp_path.glob('token-*')))}"
    path.write_text(token + "\n")
    return str(path)


def no_keys(store: ObjectStore) -> dict[str, str]:
    """The store and region, and no keys (an empty value reads as unset)."""
    return {"AWS_ENDPOINT_URL_S3": store.url, "AWS_REGION": store.region, "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": ""}  # fmt: skip


def start(factory: ServerFactory, env: dict[str, str], ready: bool = True):
    return serve_uri(factory, URI, env, ready)


def test_irsa_exchanges_the_projected_token_once_for_the_model_and_its_metadata(
    store: ObjectStore, aws: AwsIdentity, server_factory: ServerFactory, tmp_path: Path
) -> None:
    env = {**no_keys(store), "AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file(tmp_path),
           "AWS_ENDPOINT_URL_STS": aws.sts_url}  # fmt: skip
    server = start(server_factory, env)
    meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert meta["parameters"]["sha256"] == STORED_DIGEST and meta["parameters"]["features"]
    assert aws.exchanges == 1, "the keys are cached until they near their expiry"


def test_eks_pod_identity_gets_keys_from_the_agent_with_the_token_file(
    store: ObjectStore, aws: AwsIdentity, server_factory: ServerFactory, tmp_path: Path
) -> None:
    env = {**no_keys(store), "AWS_CONTAINER_CREDENTIALS_FULL_URI": aws.pod_identity_url,
           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": token_file(tmp_path)}  # fmt: skip
    start(server_factory, env)
    assert aws.exchanges == 1


def test_refused_identities_keep_the_server_unready_with_what_to_check(
    store: ObjectStore, aws: AwsIdentity, server_factory: ServerFactory, tmp_path: Path
) -> None:
    wrong = token_file(tmp_path, "not-the-token")
    irsa = {**no_keys(store), "AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": wrong,
            "AWS_ENDPOINT_URL_STS": aws.sts_url}  # fmt: skip
    reason = failure(start(server_factory, irsa, ready=False))
    assert f"STS AssumeRoleWithWebIdentity for {ROLE}" in reason and "HTTP 400 InvalidIdentityToken" in reason
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in reason and "not-the-token" not in reason
    other_role = {**irsa, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file(tmp_path), "AWS_ROLE_ARN": ROLE + "-other"}
    assert "HTTP 403 AccessDenied" in failure(start(server_factory, other_role, ready=False))
    agent = {**no_keys(store), "AWS_CONTAINER_CREDENTIALS_FULL_URI": aws.pod_identity_url,
             "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": wrong}  # fmt: skip
    reason = failure(start(server_factory, agent, ready=False))
    assert "container credentials endpoint" in reason and "HTTP 401 AccessDeniedException" in reason
    half = {**no_keys(store), "AWS_ROLE_ARN": ROLE}
    assert "AWS_WEB_IDENTITY_TOKEN_FILE is not set" in failure(start(server_factory, half, ready=False))
    assert aws.exchanges == 0


def test_static_keys_win_and_no_identity_means_anonymous(aws: AwsIdentity, tmp_path: Path) -> None:
    aws_identity.forget()
    keyed = S3Config(access_key="AKID", secret_key="s")
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file(tmp_path), "AWS_ENDPOINT_URL_STS": aws.url}
    assert aws_identity.with_pod_identity(keyed, 2, env) is keyed
    assert aws_identity.with_pod_identity(S3Config(), 2, {}) == S3Config()
    assert aws.exchanges == 0


def test_keys_are_exchanged_again_when_they_near_their_expiry(aws: AwsIdentity, tmp_path: Path) -> None:
    aws_identity.forget()
    aws.session_tokens = True
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file(tmp_path), "AWS_ENDPOINT_URL_STS": aws.url}
    first = aws_identity.with_pod_identity(S3Config(), 2, env)
    assert (first.access_key, first.session_token) == (ACCESS, "session-1")
    assert aws_identity.with_pod_identity(S3Config(), 2, env).session_token == "session-1"  # cached
    aws.lifetime = aws.lifetime.__class__(seconds=60)  # inside the five-minute margin: never reused
    aws_identity.forget()
    assert aws_identity.with_pod_identity(S3Config(), 2, env).session_token == "session-2"
    assert aws_identity.with_pod_identity(S3Config(), 2, env).session_token == "session-3"
    aws.token = "rotated"  # the kubelet rotated the projected token: the file is read per exchange
    Path(env["AWS_WEB_IDENTITY_TOKEN_FILE"]).write_text("rotated")
    assert aws_identity.with_pod_identity(S3Config(), 2, env).session_token == "session-4"


def test_an_unreachable_sts_fails_fast_with_the_endpoint(tmp_path: Path) -> None:
    aws_identity.forget()
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file(tmp_path),
           "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"}  # fmt: skip
    started = time.monotonic()
    with pytest.raises(LoadError, match="could not be reached"):
        aws_identity.with_pod_identity(S3Config(), 2, env)
    assert time.monotonic() - started < 5


def test_a_session_token_is_sent_and_signed() -> None:
    """What a store that knows the session checks: the token travels in x-amz-security-token and is
    one of the signed headers (versitygw cannot check it here: it refuses sessions it did not mint)."""
    url = "https://models.s3.us-east-1.amazonaws.com/fraud/model.onnx"
    plain = signed_headers(S3Config(access_key="AKID", secret_key="s"), url, NOW)
    session = signed_headers(S3Config(access_key="AKID", secret_key="s", session_token="tok"), url, NOW)
    assert "x-amz-security-token" not in plain and session["x-amz-security-token"] == "tok"
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token," in session["authorization"]
    assert session["authorization"].split("Signature=")[1] != plain["authorization"].split("Signature=")[1]
