"""Gate metrics: names match docs/metrics.md, every series carries model and revision, counters move."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import requests

from examples.models import dataset
from hack.loopback.cluster import wait_until

from .conftest import MODEL_NAME, REPO, REVISION, ServerFactory, ServerProcess, model_args
from .promtext import families, samples, value

INFER = f"/v2/models/{MODEL_NAME}/infer"
FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"


def _documented_metrics() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(modelserver_[a-z_]+)`", text, flags=re.MULTILINE))


def _exposed_names(text: str) -> set[str]:
    """Names as queried in PromQL: counters with ``_total``, histograms by their family name."""
    names = set()
    for name, _, _ in samples(text):
        names.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(("_bucket", "_sum", "_count")) else name)
    return names


SHADOW = {
    "modelserver_shadow_rows_total", "modelserver_shadow_agreed_rows_total", "modelserver_shadow_score_difference",
    "modelserver_shadow_errors_total",
}  # fmt: skip
"""Exported only with --compare-model-uri (a shadow candidate's pods)."""


def test_metric_names_match_docs(baseline: ServerProcess, server_factory: ServerFactory) -> None:
    requests.post(baseline.url + INFER, json=dataset.tensor_body(dataset.generate(1, seed=1).features), timeout=5)
    exposed = _exposed_names(baseline.metrics())
    documented = _documented_metrics()
    assert documented, "docs/metrics.md lists no metrics in its table"
    plain = documented - SHADOW
    assert exposed == plain, f"undocumented: {exposed - plain}; not exported: {plain - exposed}"
    model = str(REPO / "examples" / "models" / "baseline.onnx")
    shadow = server_factory.start(model_args("baseline", "--warmup-requests", "1", "--compare-model-uri", model))
    assert _exposed_names(shadow.metrics()) == documented, "with a comparison model: the shadow families too"
    expected = {
        "modelserver_requests_total", "modelserver_request_duration_seconds", "modelserver_inflight_requests",
        "modelserver_predictions_total", "modelserver_prediction_score", "modelserver_feedback_total",
        "modelserver_feedback_unmatched_total", "modelserver_features_imputed_total",
        "modelserver_features_missing_total", "modelserver_model_load_seconds", "modelserver_warmup_seconds",
        "modelserver_ready", "modelserver_model_signature_info", "modelserver_feature_bin_total",
        "modelserver_feature_bin_reference", "modelserver_imputed_rows_total", *SHADOW,
    }  # fmt: skip
    assert documented == expected


def test_every_series_has_model_and_revision(baseline: ServerProcess) -> None:
    text = baseline.metrics()
    assert families(text)
    for name, labels, _ in samples(text):
        assert labels.get("model") == MODEL_NAME and labels.get("revision") == REVISION, (name, labels)


def test_latency_buckets_span_sub_millisecond_to_seconds(baseline: ServerProcess) -> None:
    les = {
        float(lab["le"])
        for n, lab, _ in samples(baseline.metrics())
        if n == "modelserver_request_duration_seconds_bucket"
    }
    assert min(les) <= 0.0005 and 10.0 in les


def test_infer_counts_and_latency(baseline: ServerProcess) -> None:
    before = baseline.metrics()
    body = dataset.tensor_body(dataset.generate(3, seed=9).features)
    for _ in range(4):
        assert requests.post(baseline.url + INFER, json=body, timeout=5).status_code == 200
    requests.post(baseline.url + INFER, json={"inputs": "x"}, timeout=5)
    after = baseline.metrics()
    delta = lambda name, **lab: value(after, name, **lab) - value(before, name, **lab)  # noqa: E731
    assert delta("modelserver_requests_total", endpoint="infer", code="2xx") == 4
    assert delta("modelserver_requests_total", endpoint="infer", code="4xx") == 1
    assert delta("modelserver_request_duration_seconds_count") == 4, "4xx are not timed"
    assert delta("modelserver_predictions_total") == 12
    assert delta("modelserver_prediction_score_count") == 12
    assert value(after, "modelserver_inflight_requests") == 0


def test_feedback_moves_counters(server_factory: ServerFactory) -> None:
    server = server_factory.start(model_args("better", "--warmup-requests", "1"))
    reqs = list(dataset.labelled_requests(60, seed=21, batch_size=3))
    predicted: dict[str, list[str]] = {}
    for req in reqs:
        out = requests.post(server.url + INFER, json=req.body, timeout=5).json()
        predicted[req.id] = [dataset.CLASSES[i] for i in out["outputs"][0]["data"]]
    expected_correct = sum(p == t for r in reqs for p, t in zip(predicted[r.id], r.labels, strict=True))
    half = len(reqs) // 2
    for req in reqs[:half]:
        response = requests.post(server.url + FEEDBACK, json=dataset.feedback_body(req.id, req.labels), timeout=5)
        assert response.status_code == 200 and response.json()["status"] == "matched", response.text
    batch = {"feedback": [{"id": r.id, "truth": [dataset.CLASSES.index(x) for x in r.labels]} for r in reqs[half:]]}
    batch["feedback"].append({"id": "never-seen", "truth": "fraud"})
    result = requests.post(server.url + FEEDBACK, json=batch, timeout=5).json()
    assert result["matched"] == len(reqs) - half and result["unmatched"] == 1
    assert result["results"][-1]["status"] == "unknown"
    text = server.metrics()
    correct = value(text, "modelserver_feedback_total", correct="true")
    incorrect = value(text, "modelserver_feedback_total", correct="false")
    assert correct + incorrect == 60 and correct == expected_correct
    assert correct / 60 > 0.75, "the better model should be mostly right on its own data"
    assert value(text, "modelserver_feedback_unmatched_total", reason="unknown") == 1
    again = requests.post(server.url + FEEDBACK, json=dataset.feedback_body(reqs[0].id, reqs[0].labels), timeout=5)
    assert again.status_code == 404 and again.json()["status"] == "unknown", "each prediction is scored once"
    assert value(server.metrics(), "modelserver_feedback_unmatched_total", reason="unknown") == 2


def test_feedback_expiry_is_reported(server_factory: ServerFactory) -> None:
    server = server_factory.start(model_args("baseline", "--warmup-requests", "1", "--feedback-ttl-seconds", "0.2"))
    body = dataset.tensor_body(dataset.generate(1, seed=1).features, "old")
    requests.post(server.url + INFER, json=body, timeout=5)

    time.sleep(0.4)
    response = requests.post(server.url + FEEDBACK, json={"id": "old", "truth": "legit"}, timeout=5)
    assert response.status_code == 404 and response.json()["status"] == "expired"
    assert "expired" in response.json()["error"]
    assert value(server.metrics(), "modelserver_feedback_unmatched_total", reason="expired") == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"truth": "fraud"}, "id"),
        ({"id": "x"}, "truth"),
        ({"feedback": []}, "non-empty"),
        ({"feedback": [{"id": 3, "truth": "fraud"}]}, "feedback[0].id"),
    ],
)
def test_malformed_feedback_is_400(baseline: ServerProcess, body: dict, fragment: str) -> None:
    response = requests.post(baseline.url + FEEDBACK, json=body, timeout=5)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


