"""The FastAPI application: Open Inference Protocol (V2) routes, feedback, health and metrics.

Why handlers take the raw ``Request``: bodies are validated by :mod:`modelserver.codec` (strict,
field-named 400s, never FastAPI's 422) and every response is pre-serialised bytes. Each handler
records exactly one ``modelserver_requests_total`` increment with its endpoint and status class;
infer requests that reach the model are also timed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from . import __version__
from .codec import encode_response, parse_json_object
from .config import Settings
from .errors import ApiError
from .feedback_api import handle_feedback
from .http_io import JSON, error_response, json_response, read_body
from .inference import decode_infer
from .metrics import ServerMetrics
from .openapi import install_openapi, route_docs
from .runtime import Runtime
from .startup import Loader
from .state import Phase, ServerState

log = logging.getLogger("modelserver.app")
PLATFORM = "onnx_onnxv1"
EXTENSIONS = ["feedback", "named_features"]


class ModelServer:
    """Request handling bound to one :class:`Settings` and one :class:`ServerState`."""

    def __init__(self, settings: Settings, state: ServerState) -> None:
        self.settings = settings
        self.state = state

    # -- resolution ---------------------------------------------------------------------------
    def resolve(self, name: str, version: str | None, need_ready: bool) -> Runtime:
        """404 for another model or version, 503 while not loaded / not ready (with the reason)."""
        if name != self.settings.model_name:
            raise ApiError(404, f"unknown model {name[:100]!r}; this server serves {self.settings.model_name!r}")
        runtime = self.state.runtime
        if version is not None and version != (runtime.version if runtime else self.settings.revision):
            raise ApiError(404, f"unknown version {version[:100]!r} of model {name!r}")
        if runtime is None or (need_ready and not self.state.ready):
            raise ApiError(503, f"model {name!r} is not ready: {self.state.reason}", **self.state.describe())
        return runtime

    def count(self, endpoint: str, status: int) -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.record_request(endpoint, status)

    async def answer(self, endpoint: str, produce: Callable[[], Awaitable[Response]]) -> Response:
        """Run a handler body, turning :class:`ApiError` into its JSON answer, and count it."""
        try:
            response = await produce()
        except ApiError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error", extra={"endpoint": endpoint})
            response = error_response(ApiError(500, "internal server error"))
        self.count(endpoint, response.status_code)
        return response

    # -- infer --------------------------------------------------------------------------------
    async def infer(self, request: Request, name: str, version: str | None) -> Response:
        status, content = await self.infer_raw(request.scope, request.receive, name, version)
        return Response(content, status_code=status, media_type=JSON)

    async def infer_raw(self, scope: Scope, receive: Receive, name: str, version: str | None) -> tuple[int, bytes]:
        """The whole infer request → ``(status, JSON bytes)``; used by the fast path and the FastAPI route."""
        started = time.perf_counter()
        runtime: Runtime | None = None
        reached_model = False
        try:
            runtime = self.resolve(name, version, need_ready=True)
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            req = decode_infer(parse_json_object(body), runtime, self.settings.max_batch_size)
            reached_model = True
            gauge = runtime.metrics.inflight_child
            gauge.inc()
            try:
                outputs = await runtime.run(req.feeds, req.rows)
            finally:
                gauge.dec()
            runtime.check_outputs(outputs)
            runtime.record(req.id, outputs)
            content = encode_response(name, runtime.version, req.id, outputs, req.outputs)
            status = 200
        except ApiError as exc:
            status, content = exc.status, error_response(exc).body
        except Exception:
            log.exception("unhandled error", extra={"endpoint": "infer"})
            status, content = 500, b'{"error":"internal server error"}'
        elapsed = time.perf_counter() - started
        self.count("infer", status)
        if runtime is not None:
            if reached_model:
                runtime.metrics.observe_latency(elapsed)
            if status == 200 and runtime.predlog.sampled():
                runtime.predlog.write(req.id, elapsed, outputs, req.feeds)
        return status, content

    async def feedback(self, request: Request, name: str, version: str | None) -> Response:
        async def produce() -> Response:
            runtime = self.resolve(name, version, need_ready=False)
            body = await read_body(request.scope, request.receive, self.settings.max_body_bytes)
            status, payload = handle_feedback(parse_json_object(body), runtime, self.settings.max_batch_size)
            return json_response(payload, status)

        return await self.answer("feedback", produce)

    # -- metadata and health ------------------------------------------------------------------
    async def model_metadata(self, name: str, version: str | None) -> Response:
        async def produce() -> Response:
            return json_response(self.describe_model(self.resolve(name, version, need_ready=False)))

        return await self.answer("model_metadata", produce)

    def describe_model(self, runtime: Runtime) -> dict[str, Any]:
        meta = runtime.metadata
        features = [
            {"name": f.name, "type": f.kind, **({"categories": list(f.categories)} if f.categories else {}),
             "imputed": f.imputable}
            for f in meta.features
        ]  # fmt: skip
        return {
            "name": self.settings.model_name,
            "versions": [runtime.version],
            "platform": PLATFORM,
            "inputs": [t.metadata() for t in runtime.model.inputs],
            "outputs": [t.metadata() for t in runtime.model.outputs],
            "parameters": {
                "revision": runtime.version,
                "sha256": runtime.sha256,
                "classes": list(meta.classes),
                "features": features,
                "state": self.state.phase.value,
            },
        }

    async def model_ready(self, name: str, version: str | None) -> Response:
        async def produce() -> Response:
            self.resolve(name, version, need_ready=True)
            return json_response({"name": name, "ready": True})

        return await self.answer("model_ready", produce)

    async def server_ready(self) -> Response:
        async def produce() -> Response:
            if not self.state.ready:
                raise ApiError(503, f"not ready: {self.state.reason}", ready=False, **self.state.describe())
            return json_response({"ready": True})

        return await self.answer("server_ready", produce)

    async def server_live(self) -> Response:
        self.count("server_live", 200)
        return json_response({"live": True})

    async def server_metadata(self) -> Response:
        self.count("server_metadata", 200)
        return json_response({"name": "modelserver", "version": __version__, "extensions": EXTENSIONS})

    async def metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        self.count("metrics", 200)
        metrics: ServerMetrics | None = self.state.metrics
        return Response(metrics.exposition() if metrics else b"", media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, state: ServerState | None = None, start_loader: bool = True) -> FastAPI:
    """Build the app; the model loads in a background thread started by the lifespan."""
    state = state or ServerState()
    if state.metrics is None and settings.revision:
        state.metrics = ServerMetrics(settings.model_name, settings.revision)
    server = ModelServer(settings, state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_loader and state.phase is Phase.LOADING and state.runtime is None:
            Loader(settings, state, state.metrics).start()
        yield
        runtime = state.runtime
        if runtime is not None and runtime.executor is not None:
            runtime.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="modelserver",
        version=__version__,
        description="V2 inference server for one ONNX model, with feedback and named features.",
        lifespan=lifespan,
    )
    app.state.server = server
    _add_routes(app, server)
    _add_error_handlers(app, server)
    install_openapi(app)
    return app


def _add_routes(app: FastAPI, s: ModelServer) -> None:
    docs = route_docs

    @app.get("/v2", **docs("server_metadata"))
    async def server_metadata() -> Response:
        return await s.server_metadata()

    @app.get("/v2/health/live", **docs("server_live"))
    async def live() -> Response:
        return await s.server_live()

    @app.get("/v2/health/ready", **docs("server_ready"))
    async def ready() -> Response:
        return await s.server_ready()

    @app.get("/v2/models/{name}", **docs("model_metadata"))
    async def model_metadata(name: str) -> Response:
        return await s.model_metadata(name, None)

    @app.get("/v2/models/{name}/versions/{version}", **docs("model_metadata"))
    async def model_version_metadata(name: str, version: str) -> Response:
        return await s.model_metadata(name, version)

    @app.get("/v2/models/{name}/ready", **docs("model_ready"))
    async def model_ready(name: str) -> Response:
        return await s.model_ready(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready", **docs("model_ready"))
    async def model_version_ready(name: str, version: str) -> Response:
        return await s.model_ready(name, version)

    @app.post("/v2/models/{name}/infer", **docs("infer"))
    async def infer(name: str, request: Request) -> Response:
        return await s.infer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer", **docs("infer"))
    async def version_infer(name: str, version: str, request: Request) -> Response:
        return await s.infer(request, name, version)

    @app.post("/v2/models/{name}/feedback", **docs("feedback"))
    async def feedback(name: str, request: Request) -> Response:
        return await s.feedback(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/feedback", **docs("feedback"))
    async def version_feedback(name: str, version: str, request: Request) -> Response:
        return await s.feedback(request, name, version)

    @app.get("/metrics", **docs("metrics"))
    async def metrics() -> Response:
        return await s.metrics()


def _add_error_handlers(app: FastAPI, s: ModelServer) -> None:
    """Unknown paths, wrong methods and framework validation all answer ``{"error": ...}``."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        s.count("unknown", exc.status_code)
        response = error_response(ApiError(exc.status_code, f"{message}: {request.method} {request.url.path}"))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        s.count("unknown", 400)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(ApiError(400, f"{where}: {first.get('msg', 'invalid request')}"))
