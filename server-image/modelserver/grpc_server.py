"""The Open Inference Protocol's gRPC API (``inference.GRPCInferenceService``) next to the HTTP one.

Why in the same process and event loop as uvicorn: one model session, one micro-batcher, one
prediction cache (feedback by id works whichever protocol predicted), one set of metrics and one
lifecycle (loading, readiness, draining). Every RPC goes through :class:`~modelserver.handlers.ModelServer`
like its HTTP twin; ``ModelInfer`` calls the very same :meth:`ModelServer.answer_infer` as ``POST
.../infer``, so only the wire format differs (:mod:`modelserver.grpc_codec`).

Errors are gRPC statuses with the HTTP answer's message: 400 → INVALID_ARGUMENT, 404 → NOT_FOUND,
503 → UNAVAILABLE, 500 → INTERNAL. ``modelserver_requests_total`` counts each RPC under the HTTP
endpoint name and the status class of that HTTP equivalent, with ``protocol="grpc"``, so the
rollout gates (which sum over protocols) judge gRPC traffic exactly like HTTP traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from . import __version__, grpc_codec
from .codec import InferRequest
from .errors import ApiError
from .handlers import EXTENSIONS, ModelServer
from .proto import open_inference_grpc_pb2 as pb
from .proto import open_inference_grpc_pb2_grpc as pb_grpc
from .runtime import Answer, Runtime

log = logging.getLogger("modelserver.grpc")
GRPC = "grpc"
T = TypeVar("T")
Context = grpc.aio.ServicerContext[object, object]
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code(http_status: int) -> grpc.StatusCode:
    """The gRPC status for an HTTP status (any other 4xx is a bad argument, any other 5xx internal)."""
    code = _STATUS.get(http_status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if http_status < 500 else grpc.StatusCode.INTERNAL


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of ``GRPCInferenceService``, answered by one :class:`ModelServer` (names: the .proto's)."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def _answer(self, endpoint: str, context: Context, produce: Callable[[], Awaitable[T]]) -> T:
        """Run an RPC body, count it, and turn :class:`ApiError` into the matching gRPC status."""
        try:
            reply = await produce()
        except ApiError as exc:
            self.server.count(endpoint, exc.status, GRPC)
            await context.abort(status_code(exc.status), exc.message)
        except Exception:
            log.exception("unhandled error", extra={"endpoint": endpoint, "protocol": GRPC})
            self.server.count(endpoint, 500, GRPC)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        self.server.count(endpoint, 200, GRPC)
        return reply

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:  # noqa: N802
        async def produce() -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._answer("server_live", context, produce)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:  # noqa: N802
        """``ready`` is what ``/v2/health/ready`` says: false while loading, failed or draining."""

        async def produce() -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.server.state.takes_new_traffic)

        return await self._answer("server_ready", context, produce)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:  # noqa: N802
        """NOT_FOUND for another model or version; ``ready=false`` while this one is not ready."""

        async def produce() -> pb.ModelReadyResponse:
            try:
                self.server.resolve(request.name, request.version or None, need_ready=True)
            except ApiError as exc:
                if exc.status != 503:
                    raise
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._answer("model_ready", context, produce)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:  # noqa: N802
        async def produce() -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(name="modelserver", version=__version__, extensions=EXTENSIONS)

        return await self._answer("server_metadata", context, produce)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:  # noqa: N802
        async def produce() -> pb.ModelMetadataResponse:
            runtime = self.server.resolve(request.name, request.version or None, need_ready=False)
            return grpc_codec.encode_metadata(self.server.describe_model(runtime))

        return await self._answer("model_metadata", context, produce)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:  # noqa: N802
        """:meth:`ModelServer.answer_infer` with the gRPC codec; counted once the response is built
        (grpcio sends it after this returns, so there is no send to wait for here)."""
        server = self.server
        raw = len(request.raw_input_contents) > 0

        async def decode(runtime: Runtime) -> InferRequest:
            return grpc_codec.decode_request(request, runtime.model, server.settings.max_batch_size)

        def encode(runtime: Runtime, req: InferRequest, answer: Answer) -> pb.ModelInferResponse:
            return grpc_codec.encode_response(
                server.settings.model_name, runtime.version, req.id, answer.outputs, req.outputs, answer.token, raw
            )

        try:
            response, count = await server.answer_infer(
                request.model_name, request.model_version or None, decode, encode, GRPC
            )
            count()
            return response
        except ApiError as exc:
            await context.abort(status_code(exc.status), exc.message)


class GrpcFrontend:
    """The gRPC server's lifecycle: started and stopped by :class:`~modelserver.shutdown.DrainingServer`."""

    def __init__(self, server: ModelServer, host: str, port: int, max_message_bytes: int) -> None:
        self.server = server
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.max_message_bytes = max_message_bytes
        self._grpc: grpc.aio.Server | None = None

    async def start(self) -> bool:
        """Listen (in the running event loop); False, logged, when the port cannot be bound.

        A busy port is not fatal: HTTP still serves. Several servers on one host (local test
        harnesses) would otherwise need a gRPC port each; in a pod the port is always free.
        """
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                # gRPC sets SO_REUSEPORT by default: a second server on the port would silently share it.
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.server), server)
        try:
            server.add_insecure_port(self.address)
        except RuntimeError as exc:
            log.error("gRPC port unavailable; serving HTTP only", extra={"address": self.address, "error": str(exc)})
            return False
        await server.start()
        self._grpc = server
        log.info("gRPC API listening", extra={"address": self.address})
        return True

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls at once; give those in flight up to ``grace`` seconds (None: none)."""
        if self._grpc is not None:
            await self._grpc.stop(grace)
            self._grpc = None