def test_feedback_with_wrong_truth_is_400_and_keeps_the_prediction(baseline: ServerProcess) -> None:
    body = dataset.tensor_body(dataset.generate(2, seed=4).features, "two-rows")
    requests.post(baseline.url + INFER, json=body, timeout=5)
    wrong_len = requests.post(baseline.url + FEEDBACK, json={"id": "two-rows", "truth": "fraud"}, timeout=5)
    assert wrong_len.status_code == 400 and "2 row(s)" in wrong_len.json()["error"]
    wrong_class = requests.post(baseline.url + FEEDBACK, json={"id": "two-rows", "truth": ["fraud", "cat"]}, timeout=5)
    assert wrong_class.status_code == 400 and "'cat' is not a known class" in wrong_class.json()["error"]
    ok = requests.post(baseline.url + FEEDBACK, json={"id": "two-rows", "truth": ["fraud", 0]}, timeout=5)
    assert ok.status_code == 200 and ok.json()["correct"] + ok.json()["incorrect"] == 2


def test_non_finite_output_is_a_500_and_counted(broken: ServerProcess) -> None:
    data = dataset.generate(200, seed=31)
    small = np.flatnonzero(data.features[:, 0] < 15.0)
    large = np.flatnonzero(data.features[:, 0] > 20.0)
    before = broken.metrics()
    bad = requests.post(broken.url + INFER, json=dataset.tensor_body(data.features[small[:1]]), timeout=5)
    assert bad.status_code == 500
    assert "non-finite" in bad.json()["error"] and "NaN" not in bad.text
    good = requests.post(broken.url + INFER, json=dataset.tensor_body(data.features[large[:1]]), timeout=5)
    assert good.status_code == 200
    json.loads(good.text)
    after = broken.metrics()
    assert (
        value(after, "modelserver_requests_total", code="5xx", endpoint="infer")
        - value(before, "modelserver_requests_total", code="5xx", endpoint="infer")
        == 1
    )
    assert (
        value(after, "modelserver_request_duration_seconds_count")
        - value(before, "modelserver_request_duration_seconds_count")
        == 2
    ), "model faults are timed too"


