"""The binary tensor data extension of the Open Inference Protocol against real server processes.

Positive paths use NVIDIA's own client, ``tritonclient.http``, in every combination of JSON and
binary inputs and outputs, and must give exactly the predictions of the plain JSON path — through
the infer fast path and through the FastAPI route, for the example model and for a model with one
input of each awkward datatype (BYTES, BOOL, FP16, INT8, UINT64, FP64). Malformed requests are
built by hand (raw HTTP) and must answer 400 ``{"error": ...}`` naming the field, never a 5xx.

KServe's client (``kserve.InferenceRESTClient``) is not used: the ``kserve`` package brings its
whole serving stack (its own FastAPI and uvicorn pins, grpcio, protobuf, pandas, kubernetes…),
which the project keeps out of ``.venv`` (``hack/bench/venvs.sh`` installs it in a venv of its own).
It speaks the same wire format (``inference-header-content-length``, ``binary_data_size``); it was
checked by hand against this server with kserve 0.21.0, in a throwaway venv.
"""

from __future__ import annotations

import http.client
import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from examples.models import dataset

from .conftest import MODEL_NAME, REVISION, ServerFactory, ServerProcess, model_args
from .promtext import value

INFER = f"/v2/models/{MODEL_NAME}/infer"
HEADER = "Inference-Header-Content-Length"
OUTPUTS = ("label", "probabilities")
SEED = int(os.environ.get("MODELROLLOUT_FUZZ_SEED") or 20261205)


# -- servers ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The example model with the fast path off: infer goes through the FastAPI route."""
    factory = ServerFactory(tmp_path_factory.mktemp("binary-routed"))
    try:
        yield factory.start(model_args("baseline", "--warmup-requests", "2", "--fast-path", "false"))
    finally:
        factory.stop_all()


@pytest.fixture(params=["fast-path", "fastapi-route"])
def server(request: pytest.FixtureRequest, baseline: ServerProcess) -> ServerProcess:
    """Both ways an infer request can be answered (they share the handler, not the HTTP layer)."""
    return baseline if request.param == "fast-path" else request.getfixturevalue("routed")


TYPED_INPUTS = {  # name: (ONNX element type, V2 datatype, shape)
    "text": (8, "BYTES", ["N"]),
    "flag": (9, "BOOL", ["N", 2]),
    "half": (10, "FP16", ["N", 2]),
    "small": (3, "INT8", ["N"]),
    "big": (13, "UINT64", ["N"]),
    "wide": (11, "FP64", ["N", 3]),
}


def _typed_model(path: Path) -> Path:
    """An ONNX model answering each input unchanged as ``<name>_out``: one input per awkward datatype."""
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [f"{name}_out"]) for name in TYPED_INPUTS],
        "typed",
        [helper.make_tensor_value_info(n, t, shape) for n, (t, _, shape) in TYPED_INPUTS.items()],
        [helper.make_tensor_value_info(f"{n}_out", t, shape) for n, (t, _, shape) in TYPED_INPUTS.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.fixture(scope="module")
def typed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("binary-typed")
    model = _typed_model(workdir / "typed.onnx")
    factory = ServerFactory(workdir)
    try:
        yield factory.start(["--model-uri", str(model), "--model-name", "typed", "--revision", "t1",
                             "--warmup-requests", "2"])  # fmt: skip
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Prediction tokens on and every prediction logged: what binary requests must keep doing."""
    workdir = tmp_path_factory.mktemp("binary-logged")
    key = workdir / "key"
    key.write_bytes(os.urandom(32))
    factory = ServerFactory(workdir)
    try:
        yield factory.start(model_args("baseline", "--warmup-requests", "2", "--log-sample-rate", "1",
                                       "--feedback-key-file", str(key), "--deployment", "ml/fraud"))  # fmt: skip
    finally:
        factory.stop_all()


def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=20.0)


# -- helpers ----------------------------------------------------------------------------------------
def reference(server: ServerProcess, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The plain JSON path's answer (no tritonclient involved)."""
    response = requests.post(server.url + INFER, json=dataset.tensor_body(rows), timeout=10)
    assert response.status_code == 200, response.text
    label, proba = response.json()["outputs"]
    return {
        "label": np.asarray(label["data"], dtype=np.int64).reshape(label["shape"]),
        "probabilities": np.asarray(proba["data"], dtype=np.float32).reshape(proba["shape"]),
    }


def triton_infer(
    server: ServerProcess, arrays: dict[str, np.ndarray], binary_in: bool, outputs: str, model: str = MODEL_NAME,
    names: tuple[str, ...] = OUTPUTS, request_id: str = "",
) -> triton.InferResult:  # fmt: skip
    """One request through tritonclient; ``outputs``: "default" (the client then asks for all outputs
    as binary, with ``binary_data_output``), "json", "binary" or "mixed" (the first JSON, others binary)."""
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary_in)
        inputs.append(tensor)
    requested = None
    if outputs != "default":
        flags = {"json": [False] * len(names), "binary": [True] * len(names)}.get(
            outputs, [False] + [True] * (len(names) - 1)
        )
        requested = [triton.InferRequestedOutput(n, binary_data=f) for n, f in zip(names, flags, strict=True)]
    with client(server) as c:
        return c.infer(model, inputs, outputs=requested, request_id=request_id)


