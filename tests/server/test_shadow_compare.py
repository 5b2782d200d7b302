"""The comparison ("shadow") model: ``--compare-model-uri`` loads a second model beside the served one
and scores every answered request with both.

The operator's shadow gates read ``modelserver_shadow_*`` only, so the counts must be exactly what
running both ONNX files on the same rows gives — computed here with onnxruntime directly, not with the
server's code — for HTTP and gRPC alike; a comparison model that cannot be compared must keep the
server unready with a reason naming the flag; and one that fails at request time must never cost the
client its answer.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import requests
from modelserver.app import create_app
from modelserver.compare import ERROR_LOG_EVERY
from modelserver.config import Settings, parse_settings
from modelserver.metrics import SHADOW_DIFFERENCE_BUCKETS, ShadowMetrics
from modelserver.startup import Loader
from modelserver.state import ServerState
from prometheus_client import CollectorRegistry, generate_latest

from examples.models import dataset

from .conftest import MODEL_NAME, MODELS, REVISION, ServerFactory, ServerProcess, load_failure, model_args
from .promtext import families, value
from .test_grpc import start_grpc, typed_request

INFER = f"/v2/models/{MODEL_NAME}/infer"
CONTRACT_BUCKETS = ("0.01", "0.02", "0.05", "0.1", "0.2", "0.3", "0.5", "+Inf")
"""The ``le`` values the operator's gate templates name (a contract: never change them silently)."""
FAMILIES = (
    "modelserver_shadow_rows",
    "modelserver_shadow_agreed_rows",
    "modelserver_shadow_score_difference",
    "modelserver_shadow_errors",
)


def model_path(name: str) -> Path:
    return MODELS / ("narrow/narrow.onnx" if name == "narrow" else f"{name}.onnx")


def digest(name: str) -> str:
    return hashlib.sha256(model_path(name).read_bytes()).hexdigest()


def compare_args(served: str, compared: str, *extra: str) -> list[str]:
    return model_args(served, "--warmup-requests", "2", "--compare-model-uri", str(model_path(compared)), *extra)


