"""Decode Open Inference Protocol (V2) infer requests into numpy feeds, encode responses.

Why hand-written instead of pydantic models: this is the hot path of every prediction, and the
error messages must name the exact field (``inputs[0].data[3]``) in the ``{"error": ...}`` shape.
Validation is strict — wrong datatype, shape, element type, out-of-range or non-finite values are
400s here, so onnxruntime only ever sees tensors that match the model's signature.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from . import binary, datatypes
from .binary import BinaryData
from .errors import ApiError, bad_request, short_repr
from .model import OnnxModel, TensorSpec

MAX_ID_LENGTH = 256
MAX_RANK = 16
_ALLOWED_ELEMENTS: dict[str, frozenset[type]] = {
    "float": frozenset({int, float}),
    "int": frozenset({int}),
    "bool": frozenset({bool}),
    "bytes": frozenset({str}),
}
_KIND_NAMES = {"float": "numbers", "int": "integers", "bool": "booleans", "bytes": "strings"}
_JSON_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", dict: "object"}
_FLOAT_LIMITS = {
    "FP16": float(np.finfo(np.float16).max),
    "FP32": float(np.finfo(np.float32).max),
    "FP64": float(np.finfo(np.float64).max),
}
_PY_CHECK_MAX = 256
_PY_FINITE_MAX = 32
"""Outputs up to this size are checked for NaN/inf in Python (:func:`find_non_finite`)."""
_NO_BINARY: frozenset[str] = frozenset()


@dataclass(slots=True)
class InferRequest:
    """A validated infer request: ``feeds`` match the model's inputs exactly.

    Never changed once built; not ``frozen`` only because a frozen dataclass is built field by field
    through ``object.__setattr__``, 4x the cost, and one is built for every request.
    """

    id: str
    feeds: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None
    rows: int
    binary_outputs: frozenset[str] = _NO_BINARY
    """Outputs to return as binary tensor data (empty: a plain JSON response)."""
    imputed: tuple[tuple[int, int], ...] = ()
    """``(row, column)`` cells of a named-feature request's matrix that were imputed (not observed)."""


