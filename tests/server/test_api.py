"""Every V2 endpoint against a real uvicorn process serving the example models."""

from __future__ import annotations

import uuid

import pytest
import requests

from examples.models import dataset

from .conftest import MODEL_NAME, REVISION, ServerProcess
from .promtext import value

ROW = [38.03, 816.0, 6.0, 3.7, 0.0]


def infer_body(data: list, shape: list[int], **extra: object) -> dict:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}], **extra}


def post(server: ServerProcess, path: str, body: object = None, **kw: object) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=10, **kw)


def infer(server: ServerProcess, body: object, path: str = f"/v2/models/{MODEL_NAME}/infer") -> requests.Response:
    return post(server, path, body)


def test_server_metadata_and_health(baseline: ServerProcess) -> None:
    meta = requests.get(baseline.url + "/v2", timeout=5).json()
    assert meta["name"] == "modelserver" and meta["version"] and isinstance(meta["extensions"], list)
    assert requests.get(baseline.url + "/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(baseline.url + "/v2/health/ready", timeout=5).json() == {"ready": True}


@pytest.mark.parametrize("path", [f"/v2/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/versions/{REVISION}"])
def test_model_metadata(baseline: ServerProcess, path: str) -> None:
    meta = requests.get(baseline.url + path, timeout=5).json()
    assert meta["name"] == MODEL_NAME and meta["versions"] == [REVISION]
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]
    assert [f["name"] for f in meta["parameters"]["features"]] == list(dataset.FEATURE_NAMES)
    assert meta["parameters"]["classes"] == ["legit", "fraud"]


@pytest.mark.parametrize(
    "path", [f"/v2/models/{MODEL_NAME}/ready", f"/v2/models/{MODEL_NAME}/versions/{REVISION}/ready"]
)
def test_model_ready(baseline: ServerProcess, path: str) -> None:
    response = requests.get(baseline.url + path, timeout=5)
    assert response.status_code == 200 and response.json()["ready"] is True


