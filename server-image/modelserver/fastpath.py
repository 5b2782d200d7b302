"""A thin ASGI layer in front of FastAPI that answers infer requests directly.

Why: for a small tabular model, the framework costs far more than the model. Per request FastAPI
and Starlette build a Request, run the middleware stack (error, exception and exit-stack
middleware), match every route in turn and solve dependencies — about as much CPU as validating
the input, running onnxruntime and recording all the gate metrics together. ``POST
/v2/models/{name}[/versions/{v}]/infer`` is by far the hottest route, so it skips that machinery and
calls the very same handler (:meth:`ModelServer.infer_raw`) that the FastAPI route calls. Every
other path — metadata, health, feedback, metrics, ``/openapi.json`` and all error answers for
unknown paths — is served by FastAPI unchanged. ``docs/benchmarks.md`` shows what it buys.

uvicorn's proxy-headers middleware (``X-Forwarded-For``/``-Proto`` of trusted proxies rewrite the
scope's ``client`` and ``scheme``) sits between the two (:func:`serving_app`): the infer handler
reads neither, so infer requests skip it too, while every route behind it sees the scope exactly as
when uvicorn wrapped the whole app.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

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
                (status, body, json_length), count = await self.server.infer_raw(scope, receive, match[1], match[2])
                try:
                    if json_length is None:
                        await send_json(send, status, body)
                    else:
                        await send_binary(send, status, body, json_length)
                finally:
                    count()  # once the answer is on its way (ModelServer.answer_infer says why)
                return
        await self.app(scope, receive, send)


def serving_app(app: ASGIApp, server: ModelServer, fast_path: bool, trusted_proxies: list[str] | str) -> ASGIApp:
    """What uvicorn serves (started with ``proxy_headers=False``): ``app`` behind uvicorn's
    proxy-headers middleware trusting ``trusted_proxies`` (uvicorn's ``forwarded_allow_ips``), with
    the infer fast path in front when ``fast_path`` is on."""
    # uvicorn spells the ASGI callable with its own (narrower) types; it is the same protocol
    proxied = cast(ASGIApp, ProxyHeadersMiddleware(app, trusted_hosts=trusted_proxies))  # type: ignore[arg-type]
    return InferFastPath(proxied, server) if fast_path else proxied