def parse_json_object(body: bytes | memoryview, what: str = "request body") -> dict[str, Any]:
    """Parse ``body`` as a JSON object; NaN/Infinity literals and invalid UTF-8 are rejected."""
    if not body:
        raise bad_request(f"{what} is empty; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise bad_request(f"{what} must be a JSON object, got {_json_type(payload)}")
    return payload


def request_id(payload: dict[str, Any]) -> str:
    """The client's ``id`` (a string, echoed back) or a fresh UUID."""
    value = payload.get("id")
    if value is None:
        return str(uuid.uuid4())
    if not isinstance(value, str) or not value:
        raise bad_request(f"id: expected a non-empty string, got {_json_type(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise bad_request(f"id: longer than {MAX_ID_LENGTH} characters")
    return value


def parameters(payload: dict[str, Any], where: str = "parameters") -> dict[str, Any]:
    value = payload.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{where}: expected an object, got {_json_type(value)}")
    return value


def decode_inputs(
    items: Any, model: OnnxModel, max_batch: int, data: BinaryData | None = None
) -> dict[str, np.ndarray]:
    """Validate ``inputs`` against the model signature and build the onnxruntime feeds.

    ``data`` holds the tensor bytes after the JSON part of a binary request (None for plain JSON).
    """
    if not isinstance(items, list):
        raise bad_request(f"inputs: expected a list, got {_json_type(items)}")
    feeds: dict[str, np.ndarray] = {}
    for index, item in enumerate(items):
        name, array = _decode_input(item, index, model, data)
        add_feed(feeds, name, array, index)
    check_feeds(feeds, model, max_batch)
    return feeds


def decode_plain(payload: dict[str, Any], model: OnnxModel, max_batch: int) -> InferRequest | None:
    """The most common request checked in one pass, or None for any other.

    The common request: an optional ``id``, ``inputs`` naming every model input once, each with its
    datatype and shape and a flat list of JSON numbers for a floating-point input, and no
    ``parameters`` or ``outputs``. What this accepts, the field-by-field decoder
    (:func:`~modelserver.inference.decode_infer`) accepts with the same result; everything else goes
    there, which names the problem of a refused request. Why: that decoder makes a dozen calls per
    input, each cold by the time a request arrives (the previous one's ``session.run`` evicted them),
    and at one row they cost as much as the model: this pass takes ~7 us less per request.
    """
    if "parameters" in payload or "outputs" in payload:
        return None
    rid = payload.get("id")
    if rid is not None and (type(rid) is not str or not rid or len(rid) > MAX_ID_LENGTH):
        return None
    items = payload.get("inputs")
    if type(items) is not list or len(items) != len(model.inputs):
        return None
    feeds: dict[str, np.ndarray] = {}
    for item in items:
        found = _plain_tensor(item, model)
        if found is None or found[0] in feeds:
            return None
        feeds[found[0]] = found[1]
    check_dimensions(feeds, model, max_batch)
    return InferRequest(str(uuid.uuid4()) if rid is None else rid, feeds, None, batch_rows(feeds))


def _plain_tensor(item: Any, model: OnnxModel) -> tuple[str, np.ndarray] | None:
    """A floating-point input given as a flat list that passes every check of :func:`_decode_input`."""
    if type(item) is not dict or "parameters" in item:
        return None
    name = item.get("name")
    spec = model.input_by_name.get(name) if type(name) is str else None
    if spec is None or spec.datatype.kind != "float" or item.get("datatype") != spec.datatype.v2:
        return None
    shape, data = _valid_shape(item.get("shape"), spec), item.get("data")
    if shape is None or type(data) is not list:
        return None
    if len(data) != math.prod(shape) or not set(map(type, data)) <= _ALLOWED_ELEMENTS["float"]:
        return None
    if not _within_float_range(data, spec):
        return None
    try:
        return spec.name, np.array(data, dtype=spec.datatype.dtype).reshape(shape)
    except (OverflowError, ValueError):
        return None


def add_feed(feeds: dict[str, np.ndarray], name: str, array: np.ndarray, index: int) -> None:
    """Add input ``index``; a name given twice is a 400 (which one would the client mean?)."""
    if name in feeds:
        raise bad_request(f"inputs[{index}].name: input {name!r} given more than once")
    feeds[name] = array


def check_feeds(feeds: dict[str, np.ndarray], model: OnnxModel, max_batch: int) -> None:
    """Every model input is present, symbolic dimensions agree and the batch is within the limit."""
    missing = [t.name for t in model.inputs if t.name not in feeds]
    if missing:
        raise bad_request(f"inputs: missing required input(s) {', '.join(map(repr, missing))}")
    check_dimensions(feeds, model, max_batch)


def check_dimensions(feeds: dict[str, np.ndarray], model: OnnxModel, max_batch: int) -> None:
    """Symbolic dims (e.g. the batch dim ``N``) must agree across inputs; the batch is bounded."""
    seen: dict[str, tuple[str, int]] = {}
    for spec in model.inputs:
        array = feeds[spec.name]
        if array.ndim and spec.shape and spec.shape[0] == -1 and array.shape[0] > max_batch:
            raise bad_request(f"input {spec.name!r}: batch of {array.shape[0]} exceeds the limit of {max_batch}")
        for axis, symbol in enumerate(spec.symbols):
            if symbol is None:
                continue
            size = array.shape[axis]
            if symbol in seen and seen[symbol][1] != size:
                other, other_size = seen[symbol]
                raise bad_request(
                    f"input {spec.name!r}: dimension {axis} is {size} but input {other!r} has "
                    f"{other_size} for the same dimension {symbol!r}"
                )
            seen.setdefault(symbol, (spec.name, size))


def _decode_input(item: Any, index: int, model: OnnxModel, data: BinaryData | None) -> tuple[str, np.ndarray]:
    if not isinstance(item, dict):
        raise bad_request(f"inputs[{index}]: expected an object, got {_json_type(item)}")
    spec, where = input_spec(item.get("name"), item.get("datatype"), index, model)
    params = parameters(item, f"{where}.parameters") if "parameters" in item else {}
    shape = decode_shape(item.get("shape"), spec, where)
    if "binary_data_size" in params:
        if "data" in item:
            raise bad_request(f"{where}.data: not allowed with parameters.binary_data_size (binary tensor data)")
        return spec.name, binary.decode_tensor(params["binary_data_size"], shape, spec, where, data)
    return spec.name, decode_data(item.get("data"), shape, spec, where)


def input_spec(name: Any, datatype: Any, index: int, model: OnnxModel) -> tuple[TensorSpec, str]:
    """The model input that ``inputs[index]`` names, and how messages name it; its datatype must match.

    Shared by the JSON and gRPC decoders, so both refuse the same requests with the same words.
    """
    if not isinstance(name, str):
        raise bad_request(f"inputs[{index}].name: expected a string, got {_json_type(name)}")
    spec = model.input_by_name.get(name)
    if spec is None:
        known = ", ".join(repr(t.name) for t in model.inputs)
        raise bad_request(f"inputs[{index}].name: unknown input {name!r}; the model's inputs are {known}")
    where = _where(index, name)
    if datatype != spec.datatype.v2:
        if not isinstance(datatype, str) or datatype not in datatypes.BY_V2:
            raise bad_request(f"{where}.datatype: expected {spec.datatype.v2!r}, got {short_repr(datatype)}")
        raise bad_request(f"{where}.datatype: the model expects {spec.datatype.v2}, got {datatype}")
    return spec, where


@functools.lru_cache(maxsize=256)
def _where(index: int, name: str) -> str:
    """How messages name input ``index``, a known input ``name`` (so the cache stays small): built
    once rather than for every input of every request, as only a refused request uses it."""
    return f"inputs[{index}] ({name!r})"


def decode_shape(value: Any, spec: TensorSpec, where: str) -> tuple[int, ...]:
    """``shape``: positive integers, the model's rank, fixed dimensions as the model has them.

    A shape that passes every check is recognised in one pass; any other takes the checks one by
    one (:func:`_check_shape`), which name the first problem.
    """
    shape = _valid_shape(value, spec)
    return shape if shape is not None else _check_shape(value, spec, where)


def _valid_shape(value: Any, spec: TensorSpec) -> tuple[int, ...] | None:
    """``value`` as a shape if it passes every check of :func:`_check_shape`, else None (one pass)."""
    if type(value) is not list or len(value) != len(spec.shape) or len(value) > MAX_RANK:
        return None
    for want, got in zip(spec.shape, value, strict=True):
        if type(got) is not int or got <= 0 or want not in (-1, got):
            return None
    return tuple(value)


def _check_shape(value: Any, spec: TensorSpec, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        raise bad_request(f"{where}.shape: expected a list of integers, got {short_repr(value)}")
    if len(value) > MAX_RANK:
        raise bad_request(f"{where}.shape: rank {len(value)} exceeds {MAX_RANK}")
    if any(d <= 0 for d in value):
        raise bad_request(f"{where}.shape: dimensions must be positive, got {value}")
    if spec.shape and len(value) != len(spec.shape):
        raise bad_request(f"{where}.shape: the model expects rank {len(spec.shape)} {list(spec.shape)}, got {value}")
    for axis, (want, got) in enumerate(zip(spec.shape, value, strict=False)):
        if want not in (-1, got):
            raise bad_request(
                f"{where}.shape: dimension {axis} must be {want} (model shape {list(spec.shape)}), got {got}"
            )
    return tuple(value)


def decode_data(data: Any, shape: tuple[int, ...], spec: TensorSpec, where: str, field: str = "") -> np.ndarray:
    """Flat or nested ``data`` → a numpy array of the model's dtype and the declared shape.

    ``field`` names the values in messages (default ``<where>.data``; the gRPC API names its typed
    contents); it is only spelled out for an error, as this runs for every input of every request.
    """
    if type(data) is not list:
        raise bad_request(f"{field or where + '.data'}: expected a list, got {_json_type(data)}")
    types = set(map(type, data))
    if list in types:
        flat: list[Any] = []
        _collect(data, shape, 0, field or f"{where}.data", flat)
        types = set(map(type, flat))
    else:
        flat = data
    expected = math.prod(shape)
    if len(flat) != expected:
        raise bad_request(f"{field or where + '.data'}: shape {list(shape)} needs {expected} elements, got {len(flat)}")
    kind = spec.datatype.kind
    bad = types - _ALLOWED_ELEMENTS[kind]
    if bad:
        got = ", ".join(sorted(_JSON_TYPE_NAMES.get(t, "null" if t is type(None) else "list") for t in bad))
        raise bad_request(f"{field or where + '.data'}: {spec.datatype.v2} expects {_KIND_NAMES[kind]}, got {got}")
    if kind == "float" and not _within_float_range(flat, spec):
        limit = spec.datatype.v2
        raise bad_request(f"{field or where + '.data'}: values must be finite and within the range of {limit}")
    try:
        array = np.array(flat, dtype=spec.datatype.dtype)
    except (OverflowError, ValueError):
        raise bad_request(f"{field or where + '.data'}: a value is out of range for {spec.datatype.v2}") from None
    return array.reshape(shape)


def _within_float_range(flat: list[Any], spec: TensorSpec) -> bool:
    """JSON numbers are finite doubles (orjson rejects NaN/Infinity) but may overflow FP32/FP16.

    Small tensors are checked in Python (cheaper than a numpy round trip on the hot path). NaN
    (possible in gRPC typed contents, never in JSON) compares false with everything, so it is
    refused by asking for ``largest <= limit`` rather than refusing ``largest > limit``.
    """
    if not flat:
        return True
    if len(flat) <= _PY_CHECK_MAX:
        largest = max(map(abs, flat))
    else:
        largest = float(np.abs(np.asarray(flat, dtype=np.float64)).max())
    return bool(largest <= _FLOAT_LIMITS[spec.datatype.v2])


def _collect(node: Any, shape: tuple[int, ...], depth: int, where: str, out: list[Any]) -> None:
    if depth == len(shape):
        if type(node) is list:
            raise bad_request(f"{where}: nested deeper than the shape {list(shape)}")
        out.append(node)
        return
    if type(node) is not list or len(node) != shape[depth]:
        raise bad_request(f"{where}: nesting does not match the shape {list(shape)} at depth {depth}")
    if depth == len(shape) - 1:
        if any(type(v) is list for v in node):
            raise bad_request(f"{where}: nested deeper than the shape {list(shape)}")
        out.extend(node)
        return
    for child in node:
        _collect(child, shape, depth + 1, where, out)


def requested_outputs(
    payload: dict[str, Any], model: OnnxModel, params: dict[str, Any]
) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    """Names from the optional ``outputs`` list (None = all outputs), and those to send as binary data.

    As in Triton: ``parameters.binary_data_output`` asks for every output as binary data, an output's
    own ``parameters.binary_data`` overrides it (the first mention of a repeated name counts).
    """
    every = params.get("binary_data_output", False)
    if type(every) is not bool:  # inline rather than _flag: every JSON request passes here
        raise bad_request(f"parameters.binary_data_output: expected a boolean, got {_json_type(every)}")
    items = payload.get("outputs")
    if items is None:
        return None, frozenset(model.output_names) if every else _NO_BINARY
    if not isinstance(items, list):
        raise bad_request(f"outputs: expected a list, got {_json_type(items)}")
    names: list[str] = []
    binary_names: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise bad_request(f"outputs[{index}].name: expected a string")
        if name not in model.output_by_name:
            known = ", ".join(repr(n) for n in model.output_names)
            raise bad_request(f"outputs[{index}].name: unknown output {name!r}; the model's outputs are {known}")
        output_params = item.get("parameters")
        wanted = every
        if isinstance(output_params, dict) and "binary_data" in output_params:
            wanted = _flag(output_params, "binary_data", f"outputs[{index}].parameters")
        if name not in names:
            names.append(name)
            if wanted:
                binary_names.add(name)
    if not names:
        return None, frozenset(model.output_names) if every else _NO_BINARY
    return tuple(names), frozenset(binary_names)


def _flag(params: dict[str, Any], key: str, where: str) -> bool:
    """A boolean parameter (absent = false); anything but true/false is a 400, as in Triton."""
    value = params.get(key, False)
    if type(value) is not bool:
        raise bad_request(f"{where}.{key}: expected a boolean, got {_json_type(value)}")
    return value


def batch_rows(feeds: dict[str, np.ndarray]) -> int:
    """Rows in the request: the first dimension of the first input (1 for scalars)."""
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def find_non_finite(outputs: dict[str, np.ndarray]) -> str | None:
    """Name of the first floating output holding NaN or ±inf (a model fault), else None.

    Small outputs (a few rows' scores) are checked in Python: ``math.isfinite`` over ``tolist()``
    costs a quarter of numpy's ufunc and reduction for an array of two values.
    """
    for name, array in outputs.items():
        if array.dtype.kind != "f":
            continue
        if array.size <= _PY_FINITE_MAX:
            if not all(map(math.isfinite, array.ravel().tolist())):
                return name
        elif not np.isfinite(array).all():
            return name
    return None


def encode_response(
    model_name: str,
    version: str,
    request_id: str,
    outputs: dict[str, np.ndarray],
    names: tuple[str, ...] | None,
    token: str | None = None,
) -> bytes:
    """Serialise the V2 response with flat, row-major ``data`` (numpy arrays go straight to orjson).

    A prediction token goes into the response's ``parameters`` (the V2 place for extensions), as
    ``parameters.prediction_token``.
    """
    selected = names if names is not None else tuple(outputs)
    response: dict[str, Any] = {"model_name": model_name, "model_version": version, "id": request_id}
    if token is not None:
        response["parameters"] = {"prediction_token": token}
    response["outputs"] = [_encode_tensor(name, outputs[name]) for name in selected]
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_binary_response(
    model_name: str,
    version: str,
    request_id: str,
    outputs: dict[str, np.ndarray],
    names: tuple[str, ...] | None,
    binary_names: frozenset[str],
    token: str | None = None,
) -> tuple[bytes, int]:
    """The response of the binary tensor data extension: ``(JSON part + tensor bytes, JSON length)``.

    The JSON part is :func:`encode_response`'s, except that outputs in ``binary_names`` carry
    ``parameters.binary_data_size`` instead of ``data``; their bytes follow in the same order.
    """
    selected = names if names is not None else tuple(outputs)
    response: dict[str, Any] = {"model_name": model_name, "model_version": version, "id": request_id}
    if token is not None:
        response["parameters"] = {"prediction_token": token}
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name in selected:
        if name in binary_names:
            array = outputs[name]
            chunk = binary.encode_tensor(array)
            chunks.append(chunk)
            tensors.append({"name": name, "datatype": datatypes.from_numpy(array.dtype).v2,
                            "shape": list(array.shape), "parameters": {"binary_data_size": len(chunk)}})  # fmt: skip
        else:
            tensors.append(_encode_tensor(name, outputs[name]))
    response["outputs"] = tensors
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([head, *chunks]), len(head)


def _encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = datatypes.from_numpy(array.dtype)
    if datatype.kind == "bytes":
        data: Any = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    elif datatype.v2 == "FP16":  # orjson serialises no float16
        data = array.astype(np.float32).ravel()
    else:
        data = array.ravel()  # always C-contiguous (a copy when the array is not), as orjson needs
    return {"name": name, "datatype": datatype.v2, "shape": list(array.shape), "data": data}


def error_json(error: ApiError) -> bytes:
    return orjson.dumps(error.body())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "list"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
