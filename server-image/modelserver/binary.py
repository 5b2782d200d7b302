"""The Open Inference Protocol's binary tensor data extension, as NVIDIA Triton and KServe implement it.

Why: clients such as ``tritonclient.http`` send tensors as raw bytes after the JSON request (and ask
for outputs the same way) because JSON numbers cost far more to write, send and parse than the
bytes they stand for. The body is then ``<JSON header><tensor bytes>…``, the request header
``Inference-Header-Content-Length`` gives the JSON part's length, and each binary input has
``parameters.binary_data_size`` instead of ``data``, its bytes following in the order of ``inputs``.
Tensors are little-endian and row-major; a BOOL is one byte (0 or 1); a BYTES element is a 4-byte
little-endian length and that many bytes.

This module only turns bytes into arrays and back and reads the header; :mod:`modelserver.codec`
decides *which* tensors are binary. Decoding is as strict as the JSON path: a size that does not
fit the shape and datatype, bytes left over or missing, NaN/±inf, a BOOL byte other than 0/1 and
BYTES elements that are not UTF-8 are all 400s naming the field, and the arrays handed on are
fresh, aligned and native (never views of the body), exactly like those the JSON path builds.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from starlette.types import Scope

from .errors import bad_request, short_repr
from .model import TensorSpec

HEADER = "Inference-Header-Content-Length"
"""The request and response header carrying the length of the body's JSON part."""
OCTET_STREAM = "application/octet-stream"
"""The content type of a response carrying binary tensors (as Triton answers)."""
_HEADER_KEY = HEADER.lower().encode()
_MAX_HEADER_DIGITS = 18
"""Longer values cannot be a body length (and ``int()`` of thousands of digits is refused)."""
_LENGTH = struct.Struct("<I")


def header_length(scope: Scope) -> int | None:
    """The ``Inference-Header-Content-Length`` of an ASGI request, or None when it is absent.

    Read straight from the scope (ASGI lowercases header names), as :mod:`modelserver.http_io`
    reads ``Content-Length``: building ``request.headers`` would cost every JSON request more.
    """
    found: bytes | None = None
    for key, raw in scope["headers"]:
        if key == _HEADER_KEY:
            if found is not None:
                raise bad_request(f"{HEADER} header: given more than once")
            found = raw
    if found is None:
        return None
    value = found.strip()
    if not value.isdigit():  # bytes.isdigit: ASCII digits only, so no sign, space or fraction
        shown = value[:40].decode("latin-1")
        raise bad_request(f"{HEADER} header: expected the JSON part's length in bytes (an integer), got {shown!r}")
    if len(value) > _MAX_HEADER_DIGITS:
        raise bad_request(f"{HEADER} header: a length of {len(value)} digits exceeds any body")
    return int(value)


def split_body(body: bytes, length: int) -> tuple[memoryview, BinaryData]:
    """The JSON part and the tensor bytes that follow it (views of ``body``: no copy)."""
    if length > len(body):
        raise bad_request(f"{HEADER} header: {length} exceeds the body's length of {len(body)} bytes")
    if length == 0:
        raise bad_request(
            f"{HEADER} header: 0 (a raw binary request without a JSON part) is not supported; "
            "send the JSON inference request first and give its length"
        )
    view = memoryview(body)
    return view[:length], BinaryData(view[length:])


class BinaryData:
    """The tensor bytes after the JSON part, handed out to binary inputs in the order of ``inputs``."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, field: str) -> memoryview:
        """The next ``size`` bytes; 400 naming ``field`` when fewer are left."""
        left = len(self.data) - self.offset
        if size > left:
            raise bad_request(
                f"{field}: {size} bytes, but only {left} bytes of binary data are left after the JSON part "
                f"({len(self.data)} in all, {self.offset} taken by earlier inputs)"
            )
        start = self.offset
        self.offset += size
        return self.data[start : self.offset]

    def finish(self) -> None:
        """Every byte must belong to an input: a surplus means sizes and body disagree."""
        left = len(self.data) - self.offset
        if left:
            raise bad_request(
                f"binary data: {left} bytes after the JSON part belong to no input (the inputs' "
                f"parameters.binary_data_size add up to {self.offset} of {len(self.data)} bytes)"
            )


def decode_tensor(
    size: Any, shape: tuple[int, ...], spec: TensorSpec, where: str, data: BinaryData | None
) -> np.ndarray:
    """Input ``where`` sent as ``size`` binary bytes → an array of the model's dtype and ``shape``."""
    field = f"{where}.parameters.binary_data_size"
    if data is None:
        raise bad_request(f"{field}: binary tensor data needs the {HEADER} header (the length of the JSON part)")
    if type(size) is not int or size < 0:
        raise bad_request(f"{field}: expected a non-negative integer, got {short_repr(size)}")
    check_size(size, shape, spec, field)  # before taking, as a wrong size is the clearer message
    return decode_raw(data.take(size, field), shape, spec, where, field)


