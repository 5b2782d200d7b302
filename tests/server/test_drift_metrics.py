"""Drift bins: metadata.json's reference_bins, validated at load, and the per-bin counters beside them.

The operator judges drift from Prometheus alone (``modelserver_feature_bin_total`` against
``modelserver_feature_bin_reference``), so the bin a value lands in must be the one
``np.searchsorted(edges, value, side="left")`` gives — the convention of ``examples/models/generate.py``
and of the operator's ``ReferenceBins.count`` — and only accepted, observed values may count.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from modelserver import metrics as metrics_module
from modelserver.errors import LoadError
from modelserver.metadata import MAX_REFERENCE_BINS, PREDICTION_SCORE_FEATURE, Feature, ReferenceBins, parse_metadata
from modelserver.metrics import ServerMetrics
from modelserver.proto import open_inference_grpc_pb2 as pb
from modelserver.proto import open_inference_grpc_pb2_grpc as pb_grpc

from examples.models import dataset

from .conftest import MODEL_NAME, MODELS, REVISION, ServerFactory, free_port, model_args
from .promtext import samples, value

INFER = f"/v2/models/{MODEL_NAME}/infer"
EXAMPLE = json.loads((MODELS / "metadata.json").read_text())
BIN = "modelserver_feature_bin_total"
REFERENCE = "modelserver_feature_bin_reference"


def _doc(**changes: Any) -> bytes:
    return json.dumps(changes).encode()


def _number(name: str = "a", **reference: Any) -> dict[str, Any]:
    return {"name": name, "type": "number", "reference_bins": reference}


def _category(reference: Any, name: str = "c", categories: tuple[str, ...] = ("web", "app", "pos")) -> dict[str, Any]:
    return {"name": name, "type": "category", "categories": list(categories), "reference_bins": reference}


# -- metadata.json ----------------------------------------------------------------------------------
def test_example_metadata_has_a_reference_for_every_feature_and_the_score() -> None:
    meta = parse_metadata((MODELS / "metadata.json").read_bytes())
    assert all(f.reference is not None for f in meta.features)
    amount = meta.features[0].reference
    assert amount is not None and amount.edges == (8.29, 15.91, 32.9, 70.4525, 134.851) and len(amount.fractions) == 6
    channel = meta.features[-1].reference
    assert channel is not None and channel.categories == ("web", "app", "pos") and not channel.edges
    assert meta.score_reference is not None and len(meta.score_reference.fractions) == 20


def test_references_are_optional_and_categories_may_be_reordered_or_a_subset() -> None:
    meta = parse_metadata(
        _doc(
            features=[
                {"name": "plain", "type": "number"},
                _category({"categories": ["pos", "web", "app"], "fractions": [0.2, 0.3, 0.5]}, "reordered"),
                _category({"categories": ["app"], "fractions": [1]}, "subset"),
                _number("wide", edges=list(range(MAX_REFERENCE_BINS - 1)), fractions=[1 / MAX_REFERENCE_BINS] * 64),
            ]
        )
    )
    plain, reordered, subset, wide = meta.features
    assert plain.reference is None and meta.score_reference is None
    assert reordered.reference == ReferenceBins((0.2, 0.3, 0.5), (), ("pos", "web", "app"))
    assert subset.reference is not None and subset.reference.categories == ("app",)
    assert wide.reference is not None and len(wide.reference.fractions) == MAX_REFERENCE_BINS


REF = "features[0].reference_bins"
SCORE = "prediction_score_reference_bins"


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ({"name": PREDICTION_SCORE_FEATURE, "type": "number"}, "features[0].name: '_prediction_score' is reserved"),
        ({"name": "a", "type": "number", "reference_bins": [1, 2]}, f"{REF}: expected an object with edges"),
        (_number(fractions=[0.5, 0.5]), f"{REF}.edges: expected a list of numbers"),
        (_number(edges=[], fractions=[1]), f"{REF}.edges: expected at least one edge"),
        (_number(edges=[1, "2"], fractions=[0.3, 0.3, 0.4]), f"{REF}.edges[1]: expected a finite number, got '2'"),
        (_number(edges=[1, True], fractions=[0.3, 0.3, 0.4]), f"{REF}.edges[1]: expected a finite number"),
        (_number(edges=[1, 3, 3], fractions=[0.25] * 4), f"{REF}.edges: must be strictly increasing; edges[2] = 3"),
        (_number(edges=[2, 1], fractions=[0.3, 0.3, 0.4]), f"{REF}.edges: must be strictly increasing; edges[1]"),
        (_number(edges=[1, 2]), f"{REF}.fractions: expected a list of numbers"),
        (_number(edges=[1, 2], fractions=[0.5, 0.5]), f"{REF}.fractions: 2 edges make 3 bins, got 2 fractions"),
        (_number(edges=[1], fractions=[1.2, -0.2]), f"{REF}.fractions: must be >= 0; fractions[1] = -0.2"),
        (_number(edges=[1], fractions=[0.5, 0.48]), f"{REF}.fractions: must add up to 1 (+-0.01), they add up to 0.98"),
        (_number(edges=[1], fractions=[0.5, None]), f"{REF}.fractions[1]: expected a finite number, got None"),
        (_number(edges=[1], fractions=[0.5, 0.5], categories=["x"]), f"{REF}.categories: not allowed for numbers"),
        (
            _number(edges=list(range(MAX_REFERENCE_BINS)), fractions=[1 / 65] * 65),
            f"{REF}: 65 bins, at most {MAX_REFERENCE_BINS} allowed",
        ),
        (_category({"fractions": [1]}), f"{REF}.categories: expected a list of non-empty strings"),
        (_category({"categories": [], "fractions": []}), f"{REF}.categories: expected at least one category"),
        (_category({"categories": ["web", "tv"], "fractions": [0.5, 0.5]}),
         f"{REF}.categories: 'tv' is not one of the feature's categories ['web', 'app', 'pos']"),
        (_category({"categories": ["web", "web"], "fractions": [0.5, 0.5]}), f"{REF}.categories: must be unique"),
        (_category({"categories": ["web", "app"], "fractions": [1]}),
         f"{REF}.fractions: 2 categories need as many fractions, got 1"),
        (_category({"categories": ["web"], "edges": [1], "fractions": [1]}),
         f"{REF}.edges: not allowed for a category feature"),
    ],
)  # fmt: skip
def test_bad_feature_references_name_the_field(feature: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadError, match=re.escape(f"metadata.json: {message}")):
        parse_metadata(_doc(features=[feature]))


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"edges": [0.5], "fractions": [0.5, 0.6]}, f"{SCORE}.fractions: must add up to 1"),
        ({"edges": [0.5, 0.2], "fractions": [0.3, 0.3, 0.4]}, f"{SCORE}.edges: must be strictly increasing"),
        ({"categories": ["a"], "fractions": [1]}, f"{SCORE}.categories: not allowed for numbers"),
        ("bins", f"{SCORE}: expected an object with edges and fractions"),
    ],
)
def test_bad_score_references_name_the_field(reference: Any, message: str) -> None:
    with pytest.raises(LoadError, match=re.escape(message)):
        parse_metadata(_doc(prediction_score_reference_bins=reference))


# -- bin assignment ---------------------------------------------------------------------------------
def _metrics(features: list[Feature], score: ReferenceBins | None = None) -> ServerMetrics:
    m = ServerMetrics("fraud", "r")
    m.bind_reference_bins(features, score)
    return m


def _counts(m: ServerMetrics, feature: str) -> list[int]:
    found = {
        int(labels["bin"]): int(v)
        for name, labels, v in samples(m.exposition().decode())
        if name == BIN and labels["feature"] == feature
    }
    assert sorted(found) == list(range(len(found))), found
    return [found[i] for i in range(len(found))]


def _num(name: str, edges: tuple[float, ...]) -> Feature:
    k = len(edges) + 1
    return Feature(name, "number", reference=ReferenceBins((1 / k,) * k, edges))


CHANNEL = Feature("channel", "category", ("web", "app", "pos"))


def test_a_value_on_an_edge_counts_in_the_lower_bin_and_the_ends_are_open() -> None:
    m = _metrics([_num("x", (1.0, 2.0, 3.0))])
    values = np.asarray([[-10.0], [0.5], [1.0], [1.5], [2.0], [3.0], [3.5], [1e30]], dtype=np.float32)
    for row in values:  # the small-batch path (bisect)
        m.count_feature_bins(row.reshape(1, 1))
    assert _counts(m, "x") == [3, 2, 1, 2]
    m.count_feature_bins(np.repeat(values, 20, axis=0))  # the numpy path
    assert _counts(m, "x") == [3 * 21, 2 * 21, 1 * 21, 2 * 21]
    expected = np.bincount(np.searchsorted([1.0, 2.0, 3.0], values.ravel(), side="left"), minlength=4)
    assert _counts(m, "x") == (expected * 21).tolist()


def test_edges_compare_in_the_inputs_precision() -> None:
    """32.9 sent in an FP32 tensor is 32.900002 but still the edge 32.9: the lower bin, as in training."""
    m = _metrics([_num("amount", (8.29, 15.91, 32.9))])
    m.count_feature_bins(np.asarray([[32.9], [15.91]], dtype=np.float32))
    m.count_feature_bins(np.asarray([[32.9], [32.900001]], dtype=np.float64))
    assert _counts(m, "amount") == [0, 1, 2, 1]


def test_categories_count_in_the_references_order() -> None:
    reference = ReferenceBins((0.2, 0.3, 0.5), (), ("pos", "web", "app"))
    m = _metrics([Feature("channel", "category", ("web", "app", "pos"), reference=reference)])
    m.count_feature_bins(np.asarray([[0], [1], [2], [2], [2]], dtype=np.float32))  # web app pos pos pos
    assert _counts(m, "channel") == [3, 1, 1]
    m.count_feature_bins(np.asarray([[2], [0], [-1], [3], [7]] * 20, dtype=np.float32))  # out of range: none
    assert _counts(m, "channel") == [23, 21, 1]


def test_categories_outside_a_subset_reference_are_not_counted() -> None:
    reference = ReferenceBins((0.6, 0.4), (), ("app", "web"))
    m = _metrics([Feature("channel", "category", ("web", "app", "pos"), reference=reference)])
    m.count_feature_bins(np.asarray([[0], [1], [2], [1]], dtype=np.float32))
    assert _counts(m, "channel") == [2, 1]


def test_imputed_cells_and_features_without_reference_are_not_counted() -> None:
    features = [_num("a", (0.0,)), Feature("b", "number"), _num("c", (10.0,))]
    m = _metrics(features)
    matrix = np.asarray([[-1, 5, 20], [1, 5, 1], [2, 5, 30]], dtype=np.float32)
    m.count_feature_bins(matrix, [(0, 0), (1, 1), (2, 2)])
    m.count_feature_bins(np.repeat(matrix, 30, axis=0), [(0, 0), (1, 1), (2, 2)])
    assert _counts(m, "a") == [0 + 29, 2 + 60] and _counts(m, "c") == [1 + 30, 1 + 59]
    assert all(labels["feature"] != "b" for name, labels, _ in samples(m.exposition().decode()) if name == BIN)


def test_a_matrix_of_another_width_is_not_counted() -> None:
    m = _metrics([_num("a", (0.0,)), _num("b", (0.0,))])
    m.count_feature_bins(np.ones((3, 3), dtype=np.float32))
    m.count_feature_bins(np.ones((3,), dtype=np.float32))
    assert _counts(m, "a") == [0, 0]


def test_both_counting_paths_agree_with_searchsorted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random matrices of 1..300 rows (the numpy path in chunks of 7 rows): identical counts."""
    monkeypatch.setattr(metrics_module, "BIN_CHUNK_CELLS", 7 * 5 * 5)
    meta = parse_metadata((MODELS / "metadata.json").read_bytes())
    slots = [f.reference.categories.index(c) for f in meta.features[-1:] for c in f.categories if f.reference]
    counter = _metrics(list(meta.features))._feature_bins
    assert counter is not None
    rng = np.random.default_rng(7)
    for rows in (1, 2, 12, 13, 64, 300):
        matrix = dataset.generate(rows, seed=rows).features.astype(np.float32)
        matrix[: rows // 2, 0] = np.float32(32.9)  # on an edge
        skip = [(int(r), int(c)) for r, c in zip(rng.integers(0, rows, 3), rng.integers(0, 5, 3), strict=True)]
        small = dict(counter._count_small(matrix, skip))
        vectorised = dict(counter._count_numpy(matrix, skip))
        expected, first = {}, 0
        keep = np.ones(matrix.shape, dtype=bool)
        for r, c in skip:
            keep[r, c] = False
        for i, f in enumerate(meta.features):
            assert f.reference is not None
            column = matrix[keep[:, i], i]
            if f.kind == "number":
                edges = np.asarray(f.reference.edges, dtype=np.float32)
                found = np.bincount(np.searchsorted(edges, column, side="left"), minlength=len(edges) + 1)
            else:
                found = np.bincount([slots[int(v)] for v in column], minlength=len(slots))
            expected.update({first + b: int(n) for b, n in enumerate(found) if n})
            first += len(f.reference.fractions)
        assert small == vectorised == expected, rows


def test_rows_counted_one_by_one_add_up_to_the_matrix_counted_at_once() -> None:
    """The one-row path (most requests) agrees with the small-batch path it shortcuts."""
    meta = parse_metadata((MODELS / "metadata.json").read_bytes())
    matrix = dataset.generate(40, seed=3).features.astype(np.float32)
    matrix[:5, 0] = np.float32(32.9)  # on an edge
    one_by_one, at_once = _metrics(list(meta.features)), _metrics(list(meta.features))
    for row in matrix:
        one_by_one.count_feature_bins(row.reshape(1, -1))
    for start in range(0, 40, 8):
        at_once.count_feature_bins(matrix[start : start + 8])
    for feature in meta.features:
        assert _counts(one_by_one, feature.name) == _counts(at_once, feature.name), feature.name
    assert sum(_counts(one_by_one, meta.features[0].name)) == 40


def test_reference_gauges_and_zero_counters_exist_from_load() -> None:
    meta = parse_metadata((MODELS / "metadata.json").read_bytes())
    m = _metrics(list(meta.features), meta.score_reference)
    text = m.exposition().decode()
    for feature in (*meta.features, None):
        name = feature.name if feature else PREDICTION_SCORE_FEATURE
        reference = feature.reference if feature else meta.score_reference
        assert reference is not None
        for i, fraction in enumerate(reference.fractions):
            labels = {"model": "fraud", "revision": "r", "feature": name, "bin": str(i)}
            assert value(text, REFERENCE, **labels) == fraction
            assert (BIN, labels, 0.0) in samples(text)
    assert len([s for s in samples(text) if s[0] == BIN]) == 6 * 4 + 3 + 20


def test_scores_count_in_the_score_reference() -> None:
    m = _metrics([], ReferenceBins((0.5, 0.3, 0.2), (0.05, 0.5)))
    m.count_score_bins(np.asarray([0.05, 0.0, 0.5, 0.7], dtype=np.float32))
    m.count_score_bins(np.asarray([0.05] * 100, dtype=np.float32))
    for one in (0.5, 0.50001, 1.0):  # a one-row request's score (its own path)
        m.count_score_bins(np.asarray([one], dtype=np.float32))
    assert _counts(m, PREDICTION_SCORE_FEATURE) == [102, 2, 3]


# -- a real server ----------------------------------------------------------------------------------
def _metadata_file(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The example metadata with amount's bins replaced, account_age_days' removed, channel reordered."""
    doc = copy.deepcopy(EXAMPLE)
    features = {f["name"]: f for f in doc["features"]}
    features["amount"]["reference_bins"] = {"edges": [10, 50, 100], "fractions": [0.2, 0.3, 0.3, 0.2]}
    del features["account_age_days"]["reference_bins"]
    features["channel"]["reference_bins"] = {"categories": ["pos", "web", "app"], "fractions": [0.25, 0.35, 0.4]}
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(doc))
    return path, doc


def _bins(text: str, feature: str) -> list[int]:
    found = {
        int(lab["bin"]): int(v)
        for n, lab, v in samples(text)
        if n == BIN and lab["feature"] == feature and lab["model"] == MODEL_NAME and lab["revision"] == REVISION
    }
    return [found[i] for i in range(len(found))]


def test_server_counts_accepted_observed_values_per_bin(server_factory: ServerFactory, tmp_path: Path) -> None:
    path, doc = _metadata_file(tmp_path)
    grpc_port = free_port()
    args = ["--metadata-uri", str(path), "--warmup-requests", "2", "--grpc-port", str(grpc_port)]
    server = server_factory.start(model_args("baseline", *args))
    text = server.metrics()
    assert _bins(text, "amount") == [0, 0, 0, 0] and _bins(text, "account_age_days") == []
    for f in doc["features"]:
        for i, fraction in enumerate(f.get("reference_bins", {}).get("fractions", [])):
            assert value(text, REFERENCE, feature=f["name"], bin=str(i)) == fraction
    score_fractions = doc["prediction_score_reference_bins"]["fractions"]
    assert [value(text, REFERENCE, feature=PREDICTION_SCORE_FEATURE, bin=str(i)) for i in range(20)] == score_fractions

    scores: list[float] = []

    def infer(body: dict[str, Any], status: int = 200) -> None:
        response = requests.post(server.url + INFER, json=body, timeout=5)
        assert response.status_code == status, response.text
        if status == 200:
            probabilities = next(o for o in response.json()["outputs"] if o["name"] == "probabilities")
            scores.extend(probabilities["data"][1::2])  # P(fraud), the positive class

    named = [
        {"amount": 10, "account_age_days": 100, "hour": 11, "distance_km": 0.5, "channel": "pos"},
        {"amount": 10.5, "account_age_days": 100, "distance_km": 30, "channel": "web"},  # hour imputed
        {"amount": 1000, "account_age_days": 100, "hour": 0, "distance_km": 4.9, "channel": None},  # imputed
    ]
    infer(dataset.named_body(named))
    tensor = np.asarray([[50, 1, 23, 11.8, 2], [-5, 2, 21, 26.0, 1]], dtype=np.float32)
    infer(dataset.tensor_body(tensor))
    # refused requests count nothing (named: one bad row refuses all; tensor: wrong datatype)
    infer(dataset.named_body([named[0], {**named[0], "colour": "red"}]), status=400)
    bad_tensor = dataset.tensor_body(tensor)
    bad_tensor["inputs"][0]["datatype"] = "FP64"
    infer(bad_tensor, status=400)
    # gRPC: counted like HTTP (one row: amount 100 on an edge, hour 6 on an edge, channel web)
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    grpc_row = [100, 5, 6, 0.9, 0]
    request.inputs.add(name=dataset.INPUT_NAME, datatype="FP32", shape=[1, 5]).contents.fp32_contents.extend(grpc_row)
    response = stub.ModelInfer(request, timeout=5)
    scores.extend(next(o for o in response.outputs if o.name == "probabilities").contents.fp32_contents[1::2])

    text = server.metrics()
    # amount edges 10, 50, 100: 10 and -5 | 10.5 and 50 | 100 | 1000
    assert _bins(text, "amount") == [2, 2, 1, 1]
    # hour edges 2, 6, 11, 17, 21: 0 | 6 | 11 | - | 21 | 23 (the missing hour was imputed: not counted)
    assert _bins(text, "hour") == [1, 1, 1, 0, 1, 1]
    # distance_km edges 0.9, 2.1, 4.9, 11.8, 26: 0.5 and 0.9 | - | 4.9 | 11.8 | 26 | 30
    assert _bins(text, "distance_km") == [2, 0, 1, 1, 1, 1]
    # channel in the reference's order pos, web, app: pos pos | web web | app (the null was imputed)
    assert _bins(text, "channel") == [2, 2, 1]
    assert _bins(text, "account_age_days") == []
    assert value(text, "modelserver_features_imputed_total", feature="hour") == 1
    assert value(text, "modelserver_features_imputed_total", feature="channel") == 1
    # the missing-data gate: two answered rows had an imputed value, of six answered rows
    assert value(text, "modelserver_imputed_rows_total") == 2

    edges = np.asarray(doc["prediction_score_reference_bins"]["edges"], dtype=np.float32)
    expected = np.bincount(np.searchsorted(edges, np.asarray(scores, np.float32), side="left"), minlength=20)
    assert len(scores) == 6 == value(text, "modelserver_prediction_score_count")
    assert _bins(text, PREDICTION_SCORE_FEATURE) == expected.tolist()
