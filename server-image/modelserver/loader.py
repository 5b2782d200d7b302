"""Fetch model artifacts from ``file://``, ``http(s)://``, ``s3://``, ``gs://``, ``azure://`` (and
``abfs[s]://``), ``hf://`` and ``oci://`` URIs, bounded and verified.

Why: a model server that silently serves the wrong bytes defeats every rollout gate. Downloads are
retried only for transient failures (connection errors, timeouts, 408/429/5xx) with exponential
backoff and full jitter, are capped in size while streaming, and the sha256 check is done on the
exact bytes handed to onnxruntime. Nothing here ever unpickles: artifacts are opaque bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import __version__, aws_identity, azure, gcs, oci
from .errors import LoadError
from .s3 import S3Config, error_code, object_url, parse_s3_uri, signed_headers

log = logging.getLogger("modelserver.loader")

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 20
MAX_BACKOFF_SECONDS = 10.0
MANIFEST_MAX_BYTES = 4 * 1024 * 1024


class NotFoundError(LoadError):
    """The artifact does not exist (HTTP 404/410 or no such file) — never retried."""


class _TransientError(Exception):
    """A failure worth retrying."""


_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)
"""Failures to get an answer at all (HTTP and OCI downloads alike): worth another attempt."""


def _transient(exc: BaseException) -> _TransientError:
    if isinstance(exc, urllib.error.URLError):
        return _TransientError(f"connection failed: {exc.reason}")
    return _TransientError(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch: size cap, per-attempt timeout, retry budget and backoff base."""

    max_bytes: int
    timeout: float = 30.0
    retries: int = 5
    backoff_base: float = 0.5


def normalise_uri(uri: str) -> str:
    """Plain paths become ``file://`` URIs so users can pass either."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("file", "http", "https", "s3", "gs", "hf", "oci", *azure.SCHEMES):
        return uri
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] == ":\\"):
        return Path(uri).resolve().as_uri()
    raise LoadError(
        f"unsupported model URI scheme {parsed.scheme!r} in {uri!r}; "
        "use file://, http(s)://, s3://, gs://, azure:// (or abfs[s]://), hf:// or oci://"
    )


def sibling_uri(uri: str, name: str) -> str:
    """The URI of ``name`` in the same directory as ``uri`` (where ``metadata.json`` lives); for an
    OCI artifact, its layer of that name."""
    if uri.startswith("oci://"):
        return oci.sibling(uri, name)
    parsed = urllib.parse.urlparse(normalise_uri(uri))
    directory = parsed.path.rsplit("/", 1)[0]
    return urllib.parse.urlunparse(parsed._replace(path=f"{directory}/{name}", query="", fragment=""))


def fetch(uri: str, policy: FetchPolicy, sleep: Callable[[float], None] = time.sleep) -> bytes:
    """Return the bytes at ``uri``; raises :class:`NotFoundError` or :class:`LoadError` with the reason."""
    uri = normalise_uri(uri)
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "file":
        return _read_file(uri, policy.max_bytes)
    if scheme == "s3":
        return _fetch_s3(uri, policy, sleep)
    if scheme == "gs":
        return _fetch_gcs(uri, policy, sleep)
    if scheme in azure.SCHEMES:
        return _fetch_azure(uri, policy, sleep)
    if scheme == "hf":
        return _fetch_hub(uri, policy, sleep)
    if scheme == "oci":
        return _fetch_oci(uri, policy, sleep)
    return _fetch_http(uri, policy, sleep)


HUB_ENDPOINT = "https://huggingface.co"


def hub_url(uri: str, endpoint: str = HUB_ENDPOINT) -> str:
    """``hf://<owner>/<repo>[@<revision>]/<path>`` -> the Hub's download URL of that file
    (``<endpoint>/<owner>/<repo>/resolve/<revision>/<path>``, revision ``main`` by default)."""
    parsed = urllib.parse.urlparse(uri)
    repo_part, _, path = parsed.path.lstrip("/").partition("/")
    repo, _, revision = repo_part.partition("@")
    if not parsed.netloc or not repo or not path or path.endswith("/"):
        raise LoadError(f"{uri!r} is not hf://<owner>/<repo>[@<revision>]/<path> of one file")
    quoted, rev = urllib.parse.quote(path, safe="/"), urllib.parse.quote(revision or "main", safe="")
    return f"{endpoint.rstrip('/')}/{parsed.netloc}/{repo}/resolve/{rev}/{quoted}"


def _fetch_hub(uri: str, policy: FetchPolicy, sleep: Callable[[float], None]) -> bytes:
    """A file of a Hugging Face Hub repository; ``HF_TOKEN`` (a private or gated repository) is sent
    as a bearer token, ``HF_ENDPOINT`` replaces the Hub (a mirror or a private Hub), as the Hub's own
    clients read them."""
    url = hub_url(uri, os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT)
    token = (os.environ.get("HF_TOKEN") or "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return _fetch_http(url, policy, sleep, sign=lambda: headers, shown=uri)


def _fetch_s3(uri: str, policy: FetchPolicy, sleep: Callable[[float], None]) -> bytes:
    """An object of S3 or an S3-compatible store, signed with the pod's keys, else with its
    ServiceAccount's AWS identity (IRSA, EKS Pod Identity: :mod:`.aws_identity`), else anonymous."""
    try:
        config = aws_identity.with_pod_identity(S3Config.from_env(), policy.timeout)
    except LoadError as exc:
        raise LoadError(f"{uri}: {exc}") from None
    bucket, key = parse_s3_uri(uri)
    url = object_url(config, bucket, key)
    return _fetch_http(url, policy, sleep, sign=lambda: signed_headers(config, url), shown=uri)