# -- what the server must report, computed with onnxruntime alone -------------------------------------
@cache
def session(name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the server runs it (--intra-op-threads 1)
    return ort.InferenceSession(str(model_path(name)), options, providers=["CPUExecutionProvider"])


def predict(name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and fraud probabilities (the positive class of metadata.json: the score the server uses)."""
    labels, probabilities = session(name).run(["label", "probabilities"], {dataset.INPUT_NAME: rows})
    return labels, probabilities[:, 1]


@dataclass
class Shadow:
    rows: int = 0
    agreed: int = 0
    errors: int = 0
    buckets: tuple[int, ...] = (0,) * len(CONTRACT_BUCKETS)
    """Cumulative, as Prometheus reports them (``le``)."""
    total: float = 0.0

    def add(self, served: str, compared: str, rows: np.ndarray) -> None:
        """Account one request of ``rows`` as the server must: per row, class equality and |score difference|."""
        ours, our_scores = predict(served, rows)
        theirs, their_scores = predict(compared, rows)
        differences = np.abs(our_scores.astype(np.float64) - their_scores.astype(np.float64))
        finite = np.isfinite(differences)
        self.errors += int((~finite).sum())
        self.rows += int(finite.sum())
        self.agreed += int((ours == theirs)[finite].sum())
        kept = differences[finite]
        counts = [int(np.sum(kept <= float(le))) for le in CONTRACT_BUCKETS[:-1]] + [kept.size]
        self.buckets = tuple(b + n for b, n in zip(self.buckets, counts, strict=True))
        self.total += float(kept.sum())


def reported(text: str, compared_with: str) -> Shadow:
    labels = {"model": MODEL_NAME, "revision": REVISION, "compared_with": compared_with}
    buckets = tuple(
        int(value(text, "modelserver_shadow_score_difference_bucket", le=le, **labels)) for le in CONTRACT_BUCKETS
    )
    return Shadow(
        rows=int(value(text, "modelserver_shadow_rows_total", **labels)),
        agreed=int(value(text, "modelserver_shadow_agreed_rows_total", **labels)),
        errors=int(value(text, "modelserver_shadow_errors_total", **labels)),
        buckets=buckets,
        total=value(text, "modelserver_shadow_score_difference_sum", **labels),
    )


def assert_same(got: Shadow, expected: Shadow) -> None:
    assert (got.rows, got.agreed, got.errors, got.buckets) == (
        expected.rows,
        expected.agreed,
        expected.errors,
        expected.buckets,
    )
    assert got.total == pytest.approx(expected.total, rel=1e-9, abs=1e-9)


def requests_of(seed: int) -> list[np.ndarray]:
    """Single-row requests (most real-time traffic) and two batches."""
    rows = np.asarray(dataset.generate(160, seed=seed).features, dtype=np.float32)
    return [rows[i : i + 1] for i in range(20)] + [rows[20:60], rows[60:160]]


def post(server: ServerProcess, rows: np.ndarray) -> dict[str, list[float]]:
    response = requests.post(server.url + INFER, json=dataset.tensor_body(rows), timeout=10)
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def send(server: ServerProcess, served: str, compared: str, batches: list[np.ndarray], expected: Shadow) -> None:
    """Send every batch over HTTP, checking the client gets the served model's answer."""
    for rows in batches:
        answer = post(server, rows)
        np.testing.assert_array_equal(np.asarray(answer["label"]), predict(served, rows)[0])
        expected.add(served, compared, rows)


# -- settings ---------------------------------------------------------------------------------------
BASE = ["--model-uri", "m.onnx", "--model-name", "fraud"]


def test_settings_flags_env_and_defaults() -> None:
    off = parse_settings(BASE, environ={})
    assert (off.compare_model_uri, off.compare_sha256, off.compare_revision) == (None, None, None)
    flags = parse_settings(
        [*BASE, "--compare-model-uri", "s.onnx", "--compare-sha256", "AB" * 32, "--compare-revision", "stable"],
        environ={},
    )
    assert (flags.compare_model_uri, flags.compare_sha256, flags.compare_revision) == ("s.onnx", "ab" * 32, "stable")
    env = {
        "MODELSERVER_COMPARE_MODEL_URI": "e.onnx",
        "MODELSERVER_COMPARE_SHA256": "cd" * 32,
        "MODELSERVER_COMPARE_REVISION": "r0",
    }
    e = parse_settings(BASE, environ=env)
    assert (e.compare_model_uri, e.compare_sha256, e.compare_revision) == ("e.onnx", "cd" * 32, "r0")
    assert parse_settings([*BASE, "--compare-model-uri", "f.onnx"], environ=env).compare_model_uri == "f.onnx"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([*BASE, "--compare-sha256", "ab" * 32], {}),
        ([*BASE, "--compare-revision", "stable"], {}),
        (BASE, {"MODELSERVER_COMPARE_REVISION": "stable"}),
        ([*BASE, "--compare-model-uri", "s.onnx", "--compare-sha256", "abc"], {}),
    ],
)
def test_describing_no_comparison_model_or_a_bad_digest_is_a_usage_error(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_settings(argv, environ=env)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


# -- the families -----------------------------------------------------------------------------------
def test_bucket_edges_are_the_contract_and_inclusive() -> None:
    assert tuple(float(le) for le in CONTRACT_BUCKETS[:-1]) == SHADOW_DIFFERENCE_BUCKETS
    one, many = ShadowMetrics(("m", "r", "c")), ShadowMetrics(("m", "r", "c"))
    values = [0.0, 0.01, 0.010001, 0.5, 0.7, 1.0]
    for v in values:
        one.record_one(v < 0.6, v)
    many.record(len(values), 4, np.asarray(values))
    for metrics in (one, many):
        registry = CollectorRegistry()
        registry.register(metrics)
        text = generate_latest(registry).decode()
        assert [value(text, "modelserver_shadow_score_difference_bucket", le=le) for le in CONTRACT_BUCKETS] == [
            2, 3, 3, 3, 3, 3, 4, 6,
        ], "a difference equal to an edge is in that edge's bucket (le)"  # fmt: skip
        assert value(text, "modelserver_shadow_rows_total") == 6
        assert value(text, "modelserver_shadow_agreed_rows_total") == 4
        assert value(text, "modelserver_shadow_score_difference_sum") == pytest.approx(sum(values))


def test_feature_off_exposes_no_shadow_families(baseline: ServerProcess) -> None:
    post(baseline, requests_of(1)[0])
    names = families(baseline.metrics())
    assert "modelserver_predictions" in names
    assert not [n for n in names if n.startswith("modelserver_shadow")]


# -- real models, real server processes --------------------------------------------------------------
def test_the_same_model_agrees_on_every_row(server_factory: ServerFactory) -> None:
    server = server_factory.start(compare_args("baseline", "baseline"))
    compared_with = digest("baseline")[:12]  # --compare-revision's default, as --revision's
    text = server.metrics()
    assert {n for n in families(text) if n.startswith("modelserver_shadow")} == set(FAMILIES)
    assert reported(text, compared_with) == Shadow(), "every series exists at 0 before the first request"
    expected = Shadow()
    send(server, "baseline", "baseline", requests_of(2), expected)
    got = reported(server.metrics(), compared_with)
    assert got.rows == got.agreed == 160 and got.errors == 0
    assert got.buckets == (160,) * len(CONTRACT_BUCKETS) and got.total == 0.0, "all differences in the first bucket"
    assert_same(got, expected)


def test_better_vs_baseline_counts_what_onnxruntime_gives_over_http_and_grpc(server_factory: ServerFactory) -> None:
    grpc_server = start_grpc(server_factory, compare_args("better", "baseline", "--compare-revision", "stable"))
    server = grpc_server.http
    expected = Shadow()
    send(server, "better", "baseline", requests_of(3), expected)
    assert_same(reported(server.metrics(), "stable"), expected)

    grpc_rows = np.asarray(dataset.generate(45, seed=4).features, dtype=np.float32)
    for rows in [grpc_rows[i : i + 1] for i in range(15)] + [grpc_rows[15:]]:
        response = grpc_server.stub.ModelInfer(typed_request(rows))
        assert list(response.outputs[0].contents.int64_contents) == predict("better", rows)[0].tolist()
        expected.add("better", "baseline", rows)
    got = reported(server.metrics(), "stable")
    assert_same(got, expected)
    assert got.rows == 160 + 45 and got.errors == 0
    assert 0.8 < got.agreed / got.rows < 1, "a better model mostly agrees with the stable one, not always"
    assert got.buckets[0] < got.rows, "and its scores differ"


def test_coinflip_agrees_far_less(server_factory: ServerFactory) -> None:
    server = server_factory.start(compare_args("coinflip", "baseline", "--compare-revision", "stable"))
    expected = Shadow()
    send(server, "coinflip", "baseline", requests_of(5), expected)
    got = reported(server.metrics(), "stable")
    assert_same(got, expected)
    assert got.agreed / got.rows < 0.6, "about a coin's chance of agreeing"


def test_non_finite_comparison_scores_are_errors_per_row(server_factory: ServerFactory) -> None:
    """broken.onnx gives NaN probabilities for amount < 15: those rows count as errors, the others compare."""
    server = server_factory.start(compare_args("baseline", "broken", "--compare-revision", "broken"))
    expected = Shadow()
    send(server, "baseline", "broken", requests_of(6), expected)
    got = reported(server.metrics(), "broken")
    assert_same(got, expected)
    assert got.errors > 0 and got.rows > 0 and got.rows + got.errors == 160
    assert got.agreed == got.rows, "broken.onnx is baseline where it answers"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--compare-model-uri", str(model_path("narrow"))], ["input 'input' is FP32 [-1, 4]", "[-1, 5]"]),
        (
            ["--compare-model-uri", str(model_path("baseline")), "--compare-sha256", "0" * 64],
            ["sha256 mismatch", "--compare-sha256"],
        ),
        (["--compare-model-uri", str(MODELS / "absent.onnx")], ["could not be fetched"]),
    ],
    ids=["other-input-schema", "bad-sha256", "missing"],
)
def test_an_incomparable_model_keeps_the_server_unready(
    server_factory: ServerFactory, extra: list[str], words: list[str]
) -> None:
    server = server_factory.start(model_args("baseline", "--warmup-requests", "2", *extra), ready=False)
    reason = load_failure(server)
    assert reason.startswith("--compare-model-uri: ") and "fix: " in reason, reason
    for word in words:
        assert word in reason, reason
    assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 503
    assert not [n for n in families(server.metrics()) if n.startswith("modelserver_shadow")]


