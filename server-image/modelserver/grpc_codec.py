"""Open Inference Protocol gRPC messages ↔ the server's validated requests and model outputs.

Why a codec of its own that calls into :mod:`modelserver.codec` and :mod:`modelserver.binary`: a
gRPC ``ModelInferRequest`` must be refused for exactly the reasons a JSON request is (unknown input,
wrong datatype or shape, a value out of range, NaN, a batch over the limit) with the same words, so
every check is the JSON path's own; only where the values come from differs. ``raw_input_contents``
has the byte layout of the binary tensor data extension (little-endian, row-major, BOOL one byte,
BYTES 4-byte-length-prefixed), so it goes through :func:`modelserver.binary.decode_raw`; typed
``contents`` go through :func:`modelserver.codec.decode_data`.

Outputs are sent as ``raw_output_contents`` when the request used ``raw_input_contents`` (as NVIDIA
Triton does, and as ``tritonclient.grpc`` needs: its ``as_numpy`` reads raw contents only), otherwise
as typed ``contents``; FP16, which has no typed field, makes the whole response raw (the protocol
does not allow mixing the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from . import binary, datatypes
from .codec import (
    InferRequest,
    add_feed,
    batch_rows,
    check_feeds,
    decode_data,
    decode_shape,
    input_spec,
    request_id,
    requested_outputs,
)
from .datatypes import DataType
from .errors import bad_request
from .model import OnnxModel, TensorSpec
from .proto import open_inference_grpc_pb2 as pb

CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype, as the .proto assigns them (FP16 has none: raw only)."""
TOKEN_PARAMETER = "prediction_token"
"""Response parameter carrying the prediction token (``parameters.prediction_token`` in JSON too)."""


def decode_request(request: pb.ModelInferRequest, model: OnnxModel, max_batch: int) -> InferRequest:
    """Validate a ``ModelInferRequest`` against the model; raises a 400 ApiError naming the field."""
    rid = request_id({"id": request.id or None})  # proto3 has no null: an empty id means none
    if "features" in request.parameters:
        raise bad_request("parameters.features: named features are not supported over gRPC; send inputs")
    outputs, _ = requested_outputs({"outputs": [{"name": o.name} for o in request.outputs]}, model, {})
    feeds = decode_inputs(request.inputs, request.raw_input_contents, model, max_batch)
    return InferRequest(rid, feeds, outputs, batch_rows(feeds))


def decode_inputs(
    inputs: Sequence[pb.ModelInferRequest.InferInputTensor], raw: Sequence[bytes], model: OnnxModel, max_batch: int
) -> dict[str, np.ndarray]:
    """Every input from its typed ``contents`` or, when the request has any, from ``raw_input_contents``."""
    if not inputs:
        raise bad_request("inputs: required (a list of input tensors)")
    if raw and len(raw) != len(inputs):
        raise bad_request(
            f"raw_input_contents: {len(raw)} entries for {len(inputs)} inputs; send one per input, in their order"
        )
    feeds: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(inputs):
        spec, where = input_spec(tensor.name, tensor.datatype, index, model)
        shape = decode_shape(list(tensor.shape), spec, where)
        if raw:
            if tensor.HasField("contents"):
                raise bad_request(f"{where}.contents: not allowed with raw_input_contents (all inputs raw, or none)")
            array = binary.decode_raw(raw[index], shape, spec, where, f"raw_input_contents[{index}]")
        else:
            array = _decode_contents(tensor.contents, shape, spec, where)
        add_feed(feeds, spec.name, array, index)
    check_feeds(feeds, model, max_batch)
    return feeds


def _decode_contents(
    contents: pb.InferTensorContents, shape: tuple[int, ...], spec: TensorSpec, where: str
) -> np.ndarray:
    """Typed contents: the datatype's own field only, checked as strictly as JSON ``data``."""
    v2 = spec.datatype.v2
    wanted = CONTENTS_FIELD.get(v2)
    if wanted is None:
        raise bad_request(f"{where}.contents: {v2} has no typed contents field; send it in raw_input_contents")
    for descriptor, _ in contents.ListFields():
        if descriptor.name != wanted:
            raise bad_request(f"{where}.contents.{descriptor.name}: {v2} values go in contents.{wanted}")
    field = f"{where}.contents.{wanted}"
    values: list[Any] = list(getattr(contents, wanted))
    if spec.datatype.kind == "bytes":
        return _decode_strings(values, shape, field)
    array = decode_data(values, shape, spec, where, field)
    if spec.datatype.kind == "float" and not np.isfinite(array).all():  # JSON cannot carry NaN; protobuf can
        index = int(np.flatnonzero(~np.isfinite(array))[0])
        raise bad_request(f"{field}: values must be finite, element {index} is {array.flat[index]}")
    return array


def _decode_strings(values: list[bytes], shape: tuple[int, ...], field: str) -> np.ndarray:
    """``bytes_contents`` → an object array of str, as JSON strings and raw BYTES are decoded."""
    expected = int(np.prod(shape))
    if len(values) != expected:
        raise bad_request(f"{field}: shape {list(shape)} needs {expected} elements, got {len(values)}")
    out = np.empty(expected, dtype=object)
    for index, value in enumerate(values):
        try:
            out[index] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"{field}: element {index} is not valid UTF-8") from None
    return out.reshape(shape)


def encode_response(
    model_name: str,
    version: str,
    request_id: str,
    outputs: dict[str, np.ndarray],
    names: tuple[str, ...] | None,
    token: str | None,
    raw: bool,
) -> pb.ModelInferResponse:
    """The ``ModelInferResponse``: raw or typed contents (see the module docstring), the token as a parameter."""
    selected = names if names is not None else tuple(outputs)
    response = pb.ModelInferResponse(model_name=model_name, model_version=version, id=request_id)
    if token is not None:
        response.parameters[TOKEN_PARAMETER].string_param = token
    raw = raw or any(outputs[name].dtype == np.float16 for name in selected)
    for name in selected:
        array = outputs[name]
        datatype = datatypes.from_numpy(array.dtype)
        tensor = response.outputs.add(name=name, datatype=datatype.v2, shape=array.shape)
        if raw:
            response.raw_output_contents.append(binary.encode_tensor(array))
        else:
            _fill_contents(tensor.contents, array, datatype)
    return response


def _fill_contents(contents: pb.InferTensorContents, array: np.ndarray, datatype: DataType) -> None:
    values = array.ravel().tolist()
    if datatype.kind == "bytes":
        values = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
    getattr(contents, CONTENTS_FIELD[datatype.v2]).extend(values)


def encode_metadata(described: dict[str, Any]) -> pb.ModelMetadataResponse:
    """``ModelMetadataResponse`` from the JSON metadata; its ``parameters`` become string ``properties``.

    Strings stay as they are; lists and objects (classes, features) are JSON text.
    """
    response = pb.ModelMetadataResponse(
        name=described["name"], versions=described["versions"], platform=described["platform"]
    )
    for key in ("inputs", "outputs"):
        for tensor in described[key]:
            getattr(response, key).add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    for key, value in described["parameters"].items():
        response.properties[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return response
