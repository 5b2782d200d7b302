"""``gs://bucket/object`` from Google Cloud Storage: a GET of its XML API, signed with HMAC keys,
carrying an OAuth2 bearer token, or anonymous.

Why no google-cloud SDK: as for ``s3://`` (see :mod:`.s3`), a pod fetches one or two objects once;
the XML API answers ``GET <endpoint>/<bucket>/<object>`` like S3 does, accepts AWS Signature
Version 4 made with GCS HMAC keys (its interoperability mode), and accepts a bearer token from the
metadata server that GKE Workload Identity runs. Service-account JSON keys would need RS256 JWTs,
hence a crypto dependency: they are refused with a reason rather than half supported.

Credentials, the first that applies wins:

1. HMAC keys: ``GCS_HMAC_ACCESS_KEY_ID`` and ``GCS_HMAC_SECRET``; when neither is set,
   ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (what S3 tools pointed at GCS read). SigV4
   by :func:`.s3.signed_headers`, region ``auto``, path-style.
2. ``GOOGLE_OAUTH_ACCESS_TOKEN``: a static access token, sent as is.
3. ``GOOGLE_APPLICATION_CREDENTIALS``: a key file is what Google's tools would use next; it is not
   supported, so it is a :class:`LoadError` saying to use Workload Identity or HMAC keys.
4. The metadata server, only when ``GCE_METADATA_HOST`` is set (``host[:port]``, as google-auth
   reads it) or the machine says it is Google Compute Engine (``/sys/class/dmi/id/product_name``, as
   google-auth checks; GKE nodes and their pods): the default service account's token, cached until
   a minute before it expires. Each request waits at most :data:`METADATA_TIMEOUT` seconds; no
   answer is :class:`MetadataUnavailableError`, which the loader retries within its bounded budget
   (GKE's metadata server can need a few seconds on a new pod), so a pod never hangs on it.
5. Otherwise anonymous (a public object).

``GCS_ENDPOINT`` replaces ``https://storage.googleapis.com`` (a Private Service Connect endpoint, a
test server). Not ``STORAGE_EMULATOR_HOST``: Google's libraries drop all credentials for it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoadError
from .s3 import S3Config, signed_headers

GCS_ENDPOINT = "https://storage.googleapis.com"
METADATA_HOST = "metadata.google.internal"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
METADATA_TIMEOUT = 2.0
REFRESH_MARGIN = 60.0
"""Seconds before ``expires_in`` runs out that a cached token is fetched anew."""
PRODUCT_NAME = Path("/sys/class/dmi/id/product_name")
ADVICE = "use Workload Identity (serving.serviceAccountName) or HMAC keys (model.storage.secretName)"
_SAFE = "-_.~"


class MetadataUnavailableError(Exception):
    """The metadata server did not answer (or answered 5xx/429): worth another attempt."""


@dataclass(frozen=True, repr=False)
class GcsConfig:
    """Where GCS is and how requests prove who we are; ``repr`` never shows a secret."""

    endpoint: str = GCS_ENDPOINT
    hmac: S3Config | None = None
    token: str | None = field(default=None, compare=False)
    metadata_host: str | None = None

    def __repr__(self) -> str:
        return f"GcsConfig(endpoint={self.endpoint!r}, credentials={self.credentials!r}, hmac={self.hmac!r})"

    @property
    def credentials(self) -> str:
        """Which credentials sign requests, as named in refusals."""
        if self.hmac is not None:
            return "HMAC keys"
        if self.token:
            return "GOOGLE_OAUTH_ACCESS_TOKEN"
        if self.metadata_host:
            return f"the metadata server's token ({self.metadata_host})"
        return "none (anonymous)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, product_name: Path = PRODUCT_NAME) -> GcsConfig:
        env = os.environ if env is None else env
        endpoint = (env.get("GCS_ENDPOINT") or "").strip().rstrip("/") or GCS_ENDPOINT
        if not endpoint.startswith(("https://", "http://")):
            raise LoadError(f"GCS_ENDPOINT {endpoint!r} is not an http(s):// URL (model.storage.endpoint)")
        hmac_keys = _hmac_keys(env)
        if hmac_keys is not None:
            return cls(endpoint, hmac=S3Config("auto", endpoint, *hmac_keys))
        token = (env.get("GOOGLE_OAUTH_ACCESS_TOKEN") or "").strip()
        if token:
            return cls(endpoint, token=token)
        key_file = (env.get("GOOGLE_APPLICATION_CREDENTIALS") or "").strip()
        if key_file:
            raise LoadError(_key_file_refusal(key_file))
        host = (env.get("GCE_METADATA_HOST") or "").strip()
        if host or _on_gce(product_name):
            return cls(endpoint, metadata_host=host or METADATA_HOST)
        return cls(endpoint)

    def advice(self) -> str:
        """What to check when GCS refuses a request made with these credentials."""
        if self.hmac is not None:
            return (
                "check the HMAC keys (GCS_HMAC_ACCESS_KEY_ID / GCS_HMAC_SECRET, or AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY; from model.storage.secretName) and that their service account may read "
                "the object"
            )
        if self.token:
            return (
                "check that GOOGLE_OAUTH_ACCESS_TOKEN is current (access tokens expire, usually within an hour) "
                "and that its account may read the object (storage.objects.get)"
            )
        if self.metadata_host:
            return (
                f"check that the account of {self.credentials} may read the object (storage.objects.get; with "
                "Workload Identity, serving.serviceAccountName bound to a Google service account)"
            )
        return f"no credentials are configured and the object is not public: {ADVICE}"

    def headers(self, url: str) -> dict[str, str]:
        """The headers that authorize ``GET url`` (a fresh signature, or the current token)."""
        if self.hmac is not None:
            return signed_headers(self.hmac, url)
        token = self.token or (token_source(self.metadata_host).token() if self.metadata_host else "")
        return {"Authorization": f"Bearer {token}"} if token else {}


def _hmac_keys(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The HMAC key pair: the ``GCS_HMAC_*`` names, else (neither set) the AWS ones; None if absent."""
    for access_name, secret_name in (("GCS_HMAC_ACCESS_KEY_ID", "GCS_HMAC_SECRET"),
                                     ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")):  # fmt: skip
        access, secret = (env.get(access_name) or "").strip(), (env.get(secret_name) or "").strip()
        if access and secret:
            return access, secret
        if access or secret:
            missing = secret_name if access else access_name
            raise LoadError(f"GCS HMAC keys are incomplete: {missing} is not set (model.storage.secretName)")
    return None


def _key_file_refusal(path: str) -> str:
    """Why ``GOOGLE_APPLICATION_CREDENTIALS`` cannot be used, naming the file's type (never its content)."""
    try:
        kind = json.loads(Path(path).read_text()).get("type", "unknown")
    except (OSError, ValueError, AttributeError):
        kind = "unreadable"
    return (
        f"GOOGLE_APPLICATION_CREDENTIALS ({path}, type {kind!s:.40}) is not supported: key files need RS256 "
        f"signing, which the model server does not do; {ADVICE}"
    )


def _on_gce(product_name: Path) -> bool:
    """Whether this machine says it is a Google Compute Engine VM (GKE nodes included)."""
    try:
        return product_name.read_text().strip().startswith("Google")
    except OSError:
        return False


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/object`` -> ``(bucket, object)``; a :class:`LoadError` names what is missing."""
    parsed = urllib.parse.urlparse(uri)
    bucket, name = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not name or name.endswith("/") or parsed.query or parsed.fragment:
        raise LoadError(f"{uri!r} is not gs://<bucket>/<object> of one object")
    return bucket, name


def object_url(config: GcsConfig, bucket: str, name: str) -> str:
    """The XML API URL of one object, path-style: ``<endpoint>/<bucket>/<object>``."""
    quoted = urllib.parse.quote(name, safe="/" + _SAFE)
    return f"{config.endpoint}/{urllib.parse.quote(bucket, safe=_SAFE)}/{quoted}"


class MetadataTokens:
    """The default service account's access token from one metadata server, cached until
    :data:`REFRESH_MARGIN` seconds before it expires; safe to share between threads."""

    def __init__(
        self, host: str, timeout: float = METADATA_TIMEOUT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.host, self.timeout, self.clock = host, timeout, clock
        self._token, self._expires = "", 0.0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}{TOKEN_PATH}"

    def token(self) -> str:
        with self._lock:
            if not self._token or self.clock() >= self._expires:
                token, lifetime = self._request()
                self._token, self._expires = token, self.clock() + max(0.0, lifetime - REFRESH_MARGIN)
            return self._token

    def _request(self) -> tuple[str, float]:
        request = urllib.request.Request(self.url, headers={"Metadata-Flavor": "Google"})
        where = f"the metadata server {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                if answer.headers.get("Metadata-Flavor") != "Google":
                    raise LoadError(f"{where} did not answer as a GCE metadata server (no Metadata-Flavor: Google)")
                body = json.loads(answer.read(64 * 1024))
        except urllib.error.HTTPError as exc:
            detail = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 429 or exc.code >= 500:
                raise MetadataUnavailableError(f"{where} answered {detail}") from None
            raise LoadError(
                f"{where} answered {detail} for a token: is serving.serviceAccountName bound to a Google service "
                "account (Workload Identity)?"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise MetadataUnavailableError(f"{where} did not answer within {self.timeout:g}s: {reason}") from None
        except ValueError:
            raise LoadError(f"{where} answered with something that is not JSON") from None
        body = body if isinstance(body, dict) else {}
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise LoadError(f"{where} answered without an access_token and expires_in")
        return token, float(lifetime)


_SOURCES: dict[str, MetadataTokens] = {}
_SOURCES_LOCK = threading.Lock()


def token_source(host: str) -> MetadataTokens:
    """The process-wide token cache of ``host``: the model and its metadata.json share one token."""
    with _SOURCES_LOCK:
        return _SOURCES.setdefault(host, MetadataTokens(host))


def refusal_advice(env: Mapping[str, str] | None = None) -> str:
    """:meth:`GcsConfig.advice` for the credentials ``env`` (the process's) configures."""
    try:
        return GcsConfig.from_env(env).advice()
    except LoadError as exc:
        return str(exc)