def _fetch_gcs(uri: str, policy: FetchPolicy, sleep: Callable[[float], None]) -> bytes:
    """An object of Google Cloud Storage's XML API, with HMAC keys, a bearer token or none (see :mod:`.gcs`)."""
    try:
        config = gcs.GcsConfig.from_env()
    except LoadError as exc:
        raise LoadError(f"{uri}: {exc}") from None
    url = gcs.object_url(config, *gcs.parse_gs_uri(uri))

    def sign() -> dict[str, str]:  # per attempt: a fresh signature, or the cached (or renewed) token
        try:
            return config.headers(url)
        except gcs.MetadataUnavailableError as exc:
            raise _TransientError(str(exc)) from None
        except LoadError as exc:
            raise LoadError(f"{uri}: {exc}") from None

    return _fetch_http(url, policy, sleep, sign=sign, shown=uri)


def _fetch_azure(uri: str, policy: FetchPolicy, sleep: Callable[[float], None]) -> bytes:
    """A blob of Azure Blob Storage (or Azurite), Shared Key signed, with a SAS or anonymous (see :mod:`.azure`)."""
    try:
        config = azure.AzureConfig.from_env()
    except LoadError as exc:
        raise LoadError(f"{uri}: {exc}") from None
    blob = azure.parse(uri)
    url = azure.request_url(config, blob)  # with the SAS, if any: never logged, ``shown`` is ``uri``
    return _fetch_http(url, policy, sleep, sign=lambda: azure.signed_headers(config, blob, url), shown=uri)


def _read_file(uri: str, max_bytes: int) -> bytes:
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(f"{path} is {size} bytes, above the limit of {max_bytes}")
        with path.open("rb") as handle:
            return handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise NotFoundError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise LoadError(f"{path} is a directory, expected a file") from exc
    except PermissionError as exc:
        raise LoadError(f"cannot read {path}: permission denied") from exc


