"""Small HTTP helpers: bounded body reading and JSON responses.

Why: the body limit must hold for chunked uploads too (no Content-Length), and every answer —
success or error — is pre-serialised bytes, so no framework encoder runs on the hot path.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .errors import ApiError

JSON = "application/json"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = _content_length(request)
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(request: Request) -> str | None:
    """Read the header straight from the ASGI scope (building ``request.headers`` costs more)."""
    for key, raw in request.scope["headers"]:
        if key == b"content-length":
            return raw.decode("latin-1")
    return None


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def error_response(error: ApiError) -> Response:
    return Response(orjson.dumps(error.body()), status_code=error.status, media_type=JSON)
