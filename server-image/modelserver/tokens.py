"""Prediction tokens: feedback that any pod of any revision of the ModelDeployment can count.

Why: the request-id cache (:mod:`modelserver.feedback`) lives in one process, so with several
replicas — or a label that arrives after the pod was replaced — feedback sent through the normal
route mostly lands on a pod that never saw the prediction. Instead of a shared store, each infer
response carries a token that *is* the prediction: the ModelDeployment, the revision that predicted,
the predicted class of every row, the issue time and a nonce, authenticated with HMAC-SHA256 under
a key every pod of the ModelDeployment shares (the operator keeps it in a Secret). Any pod verifies
the token with that key and counts the label for the token's revision.

Format (``docs/model-server.md``): ``v1.<payload>.<signature>``, both parts unpadded base64url;
the payload is the JSON object ``{"d": "ns/name", "r": revision, "c": [class, ...], "t": unix
seconds, "n": nonce}`` and the signature is HMAC-SHA256 over the ASCII text ``v1.<payload>``.

Issuing is on the hot path of every prediction, so everything constant is done once per process:
the nonce is a random 96-bit prefix (base64url) plus a hexadecimal counter (no syscall per token);
the payload's start — ModelDeployment, revision and that prefix, padded with JSON whitespace to a
multiple of 3 bytes so that its base64url is a fixed prefix of every payload's — is serialised and
encoded once; and the HMAC (RFC 2104: ``H(K^opad || H(K^ipad || m))``) keeps hashlib states primed
with the key blocks and with ``v1.<that prefix>``, so each token hashes only its own tail.
"""

from __future__ import annotations

import binascii
import hashlib
import heapq
import hmac
import itertools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import LoadError

VERSION = "v1"
MIN_KEY_BYTES = 16
MAX_TOKEN_CHARS = 256 * 1024
"""Longer tokens are refused unread (and none longer is issued: batches that large get no token)."""
CLOCK_SKEW_SECONDS = 300.0
"""How far in the future an issue time may lie (pods' clocks differ a little)."""
MAX_REVISION_CHARS = 253
_SIGNATURE_BYTES = 32
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class TokenError(Exception):
    """A token that is not counted: ``status`` is the HTTP answer, ``reason`` the metric/result label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Claims:
    """What a verified token says about its prediction."""

    deployment: str
    revision: str
    classes: tuple[str, ...]
    issued_at: int
    nonce: str


def load_key(path: str) -> bytes:
    """The raw key bytes of ``--feedback-key-file``; a missing, unreadable or short key is a load error.

    The key itself never appears in a message or a log line.
    """
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise LoadError(f"--feedback-key-file {path}: cannot read the key: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise LoadError(
            f"--feedback-key-file {path}: the key is {len(key)} bytes, at least {MIN_KEY_BYTES} are needed "
            "(the operator writes 32 random bytes)"
        )
    return key


def _b64encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _b64decode(text: str) -> bytes:
    """Strict, canonical unpadded base64url (``binascii.Error`` on anything else).

    Canonical: a text whose unused trailing bits are set decodes to the same bytes as another text,
    so it is refused — every token has exactly one spelling.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise binascii.Error("not base64url")
    raw = text.encode("ascii").translate(_FROM_URLSAFE)
    data = binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
    if _b64encode(data) != text.encode("ascii"):
        raise binascii.Error("not canonical base64url")
    return data


