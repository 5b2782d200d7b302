"""Request handling for every endpoint, independent of how requests are routed to it.

Why apart from the app factory: the same handlers are reached through FastAPI's routes and, for
``POST .../infer``, through :mod:`modelserver.fastpath`. Each handler records exactly one
``modelserver_requests_total`` increment with its endpoint and status class; infer requests that
reach the model are also timed. Bodies are validated by :mod:`modelserver.codec` (strict,
field-named 400s, never FastAPI's 422) and every answer is pre-serialised JSON — or, for infer
requests that ask for binary outputs, JSON followed by tensor bytes (:mod:`modelserver.binary`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from . import __version__
from .binary import HEADER, OCTET_STREAM, BinaryData, header_length, split_body
from .codec import InferRequest, encode_binary_response, encode_response, parse_json_object
from .config import Settings
from .errors import ApiError
from .feedback_api import handle_feedback
from .http_io import JSON, error_response, json_response, read_body
from .inference import decode_infer
from .metrics import ServerMetrics
from .runtime import Answer, Runtime
from .state import ServerState

log = logging.getLogger("modelserver.handlers")
PLATFORM = "onnx_onnxv1"
EXTENSIONS = ["binary_tensor_data", "feedback", "named_features"]

R = TypeVar("R")
InferReply = tuple[int, bytes, int | None]
"""``(status, body, JSON length)``: the length is set when the body is JSON followed by binary tensors."""


def _counted() -> None:
    """The count of a refused request: done already, before the refusal was raised."""


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

    def count(self, endpoint: str, status: int, protocol: str = "http") -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.record_request(endpoint, status, protocol)

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
        (status, content, json_length), count = await self.infer_raw(request.scope, request.receive, name, version)
        count()
        if json_length is None:
            return Response(content, status_code=status, media_type=JSON)
        return Response(content, status_code=status, media_type=OCTET_STREAM, headers={HEADER: str(json_length)})

    async def infer_raw(
        self, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> tuple[InferReply, Callable[[], None]]:
        """The whole infer request → :data:`InferReply`, and the function that counts it once it is sent
        (:meth:`answer_infer`); used by the fast path and the FastAPI route."""

        async def decode(runtime: Runtime) -> InferRequest:
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            return self.decode(scope, body, runtime)

        try:
            (content, json_length), count = await self.answer_infer(name, version, decode, self._encode_http)
        except ApiError as exc:
            return (exc.status, bytes(error_response(exc).body), None), _counted  # Response.body may be a memoryview
        return (200, content, json_length), count

    async def answer_infer(
        self,
        name: str,
        version: str | None,
        decode: Callable[[Runtime], Awaitable[InferRequest]],
        encode: Callable[[Runtime, InferRequest, Answer], R],
        protocol: str = "http",
    ) -> tuple[R, Callable[[], None]]:
        """An infer request from resolution to encoded answer, for HTTP and gRPC alike, and the
        function that counts it, which the caller calls right after sending the answer, with nothing
        awaited in between but the send itself.

        Why one function: both protocols must refuse, run, remember (feedback by id), count
        (``modelserver_requests_total``, latency, in-flight, the inputs' drift bins) and log
        predictions identically, or a canary's gates would judge gRPC traffic differently. Only
        ``decode`` (wire format → validated request) and ``encode`` (answer → wire format) differ.
        Every failure leaves as :class:`ApiError` (an unexpected one as a logged 500) after it was
        counted.

        Why the count is the caller's: the client waits for its answer, not for the accounting of it
        (the inputs' drift bins, ``modelserver_requests_total``, the latency, the prediction log:
        ~5 us of a one-row request at concurrency 1). Nothing else runs on the event loop between the
        send and the count, so no scrape or feedback request sees an answer sent but not counted
        (unless the send itself had to wait for a slow reader). A refused request is counted before
        its :class:`ApiError` is raised. The latency is measured up to the encoded answer.
        """
        started = time.perf_counter()
        runtime: Runtime | None = None
        reached_model = answered = False
        status = 500
        try:
            runtime = self.resolve(name, version, need_ready=True)
            req = await decode(runtime)
            reached_model = True
            gauge = runtime.metrics.inflight_child
            gauge.inc()
            try:
                answer = await runtime.run(req.feeds, req.rows, protocol == "http" and self._only_http_request())
            finally:
                gauge.dec()
            runtime.remember(req.id, answer)
            result = encode(runtime, req, answer)
            answered = True
        except ApiError as exc:
            status = exc.status
            raise
        except Exception:
            log.exception("unhandled error", extra={"endpoint": "infer", "protocol": protocol})
            raise ApiError(500, "internal server error") from None
        finally:
            if not answered:  # refused, failed or cancelled: counted now
                self._account_infer(runtime, protocol, status, time.perf_counter() - started, reached_model, None)
        elapsed = time.perf_counter() - started
        return result, functools.partial(self._account_answered, runtime, req, answer, protocol, elapsed)

    def _account_answered(
        self, runtime: Runtime, req: InferRequest, answer: Answer, protocol: str, elapsed: float
    ) -> None:
        """Count an answered request: its inputs into the drift bins, then as :meth:`_account_infer`.

        An error here is logged, not raised: the answer is sent (or about to be) and stays a 200.
        """
        try:
            runtime.count_inputs(req.feeds, req.imputed)
        except Exception:
            log.exception("unhandled error counting an answered request", extra={"endpoint": "infer"})
        try:
            self._account_infer(runtime, protocol, 200, elapsed, True, (req, answer))
        except Exception:
            log.exception("unhandled error counting an answered request", extra={"endpoint": "infer"})

    def _only_http_request(self) -> bool:
        """No other HTTP request is in progress (uvicorn's count; the caller is 1), so nothing can join
        this one's micro-batch. gRPC calls are not counted: one that starts now misses this request's
        batch and runs in its own, as it would a moment later."""
        count = self.state.http_requests
        return count is not None and count() == 1

    def _account_infer(
        self,
        runtime: Runtime | None,
        protocol: str,
        status: int,
        elapsed: float,
        reached_model: bool,
        answered: tuple[InferRequest, Answer] | None,
    ) -> None:
        """Count the request; time it if it reached the model (2xx, 5xx); maybe log the prediction."""
        self.count("infer", status, protocol)
        if runtime is None:
            return
        if reached_model:
            runtime.metrics.observe_latency(elapsed)
        if answered is not None and runtime.predlog.sampled():
            req, answer = answered
            runtime.predlog.write(req.id, elapsed, answer.outputs, req.feeds)

    def _encode_http(self, runtime: Runtime, req: InferRequest, answer: Answer) -> tuple[bytes, int | None]:
        """The JSON answer, or JSON followed by tensor bytes when outputs were asked for as binary data."""
        name = self.settings.model_name
        if req.binary_outputs:
            return encode_binary_response(
                name, runtime.version, req.id, answer.outputs, req.outputs, req.binary_outputs, answer.token
            )
        return encode_response(name, runtime.version, req.id, answer.outputs, req.outputs, answer.token), None

    def decode(self, scope: Scope, body: bytes, runtime: Runtime) -> InferRequest:
        """A plain JSON body, or (with ``Inference-Header-Content-Length``) JSON followed by tensor bytes."""
        length = header_length(scope)
        data: BinaryData | None = None
        if length is None:
            payload = parse_json_object(body)
        else:
            head, data = split_body(body, length)
            payload = parse_json_object(head, f"the request's JSON part (the first {length} bytes, per {HEADER})")
        return decode_infer(payload, runtime, self.settings.max_batch_size, data)

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
            if not self.state.takes_new_traffic:
                described = self.state.describe()
                raise ApiError(503, f"not ready: {described['reason']}", ready=False, **described)
            return json_response({"ready": True})

        return await self.answer("server_ready", produce)

    async def server_live(self) -> Response:
        self.count("server_live", 200)
        return json_response({"live": True})

    async def server_metadata(self) -> Response:
        self.count("server_metadata", 200)
        return json_response({"name": "modelserver", "version": __version__, "extensions": EXTENSIONS})

    async def metrics(self) -> Response:
        self.count("metrics", 200)
        metrics: ServerMetrics | None = self.state.metrics
        return Response(metrics.exposition() if metrics else b"", media_type=CONTENT_TYPE_LATEST)
