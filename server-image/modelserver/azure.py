"""``azure://`` and ``abfs[s]://`` models: one blob of Azure Blob Storage, as a signed HTTPS GET.

URI forms: ``azure://<account>/<container>/<blob path>`` and the Data Lake form Hadoop and Spark
write, ``abfs[s]://<container>@<account>.dfs.core.windows.net/<path>``, which names the same blob
(a hierarchical-namespace account serves every file on its Blob endpoint too).

Why our own Shared Key signer rather than the Azure SDK: a model server fetches one or two blobs
once per pod; the SDK would add its own HTTP stack and retry policy to the image, while a GET needs
only the string-to-sign below (fixed by Microsoft's "Authorize with Shared Key" specification), and
it reuses the loader's bounded, retried, size-capped download. Azurite in the tests checks every
signature, so a mistake here cannot pass.

Configuration, under the names Azure's own tools read: ``AZURE_STORAGE_KEY`` (an account key: Shared
Key authorization), else ``AZURE_STORAGE_SAS_TOKEN`` (a SAS, appended as the query string; the key
wins when both are set), else anonymous (a public container). The endpoint is
``https://<account>.blob.core.windows.net`` (``blob.<suffix>`` of an ``abfs`` host), or
``AZURE_STORAGE_BLOB_ENDPOINT`` (then path-style: ``<endpoint>/<container>/<blob>``, e.g. Azurite's
``http://127.0.0.1:10000/devstoreaccount1``). Neither secret is ever logged or put in an error: the
URI shown is the ``azure://`` one. Azure AD (workload identity, managed identity) is not done here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from .errors import LoadError

SCHEMES = ("azure", "abfs", "abfss")
API_VERSION = "2023-11-03"
# The standard headers of the Shared Key string-to-sign, in its order (Date is empty: x-ms-date is sent).
_STANDARD = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
    "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)  # fmt: skip
_DFS_HOST = re.compile(r"^(?P<container>[^@/]+)@(?P<account>[a-z0-9]{3,24})\.dfs\.(?P<suffix>[^/]+)$")
_SAFE = "/-_.~"
REFUSAL_ADVICE = (
    "check the credentials (AZURE_STORAGE_KEY, the account's key, or AZURE_STORAGE_SAS_TOKEN, with read "
    "permission and not expired; from model.storage.secretName) and the container's access level"
)


def is_azure(uri: str) -> bool:
    return uri.split("://", 1)[0] in SCHEMES


@dataclass(frozen=True)
class Blob:
    """A parsed ``azure://`` or ``abfs[s]://`` URI: the blob and the default endpoint's domain suffix."""

    account: str
    container: str
    path: str
    suffix: str = "core.windows.net"


def parse(uri: str) -> Blob:
    """``azure://<account>/<container>/<path>`` or ``abfs[s]://<container>@<account>.dfs.<suffix>/<path>``."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "azure":
        container, _, path = parsed.path.lstrip("/").partition("/")
        if parsed.netloc and container and path and not path.endswith("/"):
            return Blob(parsed.netloc, container, path)
        raise LoadError(f"{uri!r} is not azure://<account>/<container>/<blob path> of one blob")
    match = _DFS_HOST.match(parsed.netloc)
    path = parsed.path.lstrip("/")
    if parsed.scheme in ("abfs", "abfss") and match and path and not path.endswith("/"):
        return Blob(match["account"], match["container"], path, match["suffix"])
    raise LoadError(f"{uri!r} is not {parsed.scheme}://<container>@<account>.dfs.core.windows.net/<path> of one blob")


@dataclass(frozen=True, repr=False)
class AzureConfig:
    """Where the Blob endpoint is and how to authorize; ``repr`` says which kind of secret, never it."""

    endpoint: str | None = None
    key: str | None = field(default=None, compare=False)
    sas_token: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        auth = "shared-key" if self.key else "sas" if self.sas_token else "anonymous"
        return f"AzureConfig(endpoint={self.endpoint!r}, auth={auth!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AzureConfig:
        env = os.environ if env is None else env
        key = (env.get("AZURE_STORAGE_KEY") or "").strip() or None
        if key is not None:
            try:
                base64.b64decode(key, validate=True)
            except binascii.Error:
                raise LoadError("AZURE_STORAGE_KEY is not a base64 account key (model.storage.secretName)") from None
        return cls(
            endpoint=(env.get("AZURE_STORAGE_BLOB_ENDPOINT") or "").strip().rstrip("/") or None,
            key=key,
            sas_token=(env.get("AZURE_STORAGE_SAS_TOKEN") or "").strip().lstrip("?") or None,
        )


def blob_url(config: AzureConfig, blob: Blob) -> str:
    """The blob's URL without any SAS: path-style under a custom endpoint, else the account's host."""
    path = f"{urllib.parse.quote(blob.container, safe='')}/{urllib.parse.quote(blob.path, safe=_SAFE)}"
    base = config.endpoint or f"https://{blob.account}.blob.{blob.suffix}"
    return f"{base}/{path}"


def request_url(config: AzureConfig, blob: Blob) -> str:
    """What is fetched: the blob's URL, with the SAS token as its query when that is the credential."""
    url = blob_url(config, blob)
    return f"{url}?{config.sas_token}" if config.sas_token and not config.key else url


def string_to_sign(method: str, url: str, account: str, headers: Mapping[str, str]) -> str:
    """The Shared Key string-to-sign (service version 2015-02-21 and later) of one request.

    ``headers`` are the ones sent (any case); a Content-Length of 0 signs as empty. The canonicalized
    resource is ``/<account><encoded URL path>`` (under a path-style endpoint the account appears
    twice) plus each query parameter as ``\\n<lowercased name>:<decoded values, sorted, comma-joined>``.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    standard = [lower.get(name, "") for name in _STANDARD]
    if standard[2] == "0":
        standard[2] = ""
    ms = sorted((name, " ".join(value.split())) for name, value in lower.items() if name.startswith("x-ms-"))
    parsed = urllib.parse.urlsplit(url)
    resource = f"/{account}{parsed.path or '/'}"
    params: dict[str, list[str]] = {}
    for name, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
        params.setdefault(name.lower(), []).append(value)
    resource += "".join(f"\n{name}:{','.join(sorted(values))}" for name, values in sorted(params.items()))
    return "\n".join([method.upper(), *standard]) + "\n" + "".join(f"{n}:{v}\n" for n, v in ms) + resource


def sign(key: str, text: str) -> str:
    """base64(HMAC-SHA256(base64-decoded key, text)): the signature of Shared Key and of a SAS."""
    return base64.b64encode(hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()).decode()


def signed_headers(
    config: AzureConfig,
    blob: Blob,
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers of one request: ``x-ms-version`` always; ``x-ms-date`` and ``Authorization`` with an
    account key. ``headers`` (signed too) are what else is sent; the server only GETs, the test bed
    also PUTs containers and blobs with the same signer."""
    out = {"x-ms-version": API_VERSION, **(headers or {})}
    if not config.key:
        return out
    out["x-ms-date"] = format_datetime((now or datetime.now(UTC)).astimezone(UTC), usegmt=True)
    signature = sign(config.key, string_to_sign(method, url, blob.account, out))
    out["Authorization"] = f"SharedKey {blob.account}:{signature}"
    return out


def error_code(header: str | None, body: bytes) -> str:
    """Azure's error code (``AuthenticationFailed``, ``BlobNotFound``...): the ``x-ms-error-code``
    header, else the ``<Code>`` of the XML body."""
    if header:
        return header
    text = body[:4096].decode("utf-8", "replace")
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6 : end] if 0 <= start < end else ""