def test_infer_echoes_id_and_returns_all_outputs(baseline: ServerProcess) -> None:
    response = infer(baseline, infer_body(ROW, [1, 5], id="my-id"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "my-id" and body["model_name"] == MODEL_NAME and body["model_version"] == REVISION
    label, proba = body["outputs"]
    assert label == {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}
    assert proba["name"] == "probabilities" and proba["shape"] == [1, 2] and proba["datatype"] == "FP32"
    assert sum(proba["data"]) == pytest.approx(1.0, abs=1e-5)


def test_infer_generates_uuid_when_id_absent(baseline: ServerProcess) -> None:
    body = infer(baseline, infer_body(ROW, [1, 5])).json()
    uuid.UUID(body["id"])


def test_versioned_infer(baseline: ServerProcess) -> None:
    response = infer(baseline, infer_body(ROW, [1, 5]), f"/v2/models/{MODEL_NAME}/versions/{REVISION}/infer")
    assert response.status_code == 200


def test_nested_and_flat_data_agree_in_a_batch(baseline: ServerProcess) -> None:
    rows = dataset.generate(7, seed=11).features
    flat = infer(baseline, dataset.tensor_body(rows)).json()
    nested_body = dataset.tensor_body(rows)
    nested_body["inputs"][0]["data"] = [
        [dataset.decode_row(r)[n] for n in dataset.NUMERIC_FEATURES] + [float(r[4])] for r in rows
    ]
    nested = infer(baseline, nested_body).json()
    assert flat["outputs"][0]["shape"] == [7] and flat["outputs"][1]["shape"] == [7, 2]
    assert flat["outputs"] == nested["outputs"]


def test_outputs_selection(baseline: ServerProcess) -> None:
    body = infer(baseline, infer_body(ROW, [1, 5], outputs=[{"name": "probabilities"}])).json()
    assert [o["name"] for o in body["outputs"]] == ["probabilities"]


def test_named_features_match_tensor_form(baseline: ServerProcess) -> None:
    rows = dataset.generate(4, seed=2).features
    tensor = infer(baseline, dataset.tensor_body(rows)).json()
    named = infer(baseline, dataset.named_body([dataset.decode_row(r) for r in rows])).json()
    assert named["outputs"] == tensor["outputs"]
    single = infer(baseline, {"parameters": {"features": dataset.decode_row(rows[0])}}).json()
    assert single["outputs"][0]["data"] == tensor["outputs"][0]["data"][:1]


def test_named_features_impute_and_count(baseline: ServerProcess) -> None:
    before = baseline.metrics()
    response = infer(baseline, {"parameters": {"features": [{"amount": 12.5, "hour": 3, "channel": "web"}]}})
    assert response.status_code == 200, response.text
    after = baseline.metrics()
    for name in ("account_age_days", "distance_km"):
        for metric in ("modelserver_features_imputed_total", "modelserver_features_missing_total"):
            assert value(after, metric, feature=name) - value(before, metric, feature=name) == 1, (metric, name)
    assert value(after, "modelserver_features_imputed_total", feature="amount") == value(
        before, "modelserver_features_imputed_total", feature="amount"
    )


def _error(response: requests.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"error"} and "detail" not in body, body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return body["error"]


BAD_BODIES = [
    pytest.param({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "INT64", "data": [1, 2, 3, 4, 5]}]},
                 ["datatype", "FP32", "INT64"], id="wrong-datatype"),
    pytest.param({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FLOAT", "data": ROW}]},
                 ["datatype"], id="unknown-datatype"),
    pytest.param(infer_body(ROW, [5, 1]), ["shape", "dimension 1 must be 5"], id="wrong-shape"),
    pytest.param(infer_body(ROW, [5]), ["shape", "rank 2"], id="wrong-rank"),
    pytest.param(infer_body(ROW[:4], [1, 5]), ["needs 5 elements, got 4"], id="too-few-elements"),
    pytest.param(infer_body([[1, 2], [3]], [1, 5]), ["nesting"], id="ragged-nesting"),
    pytest.param({"inputs": []}, ["missing required input", "'input'"], id="missing-input"),
    pytest.param({"id": "x"}, ["inputs: required"], id="no-inputs-at-all"),
    pytest.param({"inputs": [{"name": "other", "shape": [1], "datatype": "FP32", "data": [1]}]},
                 ["unknown input 'other'"], id="unknown-input"),
    pytest.param({"inputs": [infer_body(ROW, [1, 5])["inputs"][0]] * 2}, ["more than once"], id="duplicate-input"),
    pytest.param(infer_body([1e39, 0, 0, 0, 0], [1, 5]), ["finite"], id="overflow-to-inf"),
    pytest.param(infer_body([0.0] * 299 + [-1e39], [60, 5]), ["finite"], id="overflow-in-large-batch"),
    pytest.param(infer_body(["NaN", 0, 0, 0, 0], [1, 5]), ["expects numbers", "string"], id="nan-as-string"),
    pytest.param(infer_body([None, 0, 0, 0, 0], [1, 5]), ["null"], id="null-element"),
    pytest.param(infer_body([True, 0, 0, 0, 0], [1, 5]), ["boolean"], id="bool-element"),
    pytest.param(infer_body(ROW, [1, 5], id=7), ["id"], id="non-string-id"),
    pytest.param(infer_body(ROW, [1, 5], outputs=[{"name": "nope"}]), ["unknown output 'nope'"], id="unknown-output"),
    pytest.param(infer_body(ROW, [1, 5], parameters=[1]), ["parameters"], id="parameters-not-object"),
    pytest.param(infer_body([0.0] * 5, [1, 1, 5]), ["rank 2"], id="rank-3"),
    pytest.param(infer_body([], [0, 5]), ["positive"], id="empty-batch"),
    pytest.param(infer_body(ROW * 5000, [5000, 5]), ["exceeds the limit of 4096"], id="batch-too-large"),
    pytest.param([1, 2], ["JSON object"], id="array-body"),
    pytest.param({"parameters": {"features": {"amount": "12", "hour": 3, "channel": "web", "distance_km": 1,
                                              "account_age_days": 4}}},
                 ["parameters.features.amount: expected a number, got string"], id="wrong-typed-feature"),
    pytest.param({"parameters": {"features": {"amount": 1, "hour": 3, "channel": "fax", "distance_km": 1,
                                              "account_age_days": 4, "colour": "red"}}},
                 ["channel: unknown category 'fax'", "colour: unknown feature"], id="bad-category-and-unknown-feature"),
    pytest.param({"parameters": {"features": {"channel": "web", "hour": None}}},
                 ["4 of 5 features missing", "above the limit of 0.4"], id="too-many-missing"),
    pytest.param({"parameters": {"features": [{"amount": True, "hour": 1, "channel": "web"}, "x"]}},
                 ["features[0].amount: expected a number, got boolean", "features[1]: expected an object"],
                 id="feature-errors-listed-per-row"),
    pytest.param({"inputs": infer_body(ROW, [1, 5])["inputs"], "parameters": {"features": {"amount": 1}}},
                 ["not both"], id="inputs-and-features"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "fragments"), BAD_BODIES)
def test_malformed_requests_get_400_naming_the_problem(
    baseline: ServerProcess, body: object, fragments: list[str]
) -> None:
    _error(infer(baseline, body), 400, *fragments)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b'{"inputs": [NaN]}', b'{"inputs": [Infinity]}', b"\xff\xfe", b'{"id": "a", "id": 1e999}'],
)
def test_invalid_json_is_400(baseline: ServerProcess, raw: bytes) -> None:
    response = requests.post(baseline.url + f"/v2/models/{MODEL_NAME}/infer", data=raw, timeout=5)
    _error(response, 400)


