"""A thin ASGI layer in front of FastAPI that answers infer requests directly.

Why: for a small tabular model, the framework costs far more than the model. Per request FastAPI
and Starlette build a Request, run the middleware stack (error, exception and exit-stack
middleware), match every route in turn and solve dependencies — about as much CPU as validating
the input, running onnxruntime and recording all the gate metrics together. ``POST
/v2/models/{name}[/versions/{v}]/infer`` is by far the hottest route, so it skips that machinery and
calls the very same handler (:meth:`ModelServer.infer_raw`) that the FastAPI route calls. Every
other path — metadata, health, feedback, metrics, ``/openapi.json`` and all error answers for
unknown paths — is served by FastAPI unchanged. ``docs/benchmarks.md`` shows what it buys.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from .http_io import send_binary, send_json

if TYPE_CHECKING:
    from .handlers import ModelServer

_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


class InferFastPath:
    """Route ``POST .../infer`` to the handler directly; delegate everything else to ``app``."""

    def __init__(self, app: ASGIApp, server: ModelServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER.fullmatch(scope["path"])
            if match is not None:
                status, body, json_length = await self.server.infer_raw(scope, receive, match[1], match[2])
                if json_length is None:
                    await send_json(send, status, body)
                else:
                    await send_binary(send, status, body, json_length)
                return
        await self.app(scope, receive, send)
