"""Prediction tokens: feedback that any pod of any revision of the ModelDeployment can count.

Why: the request-id cache (:mod:`modelserver.feedback`) lives in one process, so with several
replicas — or a label that arrives after the pod was replaced — feedback sent through the normal
route mostly lands on a pod that never saw the prediction. Instead of a shared store, each infer
response carries a token that *is* the prediction: the ModelDeployment, the revision that predicted,
the predicted class of every row, the issue time and a nonce, authenticated with a MAC under a key
every pod of the ModelDeployment shares (the operator keeps it in a Secret). Any pod verifies the
token with that key and counts the label for the token's revision.

Format (``docs/model-server.md``): ``v2.<payload>.<tag>``, the payload unpadded base64url; the
payload is the JSON object ``{"d": "ns/name", "r": revision, "c": [class, ...], "t": unix seconds,
"n": nonce}`` and the tag is keyed BLAKE2s (RFC 7693) with a 16-byte digest and the
personalisation ``mr-tok2`` over the ASCII text ``v2.<payload>``, in lowercase hex. (``v1`` tokens, HMAC-SHA256, came
from pre-release servers and are refused as malformed.)

Issuing is on the hot path of every prediction, so everything constant is done once per process:
the nonce is a random 96-bit prefix (base64url) plus a hexadecimal counter (no syscall per token);
the payload's start — ModelDeployment, revision and that prefix, padded with JSON whitespace to a
multiple of 3 bytes so that its base64url is a fixed prefix of every payload's — is serialised and
encoded once; the keyed BLAKE2s state is primed with ``v2.<that prefix>``, so each token hashes
only its own tail; and a micro-batch's tokens are signed together (:meth:`TokenCodec.issue_many`).
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

VERSION = "v2"
MIN_KEY_BYTES = 16
MAX_TOKEN_CHARS = 256 * 1024
"""Longer tokens are refused unread (and none longer is issued: batches that large get no token)."""
CLOCK_SKEW_SECONDS = 300.0
"""How far in the future an issue time may lie (pods' clocks differ a little)."""
MAX_REVISION_CHARS = 253
_TAG_BYTES = 16
_TAG = re.compile(f"[0-9a-f]{{{2 * _TAG_BYTES}}}")
_MAX_SIGNED = MAX_TOKEN_CHARS - 2 * _TAG_BYTES + 1
"""Exclusive bound on an issued token's length before its hex tag is appended."""
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


class _Mac:
    """Keyed BLAKE2s with a 128-bit tag (RFC 7693 keyed mode), primed once, copied per message.

    Why not HMAC-SHA256: keyed BLAKE2 is a MAC by design (no inner/outer construction), and
    Python's built-in BLAKE2 copies a primed state in ~0.1 µs where an OpenSSL SHA-256 context
    takes ~0.35 µs per copy and HMAC needs two copies and two finalisations per token: on the hot
    path that was most of the token's cost (``docs/model-server.md``). A 128-bit tag is well above the
    80 bits RFC 2104 asks of a truncated MAC; a forger's chance per try is 2^-128.
    """

    PERSON = b"mr-tok2"

    def __init__(self, key: bytes) -> None:
        if len(key) > hashlib.blake2s.MAX_KEY_SIZE:
            key = hashlib.blake2s(key, person=b"mr-key").digest()
        self._keyed = hashlib.blake2s(key=key, digest_size=_TAG_BYTES, person=self.PERSON)

    def hexdigest(self, message: bytes) -> str:
        state = self._keyed.copy()
        state.update(message)
        return state.hexdigest()

    def primed(self, prefix: bytes) -> hashlib.blake2s:
        """A keyed state that has hashed ``prefix`` already (for messages that all start with it)."""
        state = self._keyed.copy()
        state.update(prefix)
        return state


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
        self._mac = _Mac(key)
        self.deployment = deployment
        self.revision = revision
        self.ttl = ttl_seconds
        self.clock = clock
        head = b'{"d":' + orjson.dumps(deployment) + b',"r":' + orjson.dumps(revision) + b","
        nonce_start = b'"n":"' + _b64encode(os.urandom(12))
        head += b" " * (-(len(head) + len(nonce_start)) % 3) + nonce_start  # whitespace: a 3-byte multiple
        self._signed_head = VERSION.encode() + b"." + _b64encode(head)
        self._primed = self._mac.primed(self._signed_head)
        self._counter = itertools.count()

    def issue(self, classes: list[str]) -> str | None:
        """The token for one prediction (its classes, one per row); None if it would be oversize."""
        return self.issue_many([classes])[0]

    def issue_many(self, predictions: list[list[str]]) -> list[str | None]:
        """Tokens for a micro-batch of predictions, signed back to back (one clock read).

        The payload is ``{"d":…,"r":…, "n":"<prefix><counter>","c":[…],"t":…}``: the constant head
        (see the module docstring), then each token's counter, classes and issue time. The loop
        is the whole per-token cost, so it keeps to a handful of C calls per token (the tag is
        hex for that reason: ``hexdigest`` is one call, base64url of the digest would be three).
        """
        counter, dumps, primed, head = self._counter, orjson.dumps, self._primed, self._signed_head
        now = int(self.clock())
        tokens: list[str | None] = []
        for classes in predictions:
            tail = _b64encode(b'%x","c":%s,"t":%d}' % (next(counter), dumps(classes), now))
            state = primed.copy()
            state.update(tail)
            signed = b"".join((head, tail, b"."))
            tokens.append(signed.decode("ascii") + state.hexdigest() if len(signed) < _MAX_SIGNED else None)
        return tokens

    def verify(self, token: object, where: str = "token") -> Claims:
        """Decode, check identity, tag (constant time) and expiry; raise :class:`TokenError`."""
        if not isinstance(token, str) or not token:
            raise TokenError(400, "malformed", f"{where}: expected the prediction token (a non-empty string)")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError(400, "malformed", f"{where}: longer than {MAX_TOKEN_CHARS} characters")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise TokenError(400, "malformed", f"{where}: expected {VERSION}.<payload>.<tag> as issued in "
                             "the infer response's parameters.prediction_token")  # fmt: skip
        try:
            payload = _b64decode(parts[1])
        except (binascii.Error, ValueError):
            raise TokenError(400, "malformed", f"{where}: the payload is not base64url") from None
        if not _TAG.fullmatch(parts[2]):
            raise TokenError(400, "malformed", f"{where}: the tag must be {2 * _TAG_BYTES} lowercase hex digits")
        claims = _claims(payload, where)
        if claims.deployment != self.deployment:
            raise TokenError(
                403,
                "foreign",
                f"{where}: issued for ModelDeployment {claims.deployment[:300]!r}, "
                f"but this server belongs to {self.deployment!r}",
            )
        expected = self._mac.hexdigest(f"{VERSION}.{parts[1]}".encode("ascii"))
        if not hmac.compare_digest(parts[2], expected):
            raise TokenError(
                403, "forged", f"{where}: the tag does not match: the token was altered or not issued here"
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