def test_oversized_body_is_413(baseline: ServerProcess) -> None:
    big = b'{"inputs": [], "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    _error(requests.post(baseline.url + f"/v2/models/{MODEL_NAME}/infer", data=big, timeout=30), 413, "exceeds")


def test_oversized_chunked_body_is_413(baseline: ServerProcess) -> None:
    def chunks():
        yield b'{"inputs": [], "pad": "'
        for _ in range(10):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    _error(requests.post(baseline.url + f"/v2/models/{MODEL_NAME}/infer", data=chunks(), timeout=30), 413)


def test_unknown_model_and_version_are_404(baseline: ServerProcess) -> None:
    _error(infer(baseline, infer_body(ROW, [1, 5]), "/v2/models/other/infer"), 404, "unknown model 'other'")
    _error(requests.get(baseline.url + "/v2/models/other", timeout=5), 404, "unknown model")
    _error(requests.get(baseline.url + "/v2/models/other/ready", timeout=5), 404)
    _error(
        infer(baseline, infer_body(ROW, [1, 5]), f"/v2/models/{MODEL_NAME}/versions/v9/infer"), 404, "unknown version"
    )


def test_unknown_route_and_method_use_error_shape(baseline: ServerProcess) -> None:
    _error(requests.get(baseline.url + "/nope", timeout=5), 404, "not found")
    _error(requests.get(baseline.url + f"/v2/models/{MODEL_NAME}/infer", timeout=5), 405, "method not allowed")


def test_openapi_documents_the_bodies(baseline: ServerProcess) -> None:
    doc = requests.get(baseline.url + "/openapi.json", timeout=5).json()
    op = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferRequest")
    assert "422" not in op["responses"] and "400" in op["responses"]
    assert "InferRequest" in doc["components"]["schemas"]


def test_concurrent_requests_are_answered_exactly_as_alone(baseline: ServerProcess) -> None:
    """Micro-batching must be invisible: every concurrent answer equals the model's own output."""
    import concurrent.futures

    import numpy as np
    import onnxruntime as ort

    from .conftest import MODELS

    data = dataset.generate(48, seed=99)
    sizes = [1, 2, 3] * 8
    bodies, starts, start = [], [], 0
    for i, size in enumerate(sizes):
        bodies.append(dataset.tensor_body(data.features[start : start + size], f"conc-{i}"))
        starts.append(start)
        start += size
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: infer(baseline, b).json(), bodies))
    session = ort.InferenceSession(str(MODELS / "baseline.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], {"input": data.features[:start]})
    for i, (answer, size, first) in enumerate(zip(answers, sizes, starts, strict=True)):
        assert answer["id"] == f"conc-{i}"
        assert answer["outputs"][0]["data"] == labels[first : first + size].tolist()
        np.testing.assert_allclose(answer["outputs"][1]["data"], proba[first : first + size].ravel(), rtol=1e-5)


def test_oversized_body_is_a_readable_413_for_urllib(baseline: ServerProcess) -> None:
    """urllib sends the whole body before it reads the answer: the server must keep reading (and
    dropping) it after deciding 413, or the client's send fails with a reset and never sees why."""
    import urllib.error
    import urllib.request

    big = b'{"inputs": [], "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    request = urllib.request.Request(f"{baseline.url}/v2/models/{MODEL_NAME}/infer", data=big, method="POST")
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 413 and b"exceeds" in exc.read()
    else:
        raise AssertionError("a 9 MiB body was accepted")


def test_forwarded_headers_of_a_trusted_proxy_still_reach_the_routes(baseline: ServerProcess) -> None:
    """uvicorn's proxy-headers middleware sits behind the infer fast path (fastpath.serving_app), not
    around the whole app: the routes behind it still see the scheme a local proxy forwards."""
    url = f"{baseline.url}/v2/health/live/"  # FastAPI redirects to the path without the slash
    forwarded = requests.get(url, headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=5)
    plain = requests.get(url, allow_redirects=False, timeout=5)
    assert forwarded.status_code == plain.status_code == 307
    assert forwarded.headers["location"] == plain.headers["location"].replace("http://", "https://", 1)
    assert forwarded.headers["location"].startswith("https://")
