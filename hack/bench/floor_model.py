"""What both benchmark floors do per request, so they differ only in the HTTP layer around it.

``minimal_app.py`` (FastAPI) and ``raw_asgi_app.py`` (no framework) must pay for exactly the same
model work, or the gap between them would not be what FastAPI costs: the same onnxruntime session
(one intra-op and one inter-op thread, CPU only), orjson in and out (the codec ours uses), and the
V2 answer built the same way. No validation, no metrics: a malformed request raises.

``answer_binary`` is the same for the binary tensor data extension (what ``tritonclient.http``
sends: inputs as ``parameters.binary_data_size`` bytes after the JSON part, all outputs asked for
as binary with ``parameters.binary_data_output``); ``raw_grpc_app.py`` runs ``run`` for gRPC.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import orjson


class FloorModel:
    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, input_name: str, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(output name, array) for every output, in the model's order."""
        return list(zip(self.output_names, self.session.run(self.output_names, {input_name: x}), strict=True))

    def answer_binary(self, name: str, body: bytes, json_length: int) -> tuple[bytes, int]:
        """(JSON part + output bytes, JSON part's length) for a binary request whose JSON part is
        ``json_length`` bytes; every output binary (the floor assumes ``binary_data_output``)."""
        payload = orjson.loads(body[:json_length])
        tensor = payload["inputs"][0]
        size = tensor["parameters"]["binary_data_size"]
        raw = body[json_length : json_length + size]
        x = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(tensor["shape"])
        outputs, chunks = [], []
        for n, r in self.run(tensor["name"], x):
            chunk = r.astype(r.dtype.newbyteorder("<"), copy=False).tobytes()
            chunks.append(chunk)
            outputs.append({"name": n, "shape": list(r.shape), "datatype": _datatype(r),
                            "parameters": {"binary_data_size": len(chunk)}})  # fmt: skip
        head = orjson.dumps({"model_name": name, "id": payload.get("id", ""), "outputs": outputs})
        return head + b"".join(chunks), len(head)

    def answer(self, name: str, body: bytes) -> bytes:
        """The V2 answer (JSON bytes) for the first input tensor of a V2 request body."""
        payload = orjson.loads(body)
        tensor = payload["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        results = self.session.run(self.output_names, {tensor["name"]: x})
        outputs = [
            {"name": n, "shape": list(r.shape), "datatype": _datatype(r), "data": r.ravel()}
            for n, r in zip(self.output_names, results, strict=True)
        ]
        answer = {"model_name": name, "id": payload.get("id", ""), "outputs": outputs}
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def _datatype(result: np.ndarray) -> str:
    return "INT64" if result.dtype == np.int64 else "FP32"
