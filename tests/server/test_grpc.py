"""The Open Inference Protocol's gRPC API (``inference.GRPCInferenceService``) against real server processes.

Predictions over gRPC must equal those of the JSON HTTP path, whether inputs come as typed
``contents`` (the server's own generated stubs) or as ``raw_input_contents`` (NVIDIA's
``tritonclient.grpc``, run in a process of its own: see triton_grpc_client.py for why). Refusals
carry the HTTP path's field-named message under the matching gRPC status, and every call is
counted in ``modelserver_requests_total`` with ``protocol="grpc"``.
"""

from __future__ import annotations

import filecmp
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from modelserver.proto import open_inference_grpc_pb2 as pb  # importable: conftest adds server-image
from modelserver.proto import open_inference_grpc_pb2_grpc as pb_grpc

from examples.models import dataset

from .conftest import MODEL_NAME, REPO, REVISION, ServerFactory, ServerProcess, free_port, model_args
from .promtext import value

INFER = f"/v2/models/{MODEL_NAME}/infer"
TRITON_CLIENT = Path(__file__).with_name("triton_grpc_client.py")
PROTO_DIR = REPO / "server-image" / "modelserver" / "proto"


@dataclass
class GrpcServer:
    """A server process with its gRPC address and a stub on it."""

    http: ServerProcess
    address: str
    stub: pb_grpc.GRPCInferenceServiceStub


def start_grpc(factory: ServerFactory, args: list[str], ready: bool = True) -> GrpcServer:
    port = free_port()
    server = factory.start([*args, "--grpc-port", str(port)], ready=ready)
    address = f"127.0.0.1:{port}"
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    return GrpcServer(server, address, stub)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    """The example model with prediction tokens on, so the token's trip over gRPC is checked too."""
    workdir = tmp_path_factory.mktemp("grpc")
    key = workdir / "feedback.key"
    key.write_bytes(os.urandom(32))
    factory = ServerFactory(workdir)
    tokens = ["--feedback-key-file", str(key), "--deployment", "ml/fraud"]
    try:
        yield start_grpc(factory, model_args("baseline", "--warmup-requests", "2", *tokens))
    finally:
        factory.stop_all()


def rows(n: int, seed: int) -> np.ndarray:
    return np.asarray(dataset.generate(n, seed=seed).features, dtype=np.float32)


def http_outputs(server: ServerProcess, features: np.ndarray) -> dict[str, list[Any]]:
    response = requests.post(server.url + INFER, json=dataset.tensor_body(features), timeout=5)
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def typed_request(features: np.ndarray, request_id: str = "", datatype: str = "FP32") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL_NAME, id=request_id)
    tensor = request.inputs.add(name=dataset.INPUT_NAME, datatype=datatype, shape=features.shape)
    tensor.contents.fp32_contents.extend(features.ravel().tolist())
    return request


def typed_outputs(response: pb.ModelInferResponse) -> dict[str, list[Any]]:
    field = {"INT64": "int64_contents", "FP32": "fp32_contents"}
    return {o.name: list(getattr(o.contents, field[o.datatype])) for o in response.outputs}