def backoff_delay(attempt: int, base: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng() * min(MAX_BACKOFF_SECONDS, base * (2**attempt))


def _fetch_http(
    uri: str,
    policy: FetchPolicy,
    sleep: Callable[[float], None],
    sign: Callable[[], dict[str, str]] = dict,
    shown: str | None = None,
) -> bytes:
    """GET ``uri`` with retries; ``sign`` adds headers per attempt (a signature carries its time),
    ``shown`` is the URI named in logs and errors (the ``s3://`` one, not the endpoint's URL)."""
    shown = shown or uri
    return _with_retries(lambda: _http_get_once(uri, policy, sign(), shown), policy, sleep, shown)


def _with_retries(
    attempt: Callable[[], bytes], policy: FetchPolicy, sleep: Callable[[float], None], shown: str
) -> bytes:
    """``attempt()`` until it does not fail transiently, with full-jitter backoff between tries."""
    last: Exception | None = None
    for number in range(policy.retries + 1):
        if number:
            delay = backoff_delay(number - 1, policy.backoff_base)
            log.warning("retrying download", extra={"uri": shown, "attempt": number, "delay_s": round(delay, 3)})
            sleep(delay)
        try:
            return attempt()
        except _TransientError as exc:
            last = exc
    raise LoadError(f"download of {shown} failed after {policy.retries + 1} attempts: {last}")


def _fetch_oci(uri: str, policy: FetchPolicy, sleep: Callable[[float], None]) -> bytes:
    """One file of an OCI artifact (see :mod:`.oci`): its manifest, then its blob, digest checked."""
    ref = oci.parse(uri)
    return _with_retries(lambda: _oci_once(ref, uri, policy), policy, sleep, uri)


def _oci_once(ref: oci.Reference, uri: str, policy: FetchPolicy) -> bytes:
    registry = oci.Registry(ref.host, policy.timeout)
    repo = f"/v2/{ref.repository}"
    try:
        with registry.get(f"{repo}/manifests/{ref.reference}", accept=", ".join(oci.MANIFEST_TYPES)) as answer:
            manifest = json.loads(_read_limited(answer, MANIFEST_MAX_BYTES, uri))
        layer = oci.layer_for(manifest, ref, uri)
        digest, size = str(layer.get("digest", "")), layer.get("size")
        if not digest.startswith("sha256:"):
            raise LoadError(f"{uri}: the layer's digest {digest!r} is not a sha256 digest")
        if isinstance(size, int) and size > policy.max_bytes:
            raise LoadError(f"{uri} is {size} bytes, above the limit of {policy.max_bytes}")
        with registry.get(f"{repo}/blobs/{digest}") as answer:
            data = _read_limited(answer, policy.max_bytes, uri)
    except urllib.error.HTTPError as exc:
        detail = f"HTTP {exc.code} {exc.reason}"
        if exc.code == 404:
            raise NotFoundError(f"{uri} answered {detail}") from exc
        if exc.code in _RETRY_STATUS:
            raise _TransientError(detail) from exc
        if exc.code in (401, 403):
            raise LoadError(
                f"{uri}: the registry refused the request ({detail}): check the credentials for {ref.host} in "
                "$DOCKER_CONFIG/config.json (model.storage.secretName, a kubernetes.io/dockerconfigjson Secret)"
            ) from exc
        raise LoadError(f"{uri} answered {detail}") from exc
    except _NETWORK_ERRORS as exc:  # no answer at all (HTTPError, an answer, is caught above)
        raise _transient(exc) from exc
    except ValueError as exc:  # a manifest that is not JSON
        raise LoadError(f"{uri}: the registry's manifest is not JSON: {exc}") from None
    if sha256_hex(data) != digest.removeprefix("sha256:"):
        raise LoadError(f"{uri}: the blob's sha256 is not its digest {digest} (a registry or mirror changed it)")
    return data


def _http_get_once(uri: str, policy: FetchPolicy, headers: dict[str, str], shown: str) -> bytes:
    request = urllib.request.Request(uri, headers={"User-Agent": f"modelserver/{__version__}", **headers})
    try:
        with urllib.request.urlopen(request, timeout=policy.timeout) as response:
            return _read_limited(response, policy.max_bytes, shown)
    except urllib.error.HTTPError as exc:
        code = error_code(exc.read()) if shown.startswith(("s3://", "gs://")) else ""
        if azure.is_azure(shown):
            code = azure.error_code(exc.headers.get("x-ms-error-code"), exc.read())
        detail = f"HTTP {exc.code} {code or exc.reason}"
        # A store may answer 404 for an unknown access key too (versitygw: XAdminUserNotFound).
        if exc.code in (404, 410) and code in ("", "NoSuchKey", "NoSuchBucket", "BlobNotFound", "ContainerNotFound"):
            raise NotFoundError(f"{shown} answered {detail}") from exc
        if exc.code in _RETRY_STATUS:
            raise _TransientError(detail) from exc
        if exc.code in (401, 403) and shown.startswith("hf://"):
            raise LoadError(
                f"{shown}: the Hub refused the request ({detail}): a private or gated repository needs HF_TOKEN "
                "(serving.env from a Secret) with access to it"
            ) from exc
        if exc.code in (401, 403, 404) and shown.startswith("s3://"):
            raise LoadError(
                f"{shown}: the store refused the request ({detail}): check the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, from model.storage.secretName, or the role of the "
                "pod's ServiceAccount), the region and the bucket policy"
            ) from exc
        if exc.code in (401, 403, 404) and shown.startswith("gs://"):
            raise LoadError(f"{shown}: the store refused the request ({detail}): {gcs.refusal_advice()}") from exc
        if exc.code in (401, 403, 404) and azure.is_azure(shown):
            raise LoadError(f"{shown}: the store refused the request ({detail}): {azure.REFUSAL_ADVICE}") from exc
        raise LoadError(f"{shown} answered {detail}") from exc
    except _NETWORK_ERRORS as exc:  # no answer at all (HTTPError, an answer, is caught above)
        raise _transient(exc) from exc


def _read_limited(response: http.client.HTTPResponse, max_bytes: int, uri: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise LoadError(f"{uri} is {declared} bytes, above the limit of {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise LoadError(f"{uri} is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if declared is not None and declared.isdigit() and len(data) != int(declared):
        raise _TransientError(f"short read: got {len(data)} of {declared} bytes")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_sha256(data: bytes, expected: str | None, what: str) -> str:
    """Return the digest of ``data``; raise :class:`LoadError` if it differs from ``expected``."""
    actual = sha256_hex(data)
    if expected is not None and actual != expected.lower():
        raise LoadError(f"sha256 mismatch for {what}: expected {expected.lower()}, got {actual}")
    return actual
