"""Prediction tokens against real servers: counted anywhere in the ModelDeployment, never when bad.

Two server processes share one key, as two revisions of one ModelDeployment do; a third has a key
of its own under another identity. Tokens are minted here with the standard library from the
format documented in docs/model-server.md (not with the server's own code), so the tests also pin
the format. Every rejected token must answer 4xx ``{"error": ...}`` and leave
``modelserver_feedback_total`` exactly where it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.models import dataset

from .conftest import MODEL_NAME, MODELS, ServerFactory, ServerProcess
from .promtext import samples, value

INFER = f"/v2/models/{MODEL_NAME}/infer"
FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"
DEPLOYMENT = "ml/fraud"
KEY = os.urandom(32)
OTHER_KEY = os.urandom(32)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tag(signed: str, key: bytes = KEY) -> str:
    """As documented: keyed BLAKE2s, 16-byte digest, personalisation "mr-tok2", lowercase hex."""
    return hashlib.blake2s(signed.encode(), key=key, digest_size=16, person=b"mr-tok2").hexdigest()


def mint(claims: dict[str, Any], key: bytes = KEY) -> str:
    """A token as documented: v2.<b64url(json)>.<tag of "v2.<payload>">."""
    return sign_raw(json.dumps(claims, separators=(",", ":")).encode(), key)


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(unb64(token.split(".")[1]))


def resign_payload(token: str, claims: dict[str, Any]) -> str:
    """Replace the payload but keep the original signature: an altered token."""
    version, _, signature = token.split(".")
    return f"{version}.{b64(json.dumps(claims, separators=(',', ':')).encode())}.{signature}"


@dataclass
class Fleet:
    a: ServerProcess  # revision rev-a of ml/fraud
    b: ServerProcess  # revision rev-b of ml/fraud, same key
    other: ServerProcess  # ml/other, its own key
    plain: ServerProcess  # no key: id feedback only


def _key_file(directory: Path, name: str, key: bytes) -> str:
    path = directory / name
    path.write_bytes(key)
    return str(path)


def _args(revision: str, *extra: str) -> list[str]:
    return ["--model-uri", str(MODELS / "baseline.onnx"), "--model-name", MODEL_NAME, "--revision", revision,
            "--warmup-requests", "2", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("token-servers")
    key, other_key = _key_file(workdir, "key", KEY), _key_file(workdir, "other-key", OTHER_KEY)
    factory = ServerFactory(workdir)
    try:
        servers = [
            factory.start(_args(rev, *extra), ready=False)
            for rev, extra in (
                ("rev-a", ("--feedback-key-file", key, "--deployment", DEPLOYMENT)),
                ("rev-b", ("--feedback-key-file", key, "--deployment", DEPLOYMENT, "--feedback-token-ttl", "1h")),
                ("rev-o", ("--feedback-key-file", other_key, "--deployment", "ml/other")),
                ("rev-p", ()),
            )
        ]
        for server in servers:
            server.wait_ready()
        yield Fleet(*servers)
    finally:
        factory.stop_all()


def predict(server: ServerProcess, rows: int = 1, seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    """(the infer response, the true labels of its rows)."""
    data = dataset.generate(rows, seed=seed)
    answer = requests.post(server.url + INFER, json=dataset.tensor_body(data.features), timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json(), data.label_names()


def token_of(response: dict[str, Any]) -> str:
    return response["parameters"]["prediction_token"]


def send(server: ServerProcess, body: Any) -> requests.Response:
    return requests.post(server.url + FEEDBACK, json=body, timeout=5)


def counted(server: ServerProcess) -> dict[str, float]:
    """modelserver_feedback_total per revision label (all of this server's series)."""
    out: dict[str, float] = {}
    for name, labels, v in samples(server.metrics()):
        if name == "modelserver_feedback_total":
            out[labels["revision"]] = out.get(labels["revision"], 0.0) + v
    return out


def fresh_claims(revision: str = "rev-a", **overrides: Any) -> dict[str, Any]:
    claims = {"d": DEPLOYMENT, "r": revision, "c": ["legit"], "t": int(time.time()), "n": b64(os.urandom(12))}
    return {**claims, **overrides}


# --------------------------------------------------------------------------- what works


def test_every_prediction_carries_a_token_in_the_response_parameters(fleet: Fleet) -> None:
    response, _ = predict(fleet.a, rows=3, seed=1)
    token = token_of(response)
    assert token.startswith("v2.") and token.count(".") == 2
    claims = claims_of(token)
    assert claims["d"] == DEPLOYMENT and claims["r"] == "rev-a"
    assert claims["c"] == [dataset.CLASSES[i] for i in response["outputs"][0]["data"]]
    assert abs(claims["t"] - time.time()) < 60
    nonce, other = claims["n"], claims_of(token_of(predict(fleet.a)[0]))["n"]
    assert nonce != other and nonce[:16] == other[:16], "a per-process random prefix and a counter"
    _, payload, signature = token.split(".")
    assert hmac.compare_digest(signature, tag(f"v2.{payload}"))
    assert len(predict(fleet.a)[0]["parameters"]["prediction_token"]) < 200, "one row: a compact token"
    assert "parameters" not in predict(fleet.plain)[0], "no key, no token"


def test_a_token_counts_on_any_pod_of_any_revision_for_the_predicting_revision(fleet: Fleet) -> None:
    response, truth = predict(fleet.a, rows=4, seed=2)
    before_a, before_b = counted(fleet.a), counted(fleet.b)
    answer = send(fleet.b, {"token": token_of(response), "truth": truth})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "matched" and body["revision"] == "rev-a"
    assert body["correct"] + body["incorrect"] == 4
    after_b = counted(fleet.b)
    assert after_b.get("rev-a", 0) - before_b.get("rev-a", 0) == 4, "counted under the token's revision"
    assert after_b.get("rev-b", 0) == before_b.get("rev-b", 0), "not under the receiving pod's"
    assert counted(fleet.a) == before_a
    text = fleet.b.metrics()
    correct = value(text, "modelserver_feedback_total", revision="rev-a", correct="true")
    assert correct >= body["correct"]


def test_labels_by_class_index_and_batch_of_tokens(fleet: Fleet) -> None:
    first, truth1 = predict(fleet.a, seed=3)
    second, truth2 = predict(fleet.b, rows=2, seed=4)
    items = [
        {"token": token_of(first), "truth": dataset.CLASSES.index(truth1[0])},
        {"token": token_of(second), "truth": truth2},
    ]
    answer = send(fleet.a, {"feedback": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["matched"] == 2 and body["unmatched"] == 0
    assert [r["revision"] for r in body["results"]] == ["rev-a", "rev-b"]


def test_a_wrong_label_count_is_not_consumed(fleet: Fleet) -> None:
    response, truth = predict(fleet.a, rows=2, seed=5)
    token = token_of(response)
    wrong = send(fleet.b, {"token": token, "truth": truth[:1]})
    assert wrong.status_code == 400 and "2 row(s)" in wrong.json()["error"]
    assert send(fleet.b, {"token": token, "truth": truth}).status_code == 200, "a corrected retry counts"


# --------------------------------------------------------------------------- adversarial


def _altered(token: str) -> list[tuple[str, str]]:
    """The token with each payload field changed and the original signature kept."""
    claims = claims_of(token)
    changes = {
        "d": "ml/fraud2",
        "r": "rev-b" if claims["r"] != "rev-b" else "rev-a",
        "c": ["fraud" if claims["c"][0] == "legit" else "legit"],
        "t": claims["t"] + 1,
        "n": b64(os.urandom(12)),
    }
    return [(field, resign_payload(token, {**claims, field: new})) for field, new in changes.items()]


def _bad_signature(token: str) -> str:
    version, payload, signature = token.split(".")
    return f"{version}.{payload}.{int(signature[0], 16) ^ 1:x}{signature[1:]}"


def adversarial_tokens(genuine: str) -> list[tuple[str, str, int, str]]:
    """(case, token, expected status, expected status text) for every way a token may be wrong."""
    now = int(time.time())
    cases = [
        ("forged: signed with another key", mint(fresh_claims(), OTHER_KEY), 403, "forged"),
        ("forged: random tag", fresh_token_with_signature(os.urandom(16).hex()), 403, "forged"),
        ("forged: tag bit flipped", _bad_signature(genuine), 403, "forged"),
        ("malformed: a pre-release HMAC-SHA256 tag", _hmac_sha256(fresh_claims()), 400, "malformed"),
        ("malformed: tag truncated", _truncated(genuine), 400, "malformed"),
        ("malformed: tag in upper case", _upper_tag(genuine), 400, "malformed"),
        ("malformed: no tag", genuine.rsplit(".", 1)[0] + ".", 400, "malformed"),
        ("expired: genuine key, 8 days old", mint(fresh_claims(t=now - 8 * 86400)), 410, "expired"),
        ("future: genuine key, issued in an hour", mint(fresh_claims(t=now + 3600)), 400, "malformed"),
        ("foreign: other ModelDeployment, its own key", mint(fresh_claims(d="ml/other"), OTHER_KEY), 403, "foreign"),
        ("foreign: other ModelDeployment, this key", mint(fresh_claims(d="prod/fraud")), 403, "foreign"),
        ("malformed: not base64", "v2.@@@." + "0" * 32, 400, "malformed"),
        ("malformed: non-canonical base64", _non_canonical(), 400, "malformed"),
        ("malformed: payload not JSON", sign_raw(b"{not json"), 400, "malformed"),
        ("malformed: payload a list", sign_raw(b"[1,2]"), 400, "malformed"),
        ("malformed: classes not strings", mint(fresh_claims(c=[1])), 400, "malformed"),
        ("malformed: time a string", mint(fresh_claims(t="now")), 400, "malformed"),
        ("malformed: no nonce", mint({k: v for k, v in fresh_claims().items() if k != "n"}), 400, "malformed"),
        ("malformed: unknown version", "v3." + genuine.split(".", 1)[1], 400, "malformed"),
        ("malformed: a pre-release v1 token", "v1." + genuine.split(".", 1)[1], 400, "malformed"),
        ("malformed: two parts", genuine.rsplit(".", 1)[0], 400, "malformed"),
        ("malformed: oversize", "v2." + "A" * (256 * 1024) + "." + "0" * 32, 400, "malformed"),
    ]
    for field, token in _altered(genuine):
        cases.append((f"altered field {field}", token, 403, "foreign" if field == "d" else "forged"))
    return cases


def _truncated(token: str) -> str:
    """The genuine tag's first 15 bytes."""
    head, signature = token.rsplit(".", 1)
    return f"{head}.{signature[:30]}"


def _upper_tag(token: str) -> str:
    """The genuine tag in upper-case hex: the same bytes, another spelling (one spelling per token)."""
    head, signature = token.rsplit(".", 1)
    return f"{head}.{signature.upper()}" if signature.upper() != signature else f"{head}.{signature}A"


def _hmac_sha256(claims: dict[str, Any]) -> str:
    """The pre-release construction (HMAC-SHA256, base64url) under the right key: still refused."""
    signed = "v2." + b64(json.dumps(claims, separators=(",", ":")).encode())
    return signed + "." + b64(hmac.new(KEY, signed.encode(), hashlib.sha256).digest())


def fresh_token_with_signature(signature: str) -> str:
    return mint(fresh_claims()).rsplit(".", 1)[0] + "." + signature


def sign_raw(payload: bytes, key: bytes = KEY) -> str:
    signed = "v2." + b64(payload)
    return signed + "." + tag(signed, key)


def _non_canonical() -> str:
    """A well-tagged token whose payload's last base64 character has its unused bits set.

    The same bytes, another spelling: refused, so every token has one spelling. The nonce is
    padded until the payload is 1 byte past a multiple of 3 (its last character has 4 unused bits).
    """
    claims = fresh_claims()
    while len(json.dumps(claims, separators=(",", ":"))) % 3 != 1:
        claims["n"] += "x"
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spelled = payload[:-1] + alphabet[alphabet.index(payload[-1]) | 1]
    return f"v2.{spelled}.{tag('v2.' + spelled)}"


def test_bad_tokens_are_4xx_with_a_reason_and_never_counted(fleet: Fleet) -> None:
    response, truth = predict(fleet.a, seed=6)
    genuine = token_of(response)
    before = counted(fleet.b)
    unmatched_before = value(fleet.b.metrics(), "modelserver_feedback_unmatched_total")
    cases = adversarial_tokens(genuine)
    for case, token, status, reason in cases:
        answer = send(fleet.b, {"token": token, "truth": truth})
        assert answer.status_code == status, (case, answer.status_code, answer.text)
        body = answer.json()
        assert body["status"] == reason and isinstance(body["error"], str) and body["error"], (case, body)
        assert "token" in body["error"], (case, body)
    assert counted(fleet.b) == before, "no rejected token may be counted"
    assert value(fleet.b.metrics(), "modelserver_feedback_unmatched_total") - unmatched_before == len(cases)
    # ... and the genuine token, untouched, still counts once.
    assert send(fleet.b, {"token": genuine, "truth": truth}).status_code == 200


def test_rejections_name_what_is_wrong(fleet: Fleet) -> None:
    truth = "legit"
    expired = send(fleet.a, {"token": mint(fresh_claims(t=int(time.time()) - 8 * 86400)), "truth": truth}).json()
    assert "expired" in expired["error"] and "604800 s" in expired["error"]
    foreign = send(fleet.a, {"token": mint(fresh_claims(d="prod/fraud")), "truth": truth}).json()
    assert "'prod/fraud'" in foreign["error"] and f"'{DEPLOYMENT}'" in foreign["error"]
    forged = send(fleet.a, {"token": mint(fresh_claims(), OTHER_KEY), "truth": truth}).json()
    assert "tag does not match" in forged["error"]
    assert "not JSON" in send(fleet.a, {"token": sign_raw(b"{"), "truth": truth}).json()["error"]


def test_the_ttl_is_the_verifying_servers(fleet: Fleet) -> None:
    """rev-b runs with --feedback-token-ttl 1h: a genuine 2-hour-old token is expired there, not on rev-a."""
    token = mint(fresh_claims(t=int(time.time()) - 7200))
    assert send(fleet.b, {"token": token, "truth": "legit"}).status_code == 410
    assert send(fleet.a, {"token": token, "truth": "legit"}).status_code == 200


def test_a_replay_to_the_same_pod_is_not_counted_twice(fleet: Fleet) -> None:
    response, truth = predict(fleet.a, rows=2, seed=7)
    token = token_of(response)
    assert send(fleet.b, {"token": token, "truth": truth}).status_code == 200
    before = counted(fleet.b)
    replayed_before = value(fleet.b.metrics(), "modelserver_feedback_unmatched_total", reason="replayed")
    for _ in range(3):
        again = send(fleet.b, {"token": token, "truth": truth})
        assert again.status_code == 409 and again.json()["status"] == "replayed", again.text
    batch = send(fleet.b, {"feedback": [{"token": token, "truth": truth}]}).json()
    assert batch["results"][0]["status"] == "replayed" and batch["results"][0]["code"] == 409
    assert counted(fleet.b) == before
    replayed = value(fleet.b.metrics(), "modelserver_feedback_unmatched_total", reason="replayed")
    assert replayed - replayed_before == 4
    # Documented limit: another pod has its own memory and counts it once too.
    assert send(fleet.a, {"token": token, "truth": truth}).status_code == 200


def test_a_batch_with_a_mix_counts_only_the_good_ones(fleet: Fleet) -> None:
    good, truth = predict(fleet.a, rows=2, seed=8)
    spent, spent_truth = predict(fleet.b, seed=9)
    assert send(fleet.a, {"token": token_of(spent), "truth": spent_truth}).status_code == 200
    other, other_truth = predict(fleet.other, seed=10)
    items = [
        {"token": token_of(good), "truth": truth},
        {"token": mint(fresh_claims(), OTHER_KEY), "truth": "legit"},
        {"token": mint(fresh_claims(t=int(time.time()) - 9 * 86400)), "truth": "legit"},
        {"token": token_of(spent), "truth": spent_truth},
        {"token": token_of(other), "truth": other_truth},
        {"token": "v2.%%%.%%%", "truth": "legit"},
        {"token": token_of(good), "truth": truth},  # the same token twice in one batch
        {"id": "never-seen", "truth": "legit"},
    ]
    before = counted(fleet.a)
    answer = send(fleet.a, {"feedback": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    statuses = [(r["status"], r.get("code")) for r in body["results"]]
    assert statuses == [
        ("matched", None), ("forged", 403), ("expired", 410), ("replayed", 409), ("foreign", 403),
        ("malformed", 400), ("replayed", 409), ("unknown", 404),
    ]  # fmt: skip
    assert all(r["error"] for r in body["results"][1:])
    assert body["matched"] == 1 and body["unmatched"] == 7
    after = counted(fleet.a)
    assert after.get("rev-a", 0) - before.get("rev-a", 0) == 2, "only the good token's two rows"
    assert {k: v for k, v in after.items() if k != "rev-a"} == {k: v for k, v in before.items() if k != "rev-a"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"token": 3, "truth": "legit"}, "token: expected the prediction_token"),
        ({"token": "", "truth": "legit"}, "token: expected"),
        ({"token": "v2.a.b", "id": "x", "truth": "legit"}, "either token or id"),
        ({"token": "v2.a.b"}, "truth: required"),
        ({"feedback": [{"token": "v2.a.b", "truth": "legit"}, {"token": None, "truth": "x"}]}, "feedback[1].token"),
    ],
)
def test_malformed_token_bodies_are_400(fleet: Fleet, body: dict, fragment: str) -> None:
    before = counted(fleet.a)
    answer = send(fleet.a, body)
    assert answer.status_code == 400 and fragment in answer.json()["error"], answer.text
    assert counted(fleet.a) == before


def test_a_server_without_a_key_refuses_tokens_clearly(fleet: Fleet) -> None:
    response, truth = predict(fleet.a, seed=11)
    answer = send(fleet.plain, {"token": token_of(response), "truth": truth})
    assert answer.status_code == 400 and answer.json()["status"] == "unsupported"
    assert "--feedback-key-file" in answer.json()["error"]
    assert counted(fleet.plain).get("rev-a", 0) == 0


def test_a_short_or_missing_key_keeps_the_server_unready(server_factory: ServerFactory, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"x" * 8)
    for path, fragment in ((short, "8 bytes"), (tmp_path / "absent", "cannot read")):
        server = server_factory.start(
            _args("rev-k", "--feedback-key-file", str(path), "--deployment", DEPLOYMENT), ready=False
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = requests.get(server.url + "/v2/health/ready", timeout=2).json()
            if body.get("state") == "failed":
                break
            time.sleep(0.1)
        assert body["state"] == "failed" and fragment in body["reason"], body
        assert "x" * 8 not in server.stderr(), "the key must never be logged"


_segments = st.one_of(st.binary(max_size=80).map(b64), st.text(max_size=30))
_fuzzed_tokens = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from(["v2", "v1", "v0", ""]), _segments,
              st.one_of(_segments, st.binary(min_size=16, max_size=16).map(bytes.hex))).map(".".join),
    st.builds(mint, st.dictionaries(st.sampled_from(["d", "r", "c", "t", "n", "x"]),
                                                 st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                                           st.lists(st.text(max_size=5), max_size=2)))),
)  # fmt: skip


@given(token=_fuzzed_tokens, truth=st.one_of(st.sampled_from(["legit", "fraud", 0, 1]), st.lists(st.just(0))))
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzed_tokens_are_4xx_and_never_counted(fleet: Fleet, token: str, truth: Any) -> None:
    before = counted(fleet.a)
    answer = send(fleet.a, {"token": token, "truth": truth})
    assert answer.status_code in (400, 403, 409, 410), answer.text
    assert answer.json()["error"]
    assert counted(fleet.a) == before
