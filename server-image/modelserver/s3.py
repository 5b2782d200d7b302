"""``s3://bucket/key`` as a signed HTTPS (or HTTP) GET: AWS Signature Version 4, from the standard
AWS environment variables, for AWS S3 and any S3-compatible store (MinIO, Ceph, versitygw...).

Why our own signer rather than boto3: a model server fetches one or two objects once per pod; the
SDK would add tens of megabytes and its own retry policy to the image, while a GET needs only the
canonical request below (the algorithm is fixed by AWS's SigV4 specification), and it reuses the
loader's bounded, retried, size-capped download. The real server in the tests checks every
signature, so a mistake here cannot pass.

Configuration, as every AWS SDK reads it (so ``envFrom`` a Secret written for any other tool works):
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``; the endpoint from
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (then path-style addressing, what S3-compatible
stores expect), else AWS's regional virtual-hosted endpoint; the region from ``AWS_REGION`` or
``AWS_DEFAULT_REGION`` (default ``us-east-1``). Without keys the request goes unsigned (a public
bucket). The pod's ServiceAccount identity (IRSA, EKS Pod Identity) is exchanged for keys by
:mod:`.aws_identity` before signing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .errors import LoadError

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ALGORITHM = "AWS4-HMAC-SHA256"
# RFC 3986 unreserved characters stay as they are; everything else is %XX (SigV4's UriEncode).
_SAFE = "-_.~"


@dataclass(frozen=True, repr=False)
class S3Config:
    """Where S3 is and who we are; ``repr`` names the key id's owner-visible prefix only."""

    region: str = "us-east-1"
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, compare=False)
    session_token: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        key = f"{self.access_key[:4]}..." if self.access_key else None
        return f"S3Config(region={self.region!r}, endpoint={self.endpoint!r}, access_key={key!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Config:
        env = os.environ if env is None else env
        access, secret = env.get("AWS_ACCESS_KEY_ID") or None, env.get("AWS_SECRET_ACCESS_KEY") or None
        if bool(access) != bool(secret):
            missing = "AWS_SECRET_ACCESS_KEY" if access else "AWS_ACCESS_KEY_ID"
            raise LoadError(f"S3 credentials are incomplete: {missing} is not set (model.storage.secretName)")
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint=(env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "").rstrip("/") or None,
            access_key=access.strip() if access else None,
            secret_key=secret.strip() if secret else None,
            session_token=(env.get("AWS_SESSION_TOKEN") or "").strip() or None,
        )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; a :class:`LoadError` names what is missing."""
    parsed = urllib.parse.urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key or key.endswith("/"):
        raise LoadError(f"{uri!r} is not s3://<bucket>/<key> of one object")
    return bucket, key


def object_url(config: S3Config, bucket: str, key: str) -> str:
    """The HTTP(S) URL of one object: path-style on a custom endpoint, virtual-hosted on AWS."""
    path = "/" + urllib.parse.quote(key, safe="/" + _SAFE)
    if config.endpoint:
        return f"{config.endpoint}/{urllib.parse.quote(bucket, safe=_SAFE)}{path}"
    return f"https://{bucket}.s3.{config.region}.amazonaws.com{path}"


def signed_headers(config: S3Config, url: str, now: datetime | None = None, method: str = "GET") -> dict[str, str]:
    """The headers that sign ``method url`` with an unsigned payload (empty for anonymous access).
    The server only GETs; the test bed PUTs buckets and objects with the same signer."""
    if not config.access_key or not config.secret_key:
        return {}
    now = (now or datetime.now(UTC)).astimezone(UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parsed = urllib.parse.urlsplit(url)
    headers = {"host": parsed.netloc, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": stamp}
    if config.session_token:
        headers["x-amz-security-token"] = config.session_token
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",  # already UriEncoded by object_url; S3 does not encode it twice
            _canonical_query(parsed.query),
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            UNSIGNED_PAYLOAD,
        ]
    )
    scope = f"{day}/{config.region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(f"AWS4{config.secret_key}".encode(), day)
    for part in (config.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"{ALGORITHM} Credential={config.access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    del headers["host"]  # the HTTP client sends it
    return headers


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(
        f"{urllib.parse.quote(k, safe=_SAFE)}={urllib.parse.quote(v, safe=_SAFE)}" for k, v in sorted(pairs)
    )


def error_code(body: bytes) -> str:
    """S3's ``<Code>`` from an error body (``AccessDenied``, ``SignatureDoesNotMatch``...), if any."""
    text = body[:4096].decode("utf-8", "replace")
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6 : end] if 0 <= start < end else ""
