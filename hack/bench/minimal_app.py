"""The floor: the least a FastAPI + onnxruntime V2 handler can do (no validation, no metrics).

Why it exists: it separates what FastAPI/uvicorn cost from what our server adds. It parses with
orjson, builds the numpy input, runs the session and answers — nothing else. Run with
``python minimal_app.py MODEL_PATH PORT``.
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

MODEL_PATH, PORT = sys.argv[1], int(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(MODEL_PATH, options, providers=["CPUExecutionProvider"])
output_names = [o.name for o in session.get_outputs()]
app = FastAPI()


@app.get("/v2/models/{name}/ready")
async def ready(name: str) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request) -> Response:
    payload = orjson.loads(await request.body())
    tensor = payload["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    results = session.run(output_names, {tensor["name"]: x})
    outputs = [
        {"name": n, "shape": list(r.shape), "datatype": "INT64" if r.dtype == np.int64 else "FP32", "data": r.ravel()}
        for n, r in zip(output_names, results, strict=True)
    ]
    body = {"model_name": name, "id": payload.get("id", ""), "outputs": outputs}
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, access_log=False, log_level="warning", server_header=False)