def binary_body(head: dict[str, Any], tail: bytes = b"") -> tuple[bytes, int]:
    """``(body, JSON length)`` of a binary-extension request."""
    raw = orjson.dumps(head)
    return raw + tail, len(raw)


def post_binary(
    server: ServerProcess, head: dict[str, Any], tail: bytes = b"", header: str | None = "auto", path: str = INFER
) -> requests.Response:
    """POST JSON + ``tail``; ``header`` is the Inference-Header-Content-Length to send ("auto": the right one)."""
    body, length = binary_body(head, tail)
    headers = {"Content-Type": "application/octet-stream"}
    if header is not None:
        headers[HEADER] = str(length) if header == "auto" else header
    return requests.post(server.url + path, data=body, headers=headers, timeout=10)


def fp32_input(size: int | Any = 20, shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": "input", "shape": shape or [1, 5], "datatype": "FP32", "parameters": {"binary_data_size": size},
            **extra}  # fmt: skip


ROW = np.asarray([[38.03, 816.0, 6.0, 3.7, 0.0]], dtype=np.float32)


def error_of(response: requests.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert HEADER.lower() not in {k.lower() for k in response.headers}
    body = response.json()
    assert set(body) >= {"error"}, body
    return body["error"]


def parse_binary_response(response: requests.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a binary answer by hand, as the extension defines it (no client library)."""
    length = int(response.headers[HEADER])
    head = orjson.loads(response.content[:length])
    arrays, offset = {}, length
    for out in head["outputs"]:
        if "data" in out:
            continue
        size = out["parameters"]["binary_data_size"]
        dtype = {"INT64": "<i8", "FP32": "<f4"}[out["datatype"]]
        arrays[out["name"]] = np.frombuffer(response.content[offset : offset + size], dtype).reshape(out["shape"])
        offset += size
    assert offset == len(response.content)
    return head, arrays


# -- tritonclient: every combination gives the JSON path's predictions ------------------------------
def test_server_metadata_lists_the_extension(baseline: ServerProcess) -> None:
    with client(baseline) as c:
        assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
        assert c.is_model_ready(MODEL_NAME)


@pytest.mark.parametrize("outputs", ["default", "json", "binary", "mixed"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-inputs", "json-inputs"])
def test_tritonclient_matches_the_json_path(server: ServerProcess, binary_in: bool, outputs: str) -> None:
    rows = dataset.generate(9, seed=5).features.astype(np.float32)
    want = reference(server, rows)
    result = triton_infer(server, {"input": rows}, binary_in, outputs, request_id="tc-1")
    response = result.get_response()
    assert response["id"] == "tc-1" and response["model_name"] == MODEL_NAME
    assert response["model_version"] == REVISION
    assert [o["name"] for o in response["outputs"]] == list(OUTPUTS)
    expect_binary = {"default": [True, True], "json": [False, False], "binary": [True, True],
                     "mixed": [False, True]}[outputs]  # fmt: skip
    for out, binary in zip(response["outputs"], expect_binary, strict=True):
        assert ("data" not in out) == binary, out
        assert ("binary_data_size" in out.get("parameters", {})) == binary, out
    for name in OUTPUTS:
        got = result.as_numpy(name)
        assert got.dtype == want[name].dtype and np.array_equal(got, want[name]), name


def test_only_the_requested_outputs_come_back(server: ServerProcess) -> None:
    result = triton_infer(server, {"input": ROW}, True, "binary", names=("probabilities",))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    assert np.array_equal(result.as_numpy("probabilities"), reference(server, ROW)["probabilities"])


def test_versioned_route(server: ServerProcess) -> None:
    tensor = triton.InferInput("input", [1, 5], "FP32")
    tensor.set_data_from_numpy(ROW)
    with client(server) as c:
        result = c.infer(MODEL_NAME, [tensor], model_version=REVISION)
    assert np.array_equal(result.as_numpy("label"), reference(server, ROW)["label"])


def _typed_arrays(rows: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    texts = ["plain", "héllo wörld ✓", "", "x" * 300, "a\x00b", "tab\tnewline\n"]
    return {
        "text": np.array([texts[i % len(texts)] for i in range(rows)], dtype=object),
        "flag": rng.integers(0, 2, size=(rows, 2)).astype(bool),
        "half": (rng.standard_normal((rows, 2)) * 1000).astype(np.float16),
        "small": np.array([[-128, -1, 0, 127][i % 4] for i in range(rows)], dtype=np.int8),
        "big": np.array([[0, 1, 2**63, 2**64 - 1][i % 4] for i in range(rows)], dtype=np.uint64),
        "wide": rng.standard_normal((rows, 3)) * 1e300,
    }


@pytest.mark.parametrize("outputs", ["json", "binary", "mixed"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-inputs", "json-inputs"])
def test_every_datatype_round_trips(typed: ServerProcess, binary_in: bool, outputs: str) -> None:
    arrays = _typed_arrays(6)
    names = tuple(f"{n}_out" for n in TYPED_INPUTS)
    result = triton_infer(typed, arrays, binary_in, outputs, model="typed", names=names)
    for name, sent in arrays.items():
        got = result.as_numpy(f"{name}_out")
        if sent.dtype == object:
            got = np.array([v.decode() if isinstance(v, bytes) else v for v in got.ravel()], dtype=object)
            assert got.tolist() == sent.tolist()
        else:
            assert got.dtype == sent.dtype and np.array_equal(got, sent), name


# -- the wire format, by hand ----------------------------------------------------------------------
def test_binary_response_layout_and_headers(server: ServerProcess) -> None:
    head = {"id": "raw-1", "inputs": [fp32_input()], "parameters": {"binary_data_output": True}}
    response = post_binary(server, head, ROW.tobytes())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert int(response.headers["content-length"]) == len(response.content)
    meta, arrays = parse_binary_response(response)
    assert meta["id"] == "raw-1" and [o["parameters"]["binary_data_size"] for o in meta["outputs"]] == [8, 8]
    want = reference(server, ROW)
    assert all(np.array_equal(arrays[n], want[n]) for n in OUTPUTS)


def test_binary_inputs_with_json_outputs_answer_plain_json(server: ServerProcess) -> None:
    response = post_binary(server, {"inputs": [fp32_input()]}, ROW.tobytes())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json" and HEADER not in response.headers
    assert response.json()["outputs"][0]["data"] == reference(server, ROW)["label"].tolist()


def test_header_may_cover_the_whole_body(server: ServerProcess) -> None:
    """A JSON-only request that still sends the header (nothing follows the JSON) is fine."""
    response = post_binary(server, dataset.tensor_body(ROW))
    assert response.status_code == 200, response.text


def test_json_requests_are_unchanged(server: ServerProcess) -> None:
    response = requests.post(server.url + INFER, json=dataset.tensor_body(ROW), timeout=10)
    assert response.headers["content-type"] == "application/json" and HEADER not in response.headers
    assert "parameters" not in response.json()["outputs"][0]


def test_json_request_may_ask_for_binary_outputs(server: ServerProcess) -> None:
    """What tritonclient sends for JSON inputs without an outputs list: no header, binary_data_output."""
    body = {**dataset.tensor_body(ROW), "parameters": {"binary_data_output": True}}
    response = requests.post(server.url + INFER, json=body, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    _, arrays = parse_binary_response(response)
    assert np.array_equal(arrays["probabilities"], reference(server, ROW)["probabilities"])


def test_output_flag_overrides_the_request_flag(baseline: ServerProcess) -> None:
    outputs = [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}]
    head = {"inputs": [fp32_input()], "parameters": {"binary_data_output": True}, "outputs": outputs}
    meta, arrays = parse_binary_response(post_binary(baseline, head, ROW.tobytes()))
    assert meta["outputs"][0]["data"] == reference(baseline, ROW)["label"].tolist()
    assert list(arrays) == ["probabilities"]


def test_two_binary_inputs_are_read_in_order(typed: ServerProcess) -> None:
    small, flag = np.array([5, -7], np.int8), np.array([[True, False], [False, True]])
    arrays = _typed_arrays(2)
    inputs, tail = [], b""
    for name, (_, datatype, _) in TYPED_INPUTS.items():
        array = {"small": small, "flag": flag}.get(name, arrays[name])
        if name in ("small", "flag"):
            raw = array.tobytes()
            inputs.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                           "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
            tail += raw
        else:
            data = array.tolist() if array.dtype != np.float16 else array.astype(float).tolist()
            inputs.append({"name": name, "datatype": datatype, "shape": list(array.shape), "data": data})
    response = post_binary(typed, {"inputs": inputs}, tail, path="/v2/models/typed/infer")
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["small_out"] == [5, -7] and outputs["flag_out"] == [True, False, False, True]


# -- metrics, readiness, prediction log and feedback work as for JSON requests --------------------
def test_binary_requests_count_log_and_take_feedback(logged: ServerProcess) -> None:
    before = logged.metrics()
    data = dataset.generate(3, seed=8)
    rows = data.features.astype(np.float32)
    by_token = triton_infer(logged, {"input": rows}, True, "default", request_id="bin-token").get_response()
    triton_infer(logged, {"input": rows}, True, "binary", request_id="bin-id")
    refused = post_binary(logged, {"inputs": [fp32_input(16)]}, ROW.tobytes()[:16])
    assert refused.status_code == 400

    token = by_token["parameters"]["prediction_token"]
    truth = data.label_names()
    feedback = f"/v2/models/{MODEL_NAME}/feedback"
    for body in ({"token": token, "truth": truth}, {"id": "bin-id", "truth": truth}):
        answer = requests.post(logged.url + feedback, json=body, timeout=5)
        assert answer.status_code == 200 and answer.json()["status"] == "matched", answer.text

    after = logged.metrics()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("modelserver_requests_total", endpoint="infer", code="2xx") == 2
    assert moved("modelserver_requests_total", endpoint="infer", code="4xx") == 1
    assert moved("modelserver_request_duration_seconds_count") == 2  # the 400 never reached the model
    assert moved("modelserver_predictions_total") == 6
    assert moved("modelserver_feedback_total") == 6
    logged_ids = {orjson.loads(line)["id"] for line in logged.stdout().splitlines() if line.startswith("{")}
    assert {"bin-token", "bin-id"} <= logged_ids


def test_not_ready_is_503_and_model_faults_are_500(server_factory: ServerFactory, broken: ServerProcess) -> None:
    never = server_factory.start(model_args("baseline", "--sha256", "0" * 64), ready=False)
    assert error_of(post_binary(never, {"inputs": [fp32_input()]}, ROW.tobytes()), 503)
    # broken.onnx answers NaN for amount < 15: a 500 in JSON, also when binary outputs were asked for.
    row = np.asarray([[5.0, 816.0, 6.0, 3.7, 0.0]], dtype=np.float32)
    head = {"inputs": [fp32_input()], "parameters": {"binary_data_output": True}}
    assert "non-finite" in error_of(post_binary(broken, head, row.tobytes()), 500)
    with client(broken) as c, pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        tensor = triton.InferInput("input", [1, 5], "FP32")
        tensor.set_data_from_numpy(ROW)
        c.infer("nope", [tensor])


# -- malformed requests: 400 naming the field ---------------------------------------------------------
FIELD = "inputs[0] ('input')"
NAN_ROW = struct.pack("<5f", 1.0, float("nan"), 0, 0, 0)
INF_ROW = struct.pack("<5f", 1.0, 0, 0, float("-inf"), 0)
MALFORMED = [
    pytest.param({"inputs": [fp32_input(16)]}, ROW.tobytes()[:16], "auto",
                 [f"{FIELD}.parameters.binary_data_size", "needs 20 bytes, got 16"], id="size-not-shape-x-datatype"),
    pytest.param({"inputs": [fp32_input(40, [2, 5])]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.parameters.binary_data_size", "only 20 bytes"], id="size-past-the-end"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes() + b"\0" * 4, "auto",
                 ["binary data: 4 bytes", "belong to no input"], id="bytes-left-over"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "99999",
                 [HEADER, "99999 exceeds the body's length"], id="header-longer-than-body"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "12abc", [HEADER, "integer", "'12abc'"],
                 id="header-not-an-integer"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "-5", [HEADER, "integer"], id="header-negative"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "1.5e2", [HEADER, "integer"], id="header-float"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "9" * 5000, [HEADER, "exceeds"], id="header-huge"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "0", [HEADER, "0", "not supported"], id="header-zero"),
    pytest.param({"inputs": [fp32_input()]}, ROW.tobytes(), "30", ["JSON part", "not valid JSON"],
                 id="header-cuts-the-json"),
    pytest.param({"inputs": [fp32_input(data=ROW.ravel().tolist())]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.data", "not allowed with parameters.binary_data_size"], id="data-and-binary-size"),
    pytest.param({"inputs": [fp32_input()]}, NAN_ROW, "auto", [f"{FIELD} binary data", "finite", "nan"], id="nan"),
    pytest.param({"inputs": [fp32_input()]}, INF_ROW, "auto", [f"{FIELD} binary data", "finite", "inf"],
                 id="minus-infinity"),
    pytest.param({"inputs": [fp32_input("20")]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.parameters.binary_data_size", "non-negative integer", "'20'"], id="size-a-string"),
    pytest.param({"inputs": [fp32_input(20.0)]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.parameters.binary_data_size", "non-negative integer"], id="size-a-float"),
    pytest.param({"inputs": [fp32_input(-20)]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.parameters.binary_data_size", "non-negative integer"], id="size-negative"),
    pytest.param({"inputs": [fp32_input(True)]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.parameters.binary_data_size", "non-negative integer"], id="size-a-boolean"),
    pytest.param({"inputs": [fp32_input()]}, b"", None,
                 [f"{FIELD}.parameters.binary_data_size", "needs the Inference-Header-Content-Length header"],
                 id="binary-size-in-a-plain-json-request"),
    pytest.param({"inputs": [fp32_input(shape=[1, 4])]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.shape", "dimension 1 must be 5"], id="shape-checked-as-for-json"),
    pytest.param({"inputs": [{**fp32_input(), "datatype": "FP64"}]}, ROW.tobytes(), "auto",
                 [f"{FIELD}.datatype", "FP32"], id="datatype-checked-as-for-json"),
    pytest.param({"inputs": [fp32_input(100, [5, 5])]}, ROW.tobytes() * 5, "auto",
                 [], id="five-rows-are-fine"),
    pytest.param({"inputs": [fp32_input()], "parameters": {"binary_data_output": 1}}, ROW.tobytes(), "auto",
                 ["parameters.binary_data_output: expected a boolean"], id="binary-data-output-not-a-boolean"),
    pytest.param({"inputs": [fp32_input()], "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]},
                 ROW.tobytes(), "auto", ["outputs[0].parameters.binary_data: expected a boolean"],
                 id="binary-data-not-a-boolean"),
    pytest.param({"parameters": {"features": dataset.decode_row(ROW[0])}}, ROW.tobytes(), "auto",
                 ["binary data: 20 bytes", "belong to no input"], id="named-features-with-binary-bytes"),
    pytest.param([fp32_input()], ROW.tobytes(), "auto", ["JSON part", "must be a JSON object"],
                 id="json-part-not-an-object"),
]  # fmt: skip


@pytest.mark.parametrize(("head", "tail", "header", "fragments"), MALFORMED)
def test_malformed_binary_requests_are_400_naming_the_field(
    baseline: ServerProcess, head: Any, tail: bytes, header: str | None, fragments: list[str]
) -> None:
    response = post_binary(baseline, head, tail, header)
    if not fragments:
        assert response.status_code == 200, response.text
        return
    message = error_of(response)
    for fragment in fragments:
        assert fragment in message, message


def test_errors_are_the_same_through_the_fastapi_route(routed: ServerProcess) -> None:
    message = error_of(post_binary(routed, {"inputs": [fp32_input(16)]}, ROW.tobytes()[:16]))
    assert message == f"{FIELD}.parameters.binary_data_size: shape [1, 5] of FP32 needs 20 bytes, got 16"


def test_duplicate_header_is_400(baseline: ServerProcess) -> None:
    body, length = binary_body({"inputs": [fp32_input()]}, ROW.tobytes())
    connection = http.client.HTTPConnection("127.0.0.1", baseline.port, timeout=10)
    try:
        connection.putrequest("POST", INFER)
        connection.putheader(HEADER, str(length))
        connection.putheader(HEADER, str(length))
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        assert answer.status == 400 and b"more than once" in answer.read()
    finally:
        connection.close()


def test_body_limit_holds_for_binary_requests(baseline: ServerProcess) -> None:
    rows = 9 * 1024 * 1024 // 20 + 1
    response = post_binary(baseline, {"inputs": [fp32_input(rows * 20, [rows, 5])]}, b"\0" * (rows * 20))
    assert "exceeds the limit" in error_of(response, 413)


def _typed_head(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    """A typed-model request: ``name`` binary, every other input a valid JSON tensor of 1 row."""
    inputs = []
    for other, (_, kind, _) in TYPED_INPUTS.items():
        if other == name:
            inputs.append(
                {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}
            )
            continue
        array = _typed_arrays(shape[0])[other]
        data = array.astype(float).tolist() if kind == "FP16" else array.tolist()
        inputs.append({"name": other, "datatype": kind, "shape": list(array.shape), "data": data})
    return {"inputs": inputs}


def _strings(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


TYPED_MALFORMED = [
    pytest.param("flag", "BOOL", [1, 2], b"\x01\x02", ["('flag') binary data", "0 or 1", "element 1 is 2"],
                 id="bool-byte-2"),
    pytest.param("half", "FP16", [1, 2], np.array([1, np.inf], np.float16).tobytes(), ["('half')", "finite"],
                 id="fp16-infinity"),
    pytest.param("wide", "FP64", [1, 3], np.array([1, 2, np.nan]).tobytes(), ["('wide')", "finite"], id="fp64-nan"),
    pytest.param("text", "BYTES", [3], _strings(b"ok") + b"\x05\0\0", ["('text')", "needs at least 12 bytes"],
                 id="bytes-shorter-than-the-lengths"),
    pytest.param("text", "BYTES", [2], _strings(b"ok") + b"\x05\0\0\0ab", ["('text')", "element 1 claims 5 bytes"],
                 id="bytes-element-past-the-end"),
    pytest.param("text", "BYTES", [2], _strings(b"ok", b"\xff\xfe"), ["('text')", "element 1", "UTF-8"],
                 id="bytes-not-utf8"),
    pytest.param("text", "BYTES", [1], _strings(b"ok") + b"\0\0\0\0", ["('text').parameters.binary_data_size",
                 "4 bytes are left after the last element"], id="bytes-too-many-elements"),
    pytest.param("text", "BYTES", [2], _strings(b"ok") + b"\0\0", ["('text')", "element 1 of 2 is cut off"],
                 id="bytes-length-cut-off"),
    pytest.param("big", "UINT64", [2], b"\0" * 15, ["('big').parameters.binary_data_size", "needs 16 bytes, got 15"],
                 id="uint64-short"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "datatype", "shape", "tail", "fragments"), TYPED_MALFORMED)
def test_malformed_typed_tensors_are_400(
    typed: ServerProcess, name: str, datatype: str, shape: list[int], tail: bytes, fragments: list[str]
) -> None:
    response = post_binary(typed, _typed_head(name, datatype, shape, len(tail)), tail, path="/v2/models/typed/infer")
    message = error_of(response)
    for fragment in fragments:
        assert fragment in message, message


# -- fuzzing: nothing a client sends in binary form produces a 5xx -----------------------------------
_sizes = st.one_of(st.integers(-4, 64), st.none(), st.text(max_size=3), st.booleans(), st.floats(0, 100))
_shapes = st.one_of(st.lists(st.integers(-1, 6), max_size=3), st.just([1, 5]), st.integers(-1, 2**62))
_floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
_headers = st.one_of(st.integers(-3, 400).map(str), st.text("0123456789abc.-+", max_size=6))


def _usually(valid: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid value nine times in ten, else what ``strategy`` draws: most requests get deep."""
    return st.integers(0, 9).flatmap(lambda k: strategy if k == 5 else st.just(valid))  # 5: not a bound


_flags = st.booleans().flatmap(lambda flag: _usually(flag, st.sampled_from([0, 1, None, "true"])))
_fuzz_outputs = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(OUTPUTS).flatmap(lambda name: _usually(name, st.just("nope")))},
        optional={"parameters": st.fixed_dictionaries({"binary_data": _flags})},
    ),
    max_size=2,
)


