"""The one-pass decoder of the common infer request agrees with the field-by-field decoder.

Why: :func:`modelserver.codec.decode_plain` answers most requests without the field-by-field checks
of :func:`modelserver.inference.decode_infer`, so it must accept nothing they refuse and build the
very same request from what it accepts; everything else it hands back (None). Checked here on valid
requests and on every single-field change of them that the refusal tests know about, for a model
with one input and for one with several (symbolic batch dimension, FP64, an integer input the fast
pass never takes).
"""

from __future__ import annotations

import copy
import itertools
import types
from typing import Any

import numpy as np
import pytest
from modelserver import inference
from modelserver.codec import InferRequest, decode_plain
from modelserver.errors import ApiError
from modelserver.model import OnnxModel

from .conftest import MODELS

MAX_BATCH = 8
ROW = [38.03, 816.0, 6.0, 3.7, 0.0]


def _multi_input_model() -> OnnxModel:
    from onnx import TensorProto, helper

    signature = [("a", TensorProto.FLOAT, ["N", 2]), ("b", TensorProto.DOUBLE, ["N", 3]), ("c", TensorProto.FLOAT, [2])]
    inputs = [helper.make_tensor_value_info(n, t, s) for n, t, s in signature]
    outputs = [helper.make_tensor_value_info(f"{n}_out", t, s) for n, t, s in signature]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _, _ in signature]
    proto = helper.make_model(
        helper.make_graph(nodes, "several", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    proto.ir_version = 8
    return OnnxModel(proto.SerializeToString())


def _int_input_model() -> OnnxModel:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["i"], ["o"])],
        "ints",
        [helper.make_tensor_value_info("i", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("o", TensorProto.INT64, ["N", 2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return OnnxModel(proto.SerializeToString())


BASELINE = {"id": "r1", "inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": ROW}]}
SEVERAL = {
    "inputs": [
        {"name": "b", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4.5, 5, 6]},
        {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [0.5, -1, 2**70, 3]},
        {"name": "c", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]},
    ]
}
INTS = {"inputs": [{"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}

# Values put in place of one field (None: the field removed) of a valid request.
TOP_LEVEL = {
    "id": [None, "", "x" * 256, "x" * 257, 7, ["a"], "ok"],
    "parameters": [None, {}, {"binary_data_output": False}, 3],
    "outputs": [None, [], [{"name": "input"}], 3],
    "inputs": [None, [], 3, {}],
    "extra": ["anything"],
}
PER_INPUT = {
    "name": [None, "nope", 3, ["input"], "a", "b", "c", "input"],
    "datatype": [None, "FP16", "FP64", "FP32", "INT64", "XX", 7],
    "shape": [None, [1], [1, 5], [2, 5], [0, 5], [-1, 5], [1, 5, 1], [1, True], [1, 5.0], "1,5", [1] * 17,
              [9, 5], [2, 2], [2, 3], [2], [3, 2]],
    "data": [None, 5, [], ROW, ROW + ROW, [ROW], [1, 2, 3, 4, "5"], [1, 2, 3, 4, None], [1, 2, 3, 4, True],
             [1, 2, 3, 4, 1e39], [1, 2, 3, 4, 4e38], [1, 2, 3, 4, 10**40], [1, 2, 3, 4, 2**70], [[1, 2], [3, 4, 5]]],
    "parameters": [None, {}, 3, {"binary_data_size": 20}],
    "extra": ["x"],
}  # fmt: skip


def _variants(base: dict[str, Any]) -> list[dict[str, Any]]:
    found = [copy.deepcopy(base)]
    for key, values in TOP_LEVEL.items():
        for value in values:
            payload = copy.deepcopy(base)
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = copy.deepcopy(value)
            found.append(payload)
    for index, (key, values) in itertools.product(range(len(base["inputs"])), PER_INPUT.items()):
        for value in values:
            payload = copy.deepcopy(base)
            if value is None:
                payload["inputs"][index].pop(key, None)
            else:
                payload["inputs"][index][key] = copy.deepcopy(value)
            found.append(payload)
    inputs = base["inputs"]
    changed = [
        inputs * 2,  # every input twice
        inputs[:-1],  # one missing
        list(reversed(inputs)),
        [inputs[0], *inputs[:-1]],  # as many inputs as the model's, one of them twice
        *([*inputs[:i], {**tensor, **whole}, *inputs[i + 1 :]] for i, tensor in enumerate(inputs) for whole in WHOLE),
    ]
    found += [{**copy.deepcopy(base), "inputs": copy.deepcopy(items)} for items in changed]
    return found


WHOLE = [  # an input's shape and data changed together
    {"shape": [MAX_BATCH + 1, 5], "data": ROW * (MAX_BATCH + 1)},  # over the batch limit
    {"shape": [MAX_BATCH, 5], "data": ROW * MAX_BATCH},
    {"shape": [0, 5], "data": []},
    {"shape": [0], "data": []},
    {"shape": [3, 2], "data": [1.0] * 6},  # rows that disagree with another input's
    {"shape": [MAX_BATCH + 1, 2], "data": [1.0] * 2 * (MAX_BATCH + 1)},
    {"shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]},  # nested
    {"shape": [], "data": [1.0]},
]


def _field_by_field(payload: dict[str, Any], model: OnnxModel, monkeypatch: pytest.MonkeyPatch) -> InferRequest:
    runtime = types.SimpleNamespace(model=model, encoder=None, feature_input=None)
    with monkeypatch.context() as patch:
        patch.setattr(inference, "decode_plain", lambda *_: None)
        return inference.decode_infer(payload, runtime, MAX_BATCH)  # type: ignore[arg-type]


def _same(fast: InferRequest, slow: InferRequest, payload: dict[str, Any]) -> None:
    if payload.get("id") is not None:
        assert fast.id == slow.id
    assert list(fast.feeds) == list(slow.feeds)
    for name, array in fast.feeds.items():
        other = slow.feeds[name]
        assert array.dtype == other.dtype and array.shape == other.shape
        np.testing.assert_array_equal(array, other)
    assert (fast.outputs, fast.rows, fast.binary_outputs, fast.imputed) == (
        slow.outputs, slow.rows, slow.binary_outputs, slow.imputed,
    )  # fmt: skip


@pytest.mark.parametrize("which", ["baseline", "several", "ints"])
def test_the_one_pass_decoder_accepts_only_what_the_full_decoder_accepts(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, base = {
        "baseline": (OnnxModel((MODELS / "baseline.onnx").read_bytes()), BASELINE),
        "several": (_multi_input_model(), SEVERAL),
        "ints": (_int_input_model(), INTS),
    }[which]
    taken = 0
    for payload in _variants(base):
        try:
            slow: InferRequest | ApiError = _field_by_field(copy.deepcopy(payload), model, monkeypatch)
        except ApiError as exc:
            slow = exc
        try:
            fast = decode_plain(copy.deepcopy(payload), model, MAX_BATCH)
        except ApiError as exc:  # only a batch over the limit or disagreeing dimensions, as the full decoder says
            assert isinstance(slow, ApiError) and (exc.status, exc.message) == (slow.status, slow.message), payload
            continue
        if fast is None:
            continue
        taken += 1
        assert not isinstance(slow, ApiError), (payload, slow.message)
        _same(fast, slow, payload)
    if which == "ints":
        assert taken == 0  # integer inputs always take the full decoder
    else:
        assert taken >= 5, taken
