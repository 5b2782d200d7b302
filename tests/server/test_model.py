"""The onnxruntime wrapper: V2 view of inputs and outputs."""

from __future__ import annotations

import numpy as np
import pytest
from modelserver.errors import LoadError
from modelserver.model import OnnxModel

from .conftest import MODELS


def test_example_model_signature() -> None:
    model = OnnxModel((MODELS / "baseline.onnx").read_bytes())
    assert [t.metadata() for t in model.inputs] == [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]
    assert [t.datatype.v2 for t in model.outputs] == ["INT64", "FP32"]


def test_garbage_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="onnxruntime could not load"):
        OnnxModel(b"not an onnx model")


def test_zipmap_outputs_are_skipped_not_fatal() -> None:
    """skl2onnx's default classifier output is a ZipMap (sequence of maps): serve the tensors only."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    clf = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    model = OnnxModel(to_onnx(clf, x[:1], target_opset=17).SerializeToString())
    assert [o.name for o in model.outputs] == ["output_label"]
    assert model.run({"X": x[:2]})["output_label"].shape == (2,)


def _two_input_model() -> OnnxModel:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two-inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return OnnxModel(proto.SerializeToString())


def test_symbolic_dimensions_must_agree_across_inputs() -> None:
    from modelserver.codec import decode_inputs
    from modelserver.errors import ApiError

    model = _two_input_model()
    assert model.inputs[0].symbols == ("N", None)
    tensor = lambda name, rows: {"name": name, "datatype": "FP32", "shape": [rows, 2], "data": [1.0] * rows * 2}  # noqa: E731
    feeds = decode_inputs([tensor("a", 2), tensor("b", 2)], model, max_batch=10)
    assert model.run(feeds)["y"].tolist() == [[2.0, 2.0], [2.0, 2.0]]
    with pytest.raises(ApiError, match="same dimension 'N'") as exc:
        decode_inputs([tensor("a", 1), tensor("b", 2)], model, max_batch=10)
    assert exc.value.status == 400