def test_broken_model_error_rate_on_realistic_traffic(broken: ServerProcess) -> None:
    codes = [
        requests.post(broken.url + INFER, json=req.body, timeout=5).status_code
        for req in dataset.labelled_requests(80, seed=41)
    ]
    rate = codes.count(500) / len(codes)
    assert set(codes) <= {200, 500} and 0.1 <= rate <= 0.5, rate


def test_sampled_prediction_log(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        model_args("baseline", "--warmup-requests", "1", "--log-sample-rate", "1", "--log-inputs", "true")
    )
    body = dataset.tensor_body(dataset.generate(1, seed=1).features, "logged-1")
    requests.post(server.url + INFER, json=body, timeout=5)

    # The line is written right after the answer is sent (the accounting follows the send), so the
    # client can hold the answer a moment before the server's stdout holds the line.
    def logged() -> dict | None:
        lines = [json.loads(x) for x in server.stdout().splitlines() if x.startswith("{")]
        return next((x for x in lines if x.get("id") == "logged-1"), None)

    record = wait_until(logged, 5, interval=0.05, what="the prediction log line for logged-1")
    assert record["model"] == MODEL_NAME and record["revision"] == REVISION and record["latency_ms"] > 0
    assert set(record["outputs"]) == {"label", "probabilities"} and "input" in record["inputs"]
    assert isinstance(record["time"], float)


def test_latency_buckets_flag_sets_the_histogram_edges(server_factory: ServerFactory) -> None:
    server = server_factory.start(model_args("baseline", "--warmup-requests", "1", "--latency-buckets", "0.002,0.04,1"))
    requests.post(server.url + INFER, json=dataset.tensor_body(dataset.generate(1, seed=1).features), timeout=5)
    les = [lab["le"] for n, lab, _ in samples(server.metrics()) if n == "modelserver_request_duration_seconds_bucket"]
    assert les == ["0.002", "0.04", "1.0", "+Inf"]
    assert value(server.metrics(), "modelserver_request_duration_seconds_count") == 1


def test_model_signature_info_lists_tensors_and_features(baseline: ServerProcess) -> None:
    series = {
        (lab["io"], lab["name"], lab["datatype"], lab["shape"]): v
        for n, lab, v in samples(baseline.metrics())
        if n == "modelserver_model_signature_info"
    }
    assert series == {
        ("input", "input", "FP32", "-1,5"): 1.0,
        ("output", "label", "INT64", "-1"): 1.0,
        ("output", "probabilities", "FP32", "-1,2"): 1.0,
        **{("feature", name, "number", ""): 1.0 for name in dataset.NUMERIC_FEATURES},
        ("feature", "channel", "category", ""): 1.0,
    }
    metadata = requests.get(baseline.url + f"/v2/models/{MODEL_NAME}", timeout=5).json()
    tensors = {(io, t["name"], t["datatype"], ",".join(map(str, t["shape"])))
               for io in ("input", "output") for t in metadata[io + "s"]}  # fmt: skip
    assert tensors == {k for k in series if k[0] != "feature"}, "the metric says what the metadata endpoint says"
