"""The Python HTTP floor: a bare ASGI callable on uvicorn (uvloop + httptools), no framework at all.

Why it exists: the minimal FastAPI handler (``minimal_app.py``) shows what FastAPI costs, but ours
answers infer requests through its own thin ASGI layer in front of FastAPI
(``server-image/modelserver/fastpath.py``), so beating that floor says little. This handler does the
least any Python server behind uvicorn can do for the same request: read the body from the ASGI
messages, parse it with orjson (the codec ours uses), run the same onnxruntime session (one intra-op
thread), serialise with orjson and send two ASGI messages; the model work is ``floor_model.py``,
the same code the minimal handler runs. No routing table, no middleware (run with
``--no-proxy-headers``, so uvicorn adds none either), no validation, no metrics. What is left per
request is uvicorn's httptools protocol on the uvloop transport plus the JSON, numpy and
``session.run`` work; ours as a fraction of it is what its layers and features cost.

A request with the ``Inference-Header-Content-Length`` header is taken as the binary tensor data
extension's and answered with every output binary (``FloorModel.answer_binary``), so the floor
serves the benchmark's binary mode too.

A malformed request raises, and uvicorn answers 500, as the minimal handler's does: the floor pays
for no validation. Started by ``run.py`` through uvicorn's command line, with the model path in
``BENCH_MODEL``::

    BENCH_MODEL=examples/models/baseline.onnx python -m uvicorn raw_asgi_app:app --app-dir hack/bench \\
        --loop uvloop --http httptools --interface asgi3 --lifespan off --no-proxy-headers --port 8000
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from floor_model import FloorModel  # beside this file: uvicorn's --app-dir puts it on sys.path

# The ASGI types, spelled out here so that not even Starlette is imported.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/v2/models/"
JSON_HEADER = (b"content-type", b"application/json")
BINARY_HEADER = (b"content-type", b"application/octet-stream")
INFERENCE_HEADER = b"inference-header-content-length"
READY = b'{"ready":true}'
NOT_FOUND = b'{"error":"not found"}'


# Loaded at import, before uvicorn binds the port: the readiness URL answers only once the model is in.
model = FloorModel(os.environ["BENCH_MODEL"])


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``POST /v2/models/<name>/infer`` and ``GET /v2/models/<name>/ready``; 404 otherwise.

    Any model name is accepted, as by the minimal handler. Scopes other than ``http`` are ignored
    (uvicorn runs it with ``--lifespan off`` and without websockets in the benchmark).
    """
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path.startswith(PREFIX):
        name, _, action = path[len(PREFIX) :].partition("/")
        if action == "infer" and scope["method"] == "POST":
            length = next((int(v) for k, v in scope["headers"] if k == INFERENCE_HEADER), None)
            if length is None:
                await respond(send, 200, model.answer(name, await read_body(receive)))
            else:
                body, head = model.answer_binary(name, await read_body(receive), length)
                await respond(send, 200, body, [BINARY_HEADER, (INFERENCE_HEADER, str(head).encode())])
            return
        if action == "ready" and scope["method"] == "GET":
            await respond(send, 200, READY)
            return
    await respond(send, 404, NOT_FOUND)


async def read_body(receive: Receive) -> bytes:
    """The whole request body: the first message for a small body (the benchmark's case), else the
    joined chunks. No size limit: the floor does not pay for one."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Two ASGI messages with pre-serialised JSON, the same shape ours sends (``http_io.send_json``)."""
    headers = [*(headers or [JSON_HEADER]), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
