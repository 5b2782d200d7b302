"""The floor: the least a FastAPI + onnxruntime V2 handler can do (no validation, no metrics).

Why it exists: it separates what FastAPI/uvicorn cost from what our server adds. It parses with
orjson, builds the numpy input, runs the session and answers — nothing else (``floor_model.py``,
shared with the raw ASGI floor). Run with
``python minimal_app.py MODEL_PATH PORT``.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request, Response
from floor_model import FloorModel  # beside this file: run as a script, its directory is on sys.path

MODEL_PATH, PORT = sys.argv[1], int(sys.argv[2])
model = FloorModel(MODEL_PATH)
app = FastAPI()


@app.get("/v2/models/{name}/ready")
async def ready(name: str) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request) -> Response:
    return Response(model.answer(name, await request.body()), media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, access_log=False, log_level="warning", server_header=False)
