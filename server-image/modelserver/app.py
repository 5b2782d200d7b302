"""The FastAPI application: routes for the Open Inference Protocol (V2), feedback, health and metrics.

Why so thin: handlers live in :mod:`modelserver.handlers` (shared with the infer fast path); this
module wires routes, the OpenAPI description, ``{"error": ...}`` answers for unknown paths and
methods, and the lifespan that starts the background loader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .config import Settings
from .errors import ApiError
from .handlers import ModelServer
from .http_io import error_response
from .metrics import ServerMetrics
from .openapi import install_openapi, route_docs
from .startup import Loader
from .state import Phase, ServerState


def create_app(settings: Settings, state: ServerState | None = None, start_loader: bool = True) -> FastAPI:
    """Build the app; the model loads in a background thread started by the lifespan."""
    state = state or ServerState()
    if state.metrics is None and settings.revision:
        state.metrics = ServerMetrics(settings.model_name, settings.revision, latency_buckets=settings.latency_buckets)
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