def decode_raw(raw: memoryview | bytes, shape: tuple[int, ...], spec: TensorSpec, where: str, field: str) -> np.ndarray:
    """One tensor's raw bytes → an array of the model's dtype and ``shape``; ``field`` names the bytes.

    Shared with the gRPC API's ``raw_input_contents``, which uses the same byte layout.
    """
    check_size(len(raw), shape, spec, field)
    count = math.prod(shape)
    if spec.datatype.kind == "bytes":
        return _decode_strings(raw, count, where, field).reshape(shape)
    if spec.datatype.kind == "bool":
        return _decode_bools(raw, where).reshape(shape)
    dtype = spec.datatype.dtype
    # A copy, not a view of the body: the bytes sit at any offset (unaligned) and are read-only.
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    if spec.datatype.kind == "float" and not np.isfinite(array).all():
        index = int(np.flatnonzero(~np.isfinite(array))[0])
        raise bad_request(f"{where} binary data: values must be finite, element {index} is {array[index]}")
    return array.reshape(shape)


def check_size(size: int, shape: tuple[int, ...], spec: TensorSpec, field: str) -> None:
    """``size`` bytes must fit ``shape``: exactly for fixed-size datatypes, a lower bound for BYTES."""
    count = math.prod(shape)
    if spec.datatype.kind == "bytes":
        if size < 4 * count:
            raise bad_request(
                f"{field}: shape {list(shape)} of BYTES needs at least {4 * count} bytes "
                f"(a 4-byte length per element), got {size}"
            )
        return
    need = count * spec.datatype.dtype.itemsize
    if size != need:
        raise bad_request(f"{field}: shape {list(shape)} of {spec.datatype.v2} needs {need} bytes, got {size}")


def _decode_bools(raw: memoryview | bytes, where: str) -> np.ndarray:
    octets = np.frombuffer(raw, dtype=np.uint8)
    if octets.size and octets.max() > 1:
        index = int(np.flatnonzero(octets > 1)[0])
        raise bad_request(f"{where} binary data: a BOOL is one byte 0 or 1, element {index} is {octets[index]}")
    return octets.astype(np.bool_)


def _decode_strings(raw: memoryview | bytes, count: int, where: str, field: str) -> np.ndarray:
    """``count`` length-prefixed UTF-8 elements filling ``raw`` exactly → an object array of str.

    Strings, as the JSON path gives onnxruntime; bytes that are not UTF-8 could not be sent as JSON
    either, so they are refused rather than passed on in some other form.
    """
    out = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for index in range(count):
        if end - offset < 4:
            raise bad_request(f"{where} binary data: element {index} of {count} is cut off (no 4-byte length)")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if length > end - offset:
            raise bad_request(
                f"{where} binary data: element {index} claims {length} bytes, only {end - offset} are left"
            )
        try:
            out[index] = str(raw[offset : offset + length], "utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"{where} binary data: element {index} is not valid UTF-8") from None
        offset += length
    if offset != end:
        raise bad_request(f"{field}: {end - offset} bytes are left after the last element")
    return out


def encode_tensor(array: np.ndarray) -> bytes:
    """An output's bytes as the extension defines them (little-endian, row-major; BYTES length-prefixed)."""
    if array.dtype.kind in "OUS":
        return _encode_strings(array)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _encode_strings(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for value in array.ravel().tolist():
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)