def assert_same_outputs(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Identical predictions: labels equal, probabilities equal as FP32 (JSON prints them shortest)."""
    assert got.keys() == expected.keys()
    for name, values in expected.items():
        dtype = np.float32 if name == "probabilities" else np.int64
        np.testing.assert_array_equal(np.asarray(got[name], dtype).ravel(), np.asarray(values, dtype).ravel())


def refusal(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# -- generated code ---------------------------------------------------------------------------------
def test_checked_in_modules_match_a_fresh_generation(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the modules")
    subprocess.run(["bash", str(REPO / "hack" / "gen-grpc.sh"), str(tmp_path)], check=True, capture_output=True)
    fresh = tmp_path / "modelserver" / "proto"
    names = ["open_inference_grpc_pb2.py", "open_inference_grpc_pb2.pyi", "open_inference_grpc_pb2_grpc.py"]
    _, mismatch, missing = filecmp.cmpfiles(PROTO_DIR, fresh, names, shallow=False)
    assert not mismatch and not missing, f"run hack/gen-grpc.sh: {mismatch + missing} differ"


# -- health and metadata ----------------------------------------------------------------------------
def test_health_and_server_metadata(served: GrpcServer) -> None:
    stub = served.stub
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME)).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME, version=REVISION)).ready
    metadata = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "modelserver" and "binary_tensor_data" in metadata.extensions


def test_model_metadata_matches_http(served: GrpcServer) -> None:
    expected = requests.get(served.http.url + f"/v2/models/{MODEL_NAME}", timeout=5).json()
    got = served.stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME))
    assert [got.name, list(got.versions), got.platform] == [expected[k] for k in ("name", "versions", "platform")]

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    assert tensors(got.inputs) == expected["inputs"] and tensors(got.outputs) == expected["outputs"]
    assert got.properties["revision"] == REVISION
    assert json.loads(got.properties["classes"]) == expected["parameters"]["classes"]


def test_unknown_model_or_version_is_not_found(served: GrpcServer) -> None:
    for call in (
        lambda: served.stub.ModelMetadata(pb.ModelMetadataRequest(name="other")),
        lambda: served.stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME, version="nope")),
        lambda: served.stub.ModelInfer(pb.ModelInferRequest(model_name="other")),
    ):
        error = refusal(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND and "unknown" in error.details()


# -- inference --------------------------------------------------------------------------------------
def test_typed_contents_give_the_json_predictions(served: GrpcServer) -> None:
    features = rows(7, seed=3)
    response = served.stub.ModelInfer(typed_request(features, request_id="typed-1"))
    assert (response.model_name, response.model_version, response.id) == (MODEL_NAME, REVISION, "typed-1")
    assert not response.raw_output_contents, "typed request, typed answer"
    assert [o.name for o in response.outputs] == ["label", "probabilities"]
    assert list(response.outputs[1].shape) == [7, 2]
    assert_same_outputs(typed_outputs(response), http_outputs(served.http, features))


def test_requested_outputs_and_generated_id(served: GrpcServer) -> None:
    request = typed_request(rows(2, seed=4))
    request.outputs.add(name="probabilities")
    response = served.stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert len(response.id) == 36, "a fresh UUID when the request has no id (feedback needs one)"


def test_raw_contents_from_tritonclient_give_the_json_predictions(served: GrpcServer) -> None:
    features = rows(5, seed=8)
    spec = {
        "model": MODEL_NAME,
        "id": "triton-1",
        "inputs": [{"name": dataset.INPUT_NAME, "datatype": "FP32", "shape": list(features.shape),
                    "data": features.tolist()}],
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(TRITON_CLIENT), served.address], input=json.dumps(spec), text=True,
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["live"] and report["ready"] and report["model_ready"]
    assert report["metadata"]["versions"] == [REVISION]
    answer = report["infer"]
    assert answer["id"] == "triton-1" and answer["model_version"] == REVISION
    assert answer["datatypes"] == {"label": "INT64", "probabilities": "FP32"}
    assert_same_outputs(answer["outputs"], http_outputs(served.http, features))
    assert answer["parameters"]["prediction_token"].startswith("v2.")


def test_token_and_id_feedback_work_for_grpc_predictions(served: GrpcServer) -> None:
    response = served.stub.ModelInfer(typed_request(rows(1, seed=11), request_id="grpc-feedback-1"))
    token = response.parameters["prediction_token"].string_param
    assert token.startswith("v2.") and token.count(".") == 2
    url = served.http.url + f"/v2/models/{MODEL_NAME}/feedback"
    by_token = requests.post(url, json={"token": token, "truth": 1}, timeout=5)
    assert by_token.status_code == 200 and by_token.json()["status"] == "matched", by_token.text
    by_id = requests.post(url, json={"id": "grpc-feedback-1", "truth": 0}, timeout=5)
    assert by_id.status_code == 200 and by_id.json()["status"] == "matched", by_id.text


# -- refusals ---------------------------------------------------------------------------------------
def _wrong_datatype() -> pb.ModelInferRequest:
    return typed_request(rows(2, seed=1), datatype="FP64")


def _shape_mismatch() -> pb.ModelInferRequest:
    request = typed_request(rows(2, seed=1))
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([2, 4])
    return request


def _too_few_values() -> pb.ModelInferRequest:
    request = typed_request(rows(2, seed=1))
    request.inputs[0].shape[0] = 3
    return request


def _nan() -> pb.ModelInferRequest:
    request = typed_request(rows(2, seed=1))
    request.inputs[0].contents.fp32_contents[3] = math.nan
    return request


def _wrong_contents_field() -> pb.ModelInferRequest:
    request = typed_request(rows(1, seed=1))
    request.inputs[0].contents.int64_contents.extend([1])
    return request


def _raw_size() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name=dataset.INPUT_NAME, datatype="FP32", shape=[2, 5])
    request.raw_input_contents.append(b"\0" * 36)
    return request


def _raw_and_typed() -> pb.ModelInferRequest:
    request = typed_request(rows(1, seed=1))
    request.raw_input_contents.append(rows(1, seed=1).tobytes())
    return request


def _unknown_output() -> pb.ModelInferRequest:
    request = typed_request(rows(1, seed=1))
    request.outputs.add(name="nope")
    return request


def _no_inputs() -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=MODEL_NAME)


REFUSALS = {
    "wrong datatype": (_wrong_datatype, "inputs[0] ('input').datatype: the model expects FP32, got FP64"),
    "shape mismatch": (_shape_mismatch, "inputs[0] ('input').shape: dimension 1 must be 5"),
    "too few values": (_too_few_values, "inputs[0] ('input').contents.fp32_contents: shape [3, 5] needs 15 elements"),
    "NaN": (_nan, "inputs[0] ('input').contents.fp32_contents: values must be finite, element 3 is nan"),
    "wrong contents field": (
        _wrong_contents_field,
        ".contents.int64_contents: FP32 values go in contents.fp32_contents",
    ),
    "raw size": (_raw_size, "raw_input_contents[0]: shape [2, 5] of FP32 needs 40 bytes, got 36"),
    "raw and typed": (_raw_and_typed, "inputs[0] ('input').contents: not allowed with raw_input_contents"),
    "unknown output": (_unknown_output, "outputs[0].name: unknown output 'nope'"),
    "no inputs": (_no_inputs, "inputs: required"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_invalid_requests_are_invalid_argument_naming_the_field(served: GrpcServer, case: str) -> None:
    build, message = REFUSALS[case]
    error = refusal(lambda: served.stub.ModelInfer(build()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()


def test_metrics_count_grpc_calls_by_endpoint_class_and_protocol(served: GrpcServer) -> None:
    before = served.http.metrics()
    for seed in range(3):
        served.stub.ModelInfer(typed_request(rows(2, seed=seed)))
    refusal(lambda: served.stub.ModelInfer(_wrong_datatype()))
    served.stub.ServerLive(pb.ServerLiveRequest())
    after = served.http.metrics()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("modelserver_requests_total", endpoint="infer", code="2xx", protocol="grpc") == 3
    assert delta("modelserver_requests_total", endpoint="infer", code="4xx", protocol="grpc") == 1
    assert delta("modelserver_requests_total", endpoint="server_live", code="2xx", protocol="grpc") == 1
    assert delta("modelserver_requests_total", protocol="http", endpoint="infer") == 0
    assert delta("modelserver_request_duration_seconds_count") == 3, "4xx are not timed"
    assert delta("modelserver_predictions_total") == 6


# -- lifecycle --------------------------------------------------------------------------------------
def test_not_ready_is_unavailable_with_the_reason(server_factory: ServerFactory) -> None:
    bad_sha = "0" * 64
    server = start_grpc(server_factory, model_args("baseline", "--sha256", bad_sha), ready=False)
    deadline = time.monotonic() + 30
    while "sha256" not in requests.get(server.http.url + "/v2/health/ready", timeout=5).text:
        assert time.monotonic() < deadline, "the sha256 mismatch was not reported"
        time.sleep(0.05)
    assert not server.stub.ServerReady(pb.ServerReadyRequest()).ready
    assert not server.stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME)).ready
    error = refusal(lambda: server.stub.ModelInfer(typed_request(rows(1, seed=1))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "not ready" in error.details() and "sha256" in error.details()
    counted = value(server.http.metrics(), "modelserver_requests_total", endpoint="infer", code="5xx", protocol="grpc")
    assert counted == 1


def test_model_faults_are_internal(server_factory: ServerFactory) -> None:
    server = start_grpc(server_factory, model_args("broken", "--warmup-requests", "2"))
    features = rows(200, seed=5)
    error = refusal(lambda: server.stub.ModelInfer(typed_request(features)))
    assert error.code() == grpc.StatusCode.INTERNAL and "non-finite" in error.details()


def test_draining_keeps_serving_then_refuses_new_calls(server_factory: ServerFactory) -> None:
    server = start_grpc(server_factory, model_args("baseline", "--warmup-requests", "2", "--drain-seconds", "1.5"))
    request = typed_request(rows(1, seed=2))
    server.stub.ModelInfer(request)
    server.http.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert not server.stub.ServerReady(pb.ServerReadyRequest()).ready, "draining: not ready"
    assert server.stub.ModelInfer(request).outputs, "draining: still serving"
    server.http.proc.wait(timeout=15)
    error = refusal(lambda: server.stub.ModelInfer(request, timeout=2))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_busy_grpc_port_leaves_http_serving(server_factory: ServerFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = server_factory.start(model_args("baseline", "--warmup-requests", "2", "--grpc-port", str(port)))
        assert http_outputs(server, rows(1, seed=1))
    assert "gRPC port unavailable" in server.stderr()
