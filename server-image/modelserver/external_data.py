"""ONNX external data: the weight files a large model keeps beside its graph, found and fetched.

Why: a protobuf message cannot exceed 2 GiB, so every large ONNX model (and many exported from
PyTorch or Hugging Face Optimum) stores its initializers in separate files, named by each tensor's
``external_data`` ``location`` relative to the graph file. A model directory is therefore the graph
file, its data files and ``metadata.json``; the model URI names the graph file and the rest are its
siblings, fetched through the same loader (so every scheme, credential and retry rule applies, and
an ``oci://`` artifact's data files are layers whose digests are checked).

The locations are read straight from the protobuf wire format: the ``onnx`` package is not a
runtime dependency of the server, and only a handful of fields matter (ModelProto.graph ->
GraphProto.initializer / sparse_initializer / node attributes and their subgraphs -> TensorProto
``external_data`` and ``data_location``). Field numbers are those of onnx.proto3, which ONNX never
renumbers.

A location is a path relative to the graph file's directory; absolute paths, ``..`` and backslashes
are refused (a model file must never make the server read or write outside its own directory).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .errors import LoadError
from .loader import FetchPolicy, NotFoundError, fetch, normalise_uri, sibling_uri

# onnx.proto3 field numbers.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_MAX_DEPTH = 64  # subgraphs nest (If/Loop bodies); a deeper model is refused, not recursed into

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def locations(model: bytes) -> list[str]:
    """The distinct external-data files ``model`` names, in the order it names them; [] for a model
    with all its weights inside, and for bytes that are no protobuf at all (onnxruntime then says
    what is wrong with them, as for any invalid model). A :class:`LoadError` for an unsafe location."""
    try:
        found = [loc for graph in _fields(memoryview(model), _MODEL_GRAPH) for loc in _graph(graph, 0)]
    except _MalformedError:
        return []
    unique = list(dict.fromkeys(found))
    for location in unique:
        check_location(location)
    return unique


def check_location(location: str) -> None:
    """Refuse anything but a plain relative path below the graph file's directory."""
    path = PurePosixPath(location)
    if not location or "\\" in location or "\x00" in location or path.is_absolute() or ".." in path.parts:
        raise LoadError(
            f"the model names external data at {location!r}: only a relative path below the model file's "
            "directory is allowed (no '..', no absolute path)"
        )


@contextlib.contextmanager
def directory(model_uri: str, names: list[str], policy: FetchPolicy) -> Iterator[Path | None]:
    """A local directory holding ``names`` for onnxruntime to read while it builds the session.

    A ``file://`` model (``pvc://`` is one in the pod) is read in place: its directory already holds
    them, and copying gigabytes would double the disk and the start-up time. Any other scheme's
    files are fetched beside each other into a temporary directory (``$TMPDIR``, the pod's scratch
    volume), one at a time, each capped like the model file, and removed when the session is built:
    onnxruntime has the weights in memory (or mapped) by then."""
    if not names:
        yield None
        return
    uri = normalise_uri(model_uri)
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path)).parent
        missing = [name for name in names if not (local / name).is_file()]
        if missing:
            raise LoadError(f"{uri} names external data {', '.join(missing)}, which is not beside it in {local}")
        yield local
        return
    scratch = Path(tempfile.mkdtemp(prefix="model-data-"))
    try:
        for name in names:
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(fetch(sibling_uri(model_uri, name), policy))
            except NotFoundError as exc:
                raise LoadError(f"the model's external data {name!r} was not found beside it: {exc}") from None
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _MalformedError(ValueError):
    """The bytes do not parse as protobuf."""


def _graph(graph: memoryview, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise _MalformedError(f"subgraphs nested deeper than {_MAX_DEPTH}")
    for tensor in _fields(graph, _GRAPH_INITIALIZER):
        yield from _tensor(tensor)
    for sparse in _fields(graph, _GRAPH_SPARSE_INITIALIZER):
        yield from _sparse(sparse)
    for node in _fields(graph, _GRAPH_NODE):
        for attribute in _fields(node, _NODE_ATTRIBUTE):
            yield from _attribute(attribute, depth)


def _attribute(attribute: memoryview, depth: int) -> Iterator[str]:
    for number, value in _iterate(attribute):
        if not isinstance(value, memoryview):
            continue
        if number in (_ATTR_T, _ATTR_TENSORS):
            yield from _tensor(value)
        elif number in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
            yield from _sparse(value)
        elif number in (_ATTR_G, _ATTR_GRAPHS):
            yield from _graph(value, depth + 1)


def _sparse(sparse: memoryview) -> Iterator[str]:
    for number in (_SPARSE_VALUES, _SPARSE_INDICES):
        for tensor in _fields(sparse, number):
            yield from _tensor(tensor)


def _tensor(tensor: memoryview) -> Iterator[str]:
    external, location = False, None
    for number, value in _iterate(tensor):
        if number == _TENSOR_DATA_LOCATION and value == _EXTERNAL:
            external = True
        elif number == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            entry = {n: bytes(v) for n, v in _iterate(value) if isinstance(v, memoryview)}
            if entry.get(_ENTRY_KEY) == b"location":
                location = entry.get(_ENTRY_VALUE, b"").decode("utf-8", "replace")
    if external:
        if location is None:
            raise _MalformedError("a tensor stored externally names no location")
        yield location


def _fields(message: memoryview, wanted: int) -> Iterator[memoryview]:
    """The length-delimited values of field ``wanted``."""
    for number, value in _iterate(message):
        if number == wanted and isinstance(value, memoryview):
            yield value


def _iterate(message: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of each field: an int for varints, a view for length-delimited ones
    (fixed-width fields are skipped as ints: none of the ones read here is fixed-width)."""
    pos, end = 0, len(message)
    while pos < end:
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _MalformedError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(message, pos)
            yield number, value
        elif wire == _LEN:
            length, pos = _varint(message, pos)
            if pos + length > end:
                raise _MalformedError("a field runs past the end of its message")
            yield number, message[pos : pos + length]
            pos += length
        elif wire in (_I64, _I32):
            pos += 8 if wire == _I64 else 4
            if pos > end:
                raise _MalformedError("a fixed-width field runs past the end of its message")
        else:
            raise _MalformedError(f"unsupported wire type {wire}")


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _MalformedError("a truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
