"""Models whose weights live in ONNX external-data files beside the graph: found in the graph's
protobuf, fetched beside it through the same loader (file in place, a private S3 bucket, an OCI
artifact's layers), and served with the same predictions as the model with its weights inside."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from modelserver import external_data
from modelserver.errors import LoadError
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from hack.loopback.objectstore import ObjectStore
from hack.loopback.registry import Registry, docker_config
from tests.server.conftest import MODEL_NAME, MODELS, ServerFactory, ServerProcess, serve_uri
from tests.server.conftest import load_failure as failure
from tests.server.test_storage import ACCESS, SECRET

METADATA = (MODELS / "metadata.json").read_bytes()
ROWS = [
    {"amount": 12.5, "channel": "web", "account_age_days": 300, "hour": 14, "distance_km": 3.2},
    {"amount": 4800.0, "channel": "pos", "account_age_days": 2, "hour": 3, "distance_km": 900.0},
]


def split(directory: Path, one_file: bool = True) -> dict[str, bytes]:
    """The baseline model with every initializer in external data: {file name: bytes}."""
    directory.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(MODELS / "baseline.onnx"))
    # onnx externalises only raw_data tensors and these are typed fields: convert all but the
    # Reshape's shape, which onnxruntime's shape inference must read from the graph itself (exporters
    # keep such small tensors inside anyway).
    for tensor in model.graph.initializer:
        if tensor.name != "shape_tensor":
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    onnx.save_model(model, str(directory / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=one_file, location="model.onnx.data", size_threshold=0)  # fmt: skip
    (directory / "metadata.json").write_bytes(METADATA)
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return split(tmp_path_factory.mktemp("split") / "fraud")


def predictions(server: ServerProcess) -> list[dict]:
    out = []
    for row in ROWS:
        answer = requests.post(f"{server.url}/v2/models/{MODEL_NAME}/infer",
                               json={"parameters": {"features": row}}, timeout=5)  # fmt: skip
        assert answer.status_code == 200, answer.text
        out.append({o["name"]: o["data"] for o in answer.json()["outputs"]})
    return out


def start(factory: ServerFactory, uri: str, sha: str, env: dict[str, str] | None = None, ready: bool = True):
    return serve_uri(factory, uri, env or {}, ready, sha256=sha)


# ------------------------------------------------------------------------------ reading the graph


def test_the_locations_are_read_from_the_graph(tmp_path: Path, files: dict[str, bytes]) -> None:
    assert external_data.locations(files["model.onnx"]) == ["model.onnx.data"]
    assert external_data.locations((MODELS / "baseline.onnx").read_bytes()) == []
    per_tensor = split(tmp_path / "per-tensor", one_file=False)
    model = onnx.load(str(tmp_path / "per-tensor" / "model.onnx"), load_external_data=False)
    expected = [e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"]
    assert external_data.locations(per_tensor["model.onnx"]) == expected and len(expected) == 3


def test_a_tensor_in_a_node_attribute_and_in_a_subgraph_is_found() -> None:
    """A Constant's value (an attribute) inside an If branch (a subgraph), stored externally."""
    value = numpy_helper.from_array(np.arange(16, dtype=np.float32), "c")
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=value)], "then", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16])])  # fmt: skip
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16])])  # fmt: skip
    model = helper.make_model(graph)
    # onnx's own save leaves attribute tensors inside; other exporters do not, so mark one by hand.
    for branch_graph in (model.graph.node[0].attribute[0].g, model.graph.node[0].attribute[1].g):
        tensor = branch_graph.node[0].attribute[0].t
        set_external_data(tensor, "weights/consts.bin")
        tensor.data_location, tensor.raw_data = TensorProto.EXTERNAL, b""
    assert external_data.locations(model.SerializeToString()) == ["weights/consts.bin"]


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "a/../../b", "w\\..\\x", ""])
def test_a_location_outside_the_models_directory_is_refused(tmp_path: Path, location: str) -> None:
    split(tmp_path)
    saved = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    for entry in saved.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    with pytest.raises(LoadError, match="only a relative path below the model file's directory"):
        external_data.locations(saved.SerializeToString())


@pytest.mark.parametrize("data", [b"\x3a\xff\xff\xff\x0f", b"\x3a\x02\x2a", b"\x3a\x80", b"\x07", b"{}"])
def test_bytes_that_are_not_protobuf_name_no_files_and_are_left_to_onnxruntime(data: bytes) -> None:
    """tests/server/test_lifecycle.py: such a file fails with onnxruntime's own reason."""
    assert external_data.locations(data) == []


# ---------------------------------------------------------------------------------- serving it


def test_a_split_model_is_served_in_place_with_the_same_predictions(
    tmp_path: Path, files: dict[str, bytes], baseline: ServerProcess, server_factory: ServerFactory
) -> None:
    local = tmp_path / "fraud"
    split(local)
    sha = hashlib.sha256(files["model.onnx"]).hexdigest()
    server = start(server_factory, (local / "model.onnx").as_uri(), sha)
    assert predictions(server) == predictions(baseline)
    (local / "model.onnx.data").unlink()
    reason = failure(start(server_factory, (local / "model.onnx").as_uri(), sha, ready=False))
    assert "names external data model.onnx.data, which is not beside it" in reason, reason


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]) -> Iterator[ObjectStore]:
    with ObjectStore(tmp_path_factory.mktemp("s3-split"), ACCESS, SECRET) as store:
        for name, data in files.items():
            store.put("models", f"fraud/v2/{name}", data)
        store.put("models", "fraud/v3/model.onnx", files["model.onnx"])  # its data file is missing
        yield store


def test_a_split_model_in_a_private_bucket_is_fetched_beside_the_graph(
    bucket: ObjectStore, files: dict[str, bytes], baseline: ServerProcess, server_factory: ServerFactory
) -> None:
    sha = hashlib.sha256(files["model.onnx"]).hexdigest()
    server = start(server_factory, "s3://models/fraud/v2/model.onnx", sha, bucket.env())
    assert predictions(server) == predictions(baseline)
    assert '"external_data":["model.onnx.data"]' in server.logs()
    missing = failure(start(server_factory, "s3://models/fraud/v3/model.onnx", sha, bucket.env(), ready=False))
    assert "external data 'model.onnx.data' was not found beside it" in missing, missing
    assert "s3://models/fraud/v3/model.onnx.data answered HTTP 404 NoSuchKey" in missing, missing


def test_a_split_model_is_pulled_as_the_layers_of_one_oci_artifact(
    tmp_path: Path, files: dict[str, bytes], baseline: ServerProcess, server_factory: ServerFactory
) -> None:
    with Registry(tmp_path / "registry", {"puller": "registry-" + "p" * 31}) as registry:
        digest = registry.push("models/fraud", "split", files)
        config = docker_config(tmp_path / "docker", registry.host, "puller", "registry-" + "p" * 31)
        sha = hashlib.sha256(files["model.onnx"]).hexdigest()
        env = {"OCI_PLAIN_HTTP": "true", "DOCKER_CONFIG": str(config)}
        server = start(server_factory, f"oci://{registry.host}/models/fraud@{digest}#model.onnx", sha, env)
        assert predictions(server) == predictions(baseline)