@st.composite
def _binary_requests(draw: st.DrawFn) -> tuple[dict[str, Any], bytes, str]:
    """A near-valid binary request for the example model (each field mutated now and then)."""
    rows = draw(st.integers(1, 3))
    values = draw(st.lists(_floats, min_size=5 * rows, max_size=5 * rows))
    values[0] = draw(_usually(values[0], st.sampled_from([math.nan, math.inf, -math.inf])))
    tail = struct.pack(f"<{len(values)}f", *values)
    tensor: dict[str, Any] = {
        "name": draw(_usually("input", st.sampled_from(["other", ""]))),
        "datatype": draw(_usually("FP32", st.sampled_from(["INT64", "BYTES", "BOOL", "FP16", "FP64"]))),
        "shape": draw(_usually([rows, 5], _shapes)),
        "parameters": {"binary_data_size": draw(_usually(len(tail), _sizes))},
    }
    if draw(st.integers(0, 9)) == 5:  # not 0: hypothesis draws the bounds far more often
        tensor["data"] = [0.0] * 5 * rows
    head: dict[str, Any] = {"inputs": draw(_usually([tensor], st.just([tensor, tensor])))}
    if draw(st.booleans()):
        head["outputs"] = draw(_fuzz_outputs)
    if draw(st.booleans()):
        head["parameters"] = {"binary_data_output": draw(_flags)}
    tail += draw(_usually(b"", st.binary(max_size=8)))
    return head, tail, draw(_usually("auto", _headers))


@seed(SEED)
@given(request=_binary_requests())
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_binary_fuzz_never_5xx(baseline: ServerProcess, request: tuple[dict[str, Any], bytes, str]) -> None:
    response = post_binary(baseline, *request)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert "error" in response.json()
    elif HEADER in response.headers:
        parse_binary_response(response)
    else:
        assert "outputs" in response.json()
