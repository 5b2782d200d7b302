"""Models in a private container of a real Blob Storage API (Azurite), fetched with ``azure://`` and
``abfss://`` URIs: Shared Key signed with the account key, or with a SAS token.

Azurite checks every Shared Key signature and every SAS against its account's key, so these tests
show the signer is right (a model served, its ``metadata.json`` beside it), and that a wrong key, no
credentials or a missing blob keep the server unready with a reason that names the URI, the HTTP
status and Azure's error code, and never the key or the SAS. The string-to-sign is also checked
against hand-written examples of Microsoft's documented layout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from modelserver.azure import AzureConfig, Blob, blob_url, parse, request_url, signed_headers, string_to_sign
from modelserver.errors import LoadError
from modelserver.loader import normalise_uri, sibling_uri

from hack.loopback.azurite import Azurite, AzuriteNotInstalledError, account_sas, find_binary, new_key
from tests.server.conftest import (
    MODEL_NAME,
    MODELS,
    STORED_DIGEST,
    STORED_MODEL,
    ServerFactory,
    ServerProcess,
    assert_served_with_metadata,
    serve_uri,
)
from tests.server.conftest import load_failure as failure

ACCOUNT, KEY = "modelstore", new_key("modelrollout-azure-test")
URI = f"azure://{ACCOUNT}/models/fraud/v1/model.onnx"
ABFSS = f"abfss://models@{ACCOUNT}.dfs.core.windows.net/fraud/v1/model.onnx"
REFUSED = f"{URI}: the store refused the request (HTTP 403 AuthorizationFailure)"  # Azurite's code for both cases
MODEL, DIGEST = STORED_MODEL, STORED_DIGEST


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    try:
        find_binary()
    except AzuriteNotInstalledError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{exc} (CI=true fails instead of skipping)")
    with Azurite(tmp_path_factory.mktemp("azurite"), ACCOUNT, KEY) as store:
        store.put("models", "fraud/v1/model.onnx", MODEL)
        store.put("models", "fraud/v1/metadata.json", (MODELS / "metadata.json").read_bytes())
        yield store


def serve(factory: ServerFactory, env: dict[str, str], uri: str = URI, ready: bool = True) -> ServerProcess:
    return serve_uri(factory, uri, env, ready)


def test_a_model_in_a_private_container_is_served_with_the_account_key(
    store: Azurite, server_factory: ServerFactory
) -> None:
    server = serve(server_factory, store.env())
    assert_served_with_metadata(server)
    features = {"amount": 12.5, "channel": "web", "account_age_days": 300, "hour": 14, "distance_km": 3.2}
    answer = requests.post(f"{server.url}/v2/models/{MODEL_NAME}/infer",
                           json={"parameters": {"features": features}}, timeout=5)  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_the_abfss_form_with_a_sas_token_serves_the_same_blob(store: Azurite, server_factory: ServerFactory) -> None:
    env = store.sas_env()
    server = serve(server_factory, env, uri=ABFSS)
    assert_served_with_metadata(server)
    signature = env["AZURE_STORAGE_SAS_TOKEN"].rsplit("sig=", 1)[1]
    assert signature not in server.logs() and "sig=" not in server.logs()


def test_the_container_is_private(store: Azurite) -> None:
    answer = requests.get(f"{store.endpoint}/models/fraud/v1/model.onnx", timeout=5)
    assert answer.status_code == 403 and answer.headers["x-ms-error-code"] == "AuthorizationFailure"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"AZURE_STORAGE_KEY": new_key("not-the-key")}, REFUSED),
        ({"AZURE_STORAGE_KEY": ""}, REFUSED),  # anonymous: the container is private
        ({"AZURE_STORAGE_KEY": "", "AZURE_STORAGE_SAS_TOKEN": account_sas(ACCOUNT, new_key("other"))}, REFUSED),
    ],
    ids=["wrong-key", "anonymous", "sas-of-another-key"],
)  # fmt: skip
def test_refused_or_missing_credentials_keep_the_server_unready_with_the_reason(
    store: Azurite, server_factory: ServerFactory, env: dict[str, str], reason: str
) -> None:
    server = serve(server_factory, {**store.env(), **env}, ready=False)
    message = failure(server)
    assert reason in message
    assert KEY not in message and KEY not in server.logs()


def test_a_missing_blob_is_named(store: Azurite, server_factory: ServerFactory) -> None:
    server = serve(server_factory, store.env(), uri=f"azure://{ACCOUNT}/models/fraud/v9/model.onnx", ready=False)
    assert f"azure://{ACCOUNT}/models/fraud/v9/model.onnx answered HTTP 404 BlobNotFound" in failure(server)


# ----------------------------------------------------------------------------- no Azurite needed


def test_both_uri_forms_name_the_same_blob_and_its_metadata() -> None:
    assert parse(URI) == Blob(ACCOUNT, "models", "fraud/v1/model.onnx")
    assert parse(ABFSS) == parse(ABFSS.replace("abfss://", "abfs://")) == parse(URI)
    public = f"https://{ACCOUNT}.blob.core.windows.net/models/fraud/v1/model.onnx"
    assert blob_url(AzureConfig(), parse(ABFSS)) == public
    china = parse("abfss://models@acct.dfs.core.chinacloudapi.cn/m.onnx")
    assert blob_url(AzureConfig(), china) == "https://acct.blob.core.chinacloudapi.cn/models/m.onnx"
    for uri in (URI, ABFSS):
        assert normalise_uri(uri) == uri
    assert sibling_uri(URI, "metadata.json") == f"azure://{ACCOUNT}/models/fraud/v1/metadata.json"
    assert parse(sibling_uri(ABFSS, "metadata.json")) == parse(sibling_uri(URI, "metadata.json"))


@pytest.mark.parametrize(
    "uri",
    ["azure://acct/container", "azure://acct/container/dir/", "azure:///container/m.onnx",
     "abfss://acct.dfs.core.windows.net/m.onnx", "abfss://c@acct.blob.core.windows.net/m.onnx"],
)  # fmt: skip
def test_malformed_uris_are_refused_with_the_expected_form(uri: str) -> None:
    with pytest.raises(LoadError, match="of one blob"):
        parse(uri)


def test_the_sas_is_the_query_only_without_a_key_and_never_in_the_repr() -> None:
    blob = parse(URI)
    sas = AzureConfig.from_env({"AZURE_STORAGE_SAS_TOKEN": "?sv=2023-11-03&sig=SECRET"})
    url = f"https://{ACCOUNT}.blob.core.windows.net/models/fraud/v1/model.onnx"
    assert request_url(sas, blob) == f"{url}?sv=2023-11-03&sig=SECRET"
    both = AzureConfig.from_env({"AZURE_STORAGE_KEY": KEY, "AZURE_STORAGE_SAS_TOKEN": "sig=SECRET"})
    assert "?" not in request_url(both, blob), "the key wins: a Shared Key request carries no SAS"
    assert "SECRET" not in repr(sas) and KEY not in repr(both) and "shared-key" in repr(both)
    assert signed_headers(sas, blob, request_url(sas, blob)) == {"x-ms-version": "2023-11-03"}
    with pytest.raises(LoadError, match="AZURE_STORAGE_KEY is not a base64 account key") as refused:
        AzureConfig.from_env({"AZURE_STORAGE_KEY": "not base64!"})
    assert "not base64!" not in str(refused.value)


def test_the_string_to_sign_of_a_get() -> None:
    """Microsoft's layout: the verb, eleven standard headers (all empty for a GET), the sorted
    x-ms- headers, then /<account><path> (the account twice under a path-style endpoint)."""
    url = "http://127.0.0.1:10000/devstoreaccount1/models/fraud%20v1/model.onnx"
    headers = {"x-ms-version": "2023-11-03", "x-ms-date": "Fri, 26 Jun 2015 23:39:12 GMT"}
    assert string_to_sign("GET", url, "devstoreaccount1", headers) == (
        "GET\n\n\n\n\n\n\n\n\n\n\n\n"
        "x-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\nx-ms-version:2023-11-03\n"
        "/devstoreaccount1/devstoreaccount1/models/fraud%20v1/model.onnx"
    )


def test_the_string_to_sign_of_a_put_with_a_query() -> None:
    """Content-Length 0 signs as empty (version 2015-02-21 on); query parameters are lowercased,
    sorted, and their decoded values sorted and comma-joined; x-ms- values have their whitespace folded."""
    url = "https://acct.blob.core.windows.net/models?restype=container&Comp=b%2Cc&comp=a"
    headers = {"Content-Length": "0", "Content-Type": "text/plain", "X-MS-Meta-Owner": "  ml   team ",
               "x-ms-version": "2023-11-03"}  # fmt: skip
    assert string_to_sign("put", url, "acct", headers) == (
        "PUT\n\n\n\n\ntext/plain\n\n\n\n\n\n\n"
        "x-ms-meta-owner:ml team\nx-ms-version:2023-11-03\n"
        "/acct/models\ncomp:a,b,c\nrestype:container"
    )


def test_the_authorization_header_is_the_hmac_of_the_string_to_sign() -> None:
    blob = parse(URI)
    url = blob_url(AzureConfig(), blob)
    now = datetime(2015, 6, 26, 23, 39, 12, tzinfo=UTC)
    headers = signed_headers(AzureConfig(key=KEY), blob, url, now=now)
    assert headers["x-ms-date"] == "Fri, 26 Jun 2015 23:39:12 GMT"
    text = string_to_sign("GET", url, ACCOUNT, {k: v for k, v in headers.items() if k != "Authorization"})
    expected = base64.b64encode(hmac.new(base64.b64decode(KEY), text.encode(), hashlib.sha256).digest()).decode()
    assert headers["Authorization"] == f"SharedKey {ACCOUNT}:{expected}"