class _Hmac:
    """HMAC-SHA256 with the key blocks pre-hashed (RFC 2104), for many short messages."""

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        return self.resume(self._inner, message)

    def primed(self, prefix: bytes) -> hashlib._Hash:
        """An inner state that has hashed ``prefix`` already (for messages that all start with it)."""
        inner = self._inner.copy()
        inner.update(prefix)
        return inner

    def resume(self, primed: hashlib._Hash, rest: bytes) -> bytes:
        """The HMAC of (what ``primed`` hashed) + ``rest``."""
        inner = primed.copy()
        inner.update(rest)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class TokenCodec:
    """Issues tokens for this revision and verifies tokens of any revision of the same ModelDeployment."""

    def __init__(
        self,
        key: bytes,
        deployment: str,
        revision: str,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mac = _Hmac(key)
        self.deployment = deployment
        self.revision = revision
        self.ttl = ttl_seconds
        self.clock = clock
        head = b'{"d":' + orjson.dumps(deployment) + b',"r":' + orjson.dumps(revision) + b","
        nonce_start = b'"n":"' + _b64encode(os.urandom(12))
        head += b" " * (-(len(head) + len(nonce_start)) % 3) + nonce_start  # whitespace: a 3-byte multiple
        self._signed_head = b"v1." + _b64encode(head)
        self._primed = self._mac.primed(self._signed_head)
        self._counter = itertools.count()

    def issue(self, classes: list[str]) -> str | None:
        """The token for one prediction (its classes, one per row); None if it would be oversize.

        The payload is ``{"d":…,"r":…, "n":"<prefix><counter>","c":[…],"t":…}``: the constant head
        (see the module docstring), then this token's counter, classes and issue time.
        """
        tail = _b64encode(b'%x","c":%s,"t":%d}' % (next(self._counter), orjson.dumps(classes), int(self.clock())))
        signature = _b64encode(self._mac.resume(self._primed, tail))
        token = b"".join((self._signed_head, tail, b".", signature))
        return token.decode("ascii") if len(token) <= MAX_TOKEN_CHARS else None

    def verify(self, token: object, where: str = "token") -> Claims:
        """Decode, check identity, signature (constant time) and expiry; raise :class:`TokenError`."""
        if not isinstance(token, str) or not token:
            raise TokenError(400, "malformed", f"{where}: expected the prediction token (a non-empty string)")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError(400, "malformed", f"{where}: longer than {MAX_TOKEN_CHARS} characters")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise TokenError(400, "malformed", f"{where}: expected {VERSION}.<payload>.<signature> as issued in "
                             "the infer response's parameters.prediction_token")  # fmt: skip
        try:
            payload, signature = _b64decode(parts[1]), _b64decode(parts[2])
        except (binascii.Error, ValueError):
            raise TokenError(400, "malformed", f"{where}: payload or signature is not base64url") from None
        claims = _claims(payload, where)
        if claims.deployment != self.deployment:
            raise TokenError(
                403,
                "foreign",
                f"{where}: issued for ModelDeployment {claims.deployment[:300]!r}, "
                f"but this server belongs to {self.deployment!r}",
            )
        expected = self._mac.digest(f"{VERSION}.{parts[1]}".encode("ascii"))
        if not hmac.compare_digest(signature, expected):
            raise TokenError(
                403, "forged", f"{where}: the signature does not match: the token was altered or not issued here"
            )
        now = self.clock()
        if claims.issued_at > now + CLOCK_SKEW_SECONDS:
            raise TokenError(400, "malformed", f"{where}: issued {claims.issued_at - now:.0f} s in the future")
        if now > claims.issued_at + self.ttl:
            age = now - claims.issued_at
            raise TokenError(
                410, "expired", f"{where}: expired: issued {age:.0f} s ago, tokens are accepted for {self.ttl:.0f} s"
            )
        return claims

    def expires_at(self, claims: Claims) -> float:
        return claims.issued_at + self.ttl


def _claims(payload: bytes, where: str) -> Claims:
    """The payload's fields, type-checked (a valid signature does not excuse a malformed payload)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise TokenError(400, "malformed", f"{where}: the payload is not JSON") from None
    if not isinstance(doc, dict):
        raise TokenError(400, "malformed", f"{where}: the payload is not a JSON object")
    deployment, revision, classes = doc.get("d"), doc.get("r"), doc.get("c")
    issued, nonce = doc.get("t"), doc.get("n")
    problems = []
    if not isinstance(deployment, str):
        problems.append("d (ModelDeployment) must be a string")
    if not isinstance(revision, str) or not 0 < len(revision) <= MAX_REVISION_CHARS:
        problems.append("r (revision) must be a non-empty string")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        problems.append("c (classes) must be a non-empty list of strings")
    if isinstance(issued, bool) or not isinstance(issued, int) or issued < 0:
        problems.append("t (issue time) must be a non-negative integer")
    if not isinstance(nonce, str) or not nonce:
        problems.append("n (nonce) must be a non-empty string")
    if problems:
        raise TokenError(400, "malformed", f"{where}: invalid payload: {'; '.join(problems)}")
    # Checked above; the checks go through ``problems`` (to name every bad field), which mypy cannot follow.
    assert isinstance(deployment, str) and isinstance(revision, str) and isinstance(classes, list)
    assert isinstance(issued, int) and isinstance(nonce, str)
    return Claims(deployment, revision, tuple(classes), issued, nonce)


class ReplayGuard:
    """Remembers the nonces of counted tokens until they expire, so one pod counts a token once.

    Bounded: beyond ``max_entries`` the nonce closest to expiry is forgotten first (a replay of
    exactly that token to this pod would count again). Other pods keep their own memory: a token
    replayed to another pod is counted there (``docs/model-server.md``).
    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, nonce: str) -> bool:
        self._purge(self.clock())
        return nonce in self._expiry

    def remember(self, nonce: str, expires_at: float) -> None:
        self._expiry[nonce] = expires_at
        heapq.heappush(self._heap, (expires_at, nonce))
        while len(self._expiry) > self.max_entries:
            _, oldest = heapq.heappop(self._heap)
            self._expiry.pop(oldest, None)

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now:
            _, nonce = heapq.heappop(heap)
            self._expiry.pop(nonce, None)