# -- in process: refusals that need a prepared directory, and failures at request time -----------------
def load(*argv: str) -> tuple[Settings, ServerState]:
    """Run the start-up sequence in this process (as the loader thread would)."""
    settings = parse_settings([*model_args("baseline", "--warmup-requests", "2", "--grpc-port", "0"), *argv], {})
    state = ServerState()
    Loader(settings, state, None).run()
    gc.unfreeze()  # the loader freezes everything it allocated: a server's choice, not this test process's
    return settings, state


EXAMPLE_FEATURES = json.loads((MODELS / "metadata.json").read_text())["features"]


def comparison_dir(tmp_path: Path, **metadata_changes: object) -> Path:
    """baseline.onnx in a directory of its own, beside a changed copy of the example metadata.json."""
    shutil.copy(model_path("baseline"), tmp_path / "model.onnx")
    doc = json.loads((MODELS / "metadata.json").read_text())
    doc.update(metadata_changes)
    (tmp_path / "metadata.json").write_text(json.dumps(doc))
    return tmp_path / "model.onnx"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"classes": ["ok", "fraud"], "positive_class": "fraud"}, "its classes ['ok', 'fraud']"),
        ({"positive_class": "legit"}, "its positive_class 'legit' differs"),
        ({"features": [EXAMPLE_FEATURES[1], EXAMPLE_FEATURES[0], *EXAMPLE_FEATURES[2:]]}, "its features ['account_age"),
    ],
    ids=["classes", "positive-class", "feature-order"],
)
def test_other_classes_or_scores_are_refused(tmp_path: Path, changes: dict[str, object], words: str) -> None:
    _, state = load("--compare-model-uri", str(comparison_dir(tmp_path, **changes)))
    assert state.phase == "failed"
    assert state.reason.startswith("--compare-model-uri: ") and words in state.reason, state.reason


