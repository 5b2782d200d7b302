"""Small HTTP helpers: bounded body reading and JSON (or JSON + binary tensor) responses.

Why: the body limit must hold for chunked uploads too (no Content-Length), and every answer —
success or error — is pre-serialised bytes, so no framework encoder runs on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .binary import HEADER, OCTET_STREAM
from .errors import ApiError

JSON = "application/json"

# A refused body is read and dropped up to this size and time before the 413 goes out (nginx's
# "lingering close"): a client that sends the whole body before reading the answer, as Python's
# urllib does, otherwise has its send reset by the closing socket and never sees the 413.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes.

    Reads raw ASGI messages (no Request object needed), so the fast path and FastAPI routes share it.
    """
    declared = _content_length(scope)
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            if int(declared) <= DRAIN_BYTES and not _expects_continue(scope):
                await _drain(receive, True)
            raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if not chunks and not more:
            if len(chunk) > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
            return chunk
        size += len(chunk)
        if size > limit:
            await _drain(receive, more, DRAIN_BYTES - size)
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


async def _drain(receive: Receive, more: bool, budget: int = DRAIN_BYTES) -> None:
    """Read and drop what is left of a refused body, within ``budget`` bytes and ``DRAIN_SECONDS``;
    beyond either, the connection is closed on the rest (the client gets a reset, as from nginx)."""

    async def drop() -> None:
        left, going = budget, more
        while going and left > 0:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            left -= len(message.get("body", b""))
            going = message.get("more_body", False)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drop(), DRAIN_SECONDS)


def _expects_continue(scope: Scope) -> bool:
    """The client waits for ``100 Continue`` before sending the body: reading would ask for it."""
    return any(key == b"expect" and raw.lower() == b"100-continue" for key, raw in scope["headers"])


def _content_length(scope: Scope) -> str | None:
    """Read the header straight from the ASGI scope (building ``request.headers`` costs more)."""
    for key, raw in scope["headers"]:
        if key == b"content-length":
            return raw.decode("latin-1")
    return None


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


_JSON_HEADER = (b"content-type", JSON.encode())
_BINARY_HEADER = (b"content-type", OCTET_STREAM.encode())
_JSON_LENGTH_KEY = HEADER.lower().encode()


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Answer with pre-serialised JSON straight over ASGI (no Response object on the hot path)."""
    headers = [_JSON_HEADER, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_binary(send: Send, status: int, body: bytes, json_length: int) -> None:
    """Answer with JSON followed by tensor bytes (the binary tensor data extension), as Triton does:
    ``application/octet-stream`` and the JSON part's length in ``Inference-Header-Content-Length``."""
    headers = [
        _BINARY_HEADER,
        (_JSON_LENGTH_KEY, str(json_length).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_response(error: ApiError) -> Response:
    return Response(orjson.dumps(error.body()), status_code=error.status, media_type=JSON)