def test_the_comparison_models_own_metadata_is_read(tmp_path: Path) -> None:
    _, state = load("--compare-model-uri", str(comparison_dir(tmp_path)))
    assert state.ready and state.runtime is not None and state.runtime.shadow is not None


@pytest.fixture(params=["inline", "thread"])
def in_process(request: pytest.FixtureRequest) -> Iterator[ServerState]:
    """A ready server state comparing baseline with baseline, its session run inline (micro-batched) or in
    the worker pool."""
    _, state = load("--compare-model-uri", str(model_path("baseline")), "--executor", request.param)
    assert state.ready, state.reason
    runtime = state.runtime
    assert runtime is not None and runtime.shadow is not None
    assert (runtime.executor is None) == (request.param == "inline")
    try:
        yield state
    finally:
        if runtime.executor is not None:
            runtime.executor.shutdown()


def test_a_failing_comparison_model_never_fails_the_client(
    in_process: ServerState, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = in_process.runtime
    assert runtime is not None and runtime.shadow is not None
    shadow = runtime.shadow
    calls = []

    def fail(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(feeds[dataset.INPUT_NAME]))
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : simulated")

    batches = [*requests_of(7)[:5], requests_of(7)[-1]]
    settings = parse_settings(model_args("baseline"), {})
    app = create_app(settings, in_process, start_loader=False)

    async def infer_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modelserver") as client:
            return [await client.post(INFER, json=dataset.tensor_body(rows)) for rows in batches]

    monkeypatch.setattr(shadow.model, "run", fail)
    with caplog.at_level(logging.WARNING, logger="modelserver.compare"):
        answers = asyncio.run(infer_all())
    for rows, answer in zip(batches, answers, strict=True):
        assert answer.status_code == 200, answer.text
        labels = next(o["data"] for o in answer.json()["outputs"] if o["name"] == "label")
        assert labels == predict("baseline", rows)[0].tolist(), "the served model's answer, untouched"
    assert calls == [len(rows) for rows in batches], "the comparison model ran on each request's feeds"
    compared_with = digest("baseline")[:12]
    text = runtime.metrics.exposition().decode()
    got = reported(text, compared_with)
    assert (got.errors, got.rows, got.agreed) == (sum(len(r) for r in batches), 0, 0)
    warnings = [r for r in caplog.records if r.name == "modelserver.compare"]
    assert len(warnings) == 1 and len(batches) < ERROR_LOG_EVERY, "logged once per ERROR_LOG_EVERY failed batches"
    assert "simulated" in warnings[0].__dict__["error"]

    monkeypatch.undo()  # the comparison model recovers: its rows count again
    assert asyncio.run(infer_all())[0].status_code == 200
    got = reported(runtime.metrics.exposition().decode(), compared_with)
    assert got.rows == got.agreed == sum(len(r) for r in batches)
