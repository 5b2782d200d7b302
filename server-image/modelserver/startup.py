"""Load, verify, warm up and self-check the model in a background thread.

Why a thread: the HTTP port must be open (liveness answers, readiness says "loading") while a large
model downloads or a slow model warms up. Any failure leaves the server alive but permanently not
ready, with the reason in ``/v2/health/ready`` and in the logs — a crash loop would hide the reason
and hammer the model store.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import external_data
from .batching import MicroBatcher, supports_batching
from .config import Settings
from .errors import LoadError
from .features import FeatureEncoder
from .feedback import PredictionCache
from .loader import FetchPolicy, NotFoundError, fetch, sibling_uri, verify_sha256
from .metadata import ModelMetadata, parse_metadata
from .metrics import ServerMetrics
from .model import OnnxModel
from .predictions import PredictionReader
from .predlog import PredictionLogger
from .runtime import Answer, Runtime
from .state import Phase, ServerState
from .tokens import ReplayGuard, TokenCodec, load_key
from .warmup import feature_input, reference_feeds, run_warmup

log = logging.getLogger("modelserver.startup")
METADATA_MAX_BYTES = 4 * 1024 * 1024


class Loader:
    """Runs the start-up sequence once and publishes progress into a :class:`ServerState`."""

    def __init__(self, settings: Settings, state: ServerState, metrics: ServerMetrics | None) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="modelserver-loader", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            self._load_and_warm()
        except LoadError as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug must still leave a reason behind, never a silent hang
            log.exception("unexpected start-up failure")
            self._fail(f"unexpected start-up failure: {type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        self.state.phase = Phase.FAILED
        self.state.reason = reason
        if self.metrics is not None:
            self.metrics.set_ready(False)
        log.error("model failed to load; the server will not become ready", extra={"reason": reason})
        if self.settings.exit_on_load_failure:
            exit_with_reason(reason, self.settings.termination_message_path)

    def _load_and_warm(self) -> None:
        s = self.settings
        started = time.perf_counter()
        policy = FetchPolicy(s.max_model_bytes, s.download_timeout, s.download_retries)
        data = fetch(s.model_uri, policy)
        digest = verify_sha256(data, s.sha256, s.model_uri)
        revision = s.revision or digest[:12]
        metrics = self.metrics or ServerMetrics(s.model_name, revision, latency_buckets=s.latency_buckets)
        self.metrics = metrics
        self.state.metrics = metrics
        metadata = self._metadata(policy)
        weights = external_data.locations(data)
        with external_data.directory(s.model_uri, weights, policy) as folder:
            model = OnnxModel(data, s.intra_op_threads, s.execution_provider, external_data=folder)
        runtime = self._runtime(model, metadata, revision, digest, metrics)
        load_seconds = time.perf_counter() - started
        metrics.set_load_seconds(load_seconds)
        log.info(
            "model loaded",
            extra={"model": s.model_name, "revision": revision, "sha256": digest, "bytes": len(data),
                   "external_data": weights,
                   "load_seconds": round(load_seconds, 4), "features": list(metadata.feature_names)},
        )  # fmt: skip
        self.state.runtime = runtime
        self._warm(runtime)

    def _metadata(self, policy: FetchPolicy) -> ModelMetadata:
        s = self.settings
        uri = s.metadata_uri or sibling_uri(s.model_uri, "metadata.json")
        small = FetchPolicy(METADATA_MAX_BYTES, policy.timeout, policy.retries, policy.backoff_base)
        try:
            return parse_metadata(fetch(uri, small), uri)
        except NotFoundError:
            if s.metadata_uri:
                raise
            log.info("no metadata.json beside the model; serving without a feature schema", extra={"uri": uri})
            return ModelMetadata()
        except LoadError as exc:
            if s.metadata_uri or not urllib.parse.urlsplit(s.model_uri).query:
                raise
            raise LoadError(
                f"{exc}; metadata.json beside a pre-signed model URL is fetched without that URL's signature: "
                "give it its own (--metadata-uri, the ModelDeployment's model.metadataUri)"
            ) from None

    def _runtime(
        self, model: OnnxModel, metadata: ModelMetadata, revision: str, digest: str, metrics: ServerMetrics
    ) -> Runtime:
        s = self.settings
        target = feature_input(model, metadata)
        encoder = FeatureEncoder(metadata, s.max_missing_fraction) if target is not None else None
        reader = PredictionReader(model, metadata)
        metrics.bind_features(metadata.feature_names)
        metrics.bind_classes(metadata.classes)
        scored = reader.score_output is not None
        metrics.bind_reference_bins(metadata.features, metadata.score_reference if scored else None)
        metrics.set_signature(signature_series(model, metadata))
        return Runtime(
            model=model,
            metadata=metadata,
            version=revision,
            sha256=digest,
            reader=reader,
            encoder=encoder,
            feature_input=target,
            cache=PredictionCache(s.feedback_cache_size, s.feedback_ttl_seconds),
            metrics=metrics,
            predlog=PredictionLogger(s.model_name, revision, s.log_sample_rate, s.log_inputs),
            tokens=self._tokens(revision),
            replay=ReplayGuard(s.feedback_cache_size),
        )

    def _tokens(self, revision: str) -> TokenCodec | None:
        """Prediction tokens need the key and the ModelDeployment's identity; without a key, none."""
        s = self.settings
        if not s.feedback_key_file:
            return None
        assert s.deployment is not None  # parse_settings refuses a key file without --deployment
        codec = TokenCodec(load_key(s.feedback_key_file), s.deployment, revision, s.feedback_token_ttl)
        log.info("prediction tokens on", extra={"deployment": s.deployment, "token_ttl_seconds": s.feedback_token_ttl})
        return codec

    def _warm(self, runtime: Runtime) -> None:
        s = self.settings
        self.state.phase = Phase.WARMING_UP
        self.state.reason = f"warming up (0/{s.warmup_requests})"

        def progress(done: int) -> None:
            self.state.reason = f"warming up ({done}/{s.warmup_requests})"

        result = run_warmup(runtime.model, runtime.metadata, s.warmup_requests, progress)
        runtime.executor = self._executor(result.mean_latency_s)
        runtime.batcher = self._batcher(runtime)
        runtime.metrics.set_warmup_seconds(result.seconds)
        # Everything allocated so far (modules, the session, metrics) lives for the whole process:
        # move it out of the cyclic GC's generations so collections only scan per-request garbage.
        gc.collect()
        gc.freeze()
        self.state.phase = Phase.READY
        self.state.reason = "ready"
        runtime.metrics.set_ready(True)
        log.info(
            "model ready",
            extra={"warmup_requests": result.runs, "warmup_seconds": round(result.seconds, 4),
                   "mean_inference_ms": round(result.mean_latency_s * 1000, 3),
                   "executor": "inline" if runtime.executor is None else "thread",
                   "batching": runtime.batcher is not None},
        )  # fmt: skip

    def _batcher(self, runtime: Runtime) -> MicroBatcher[Answer] | None:
        """Micro-batch only inline models whose batched outputs equal their row-by-row outputs."""
        if self.settings.batching == "off" or runtime.executor is not None:
            return None
        if not supports_batching(runtime.model, reference_feeds(runtime.model, runtime.metadata)):
            log.info("model outputs do not batch row-wise; micro-batching disabled")
            return None
        return MicroBatcher(runtime.infer_batch, self.settings.max_batch_size)

    def _executor(self, mean_latency_s: float) -> ThreadPoolExecutor | None:
        """``auto``: sub-threshold models run inline (a thread hop costs more than the inference)."""
        s = self.settings
        mode = s.executor
        if mode == "auto":
            mode = "inline" if mean_latency_s * 1000 < s.inline_threshold_ms else "thread"
        if mode == "inline":
            return None
        return ThreadPoolExecutor(max_workers=s.inference_threads, thread_name_prefix="modelserver-infer")


def exit_with_reason(reason: str, path: str) -> None:
    """End the process at once with ``reason`` as its termination message.

    Why exit instead of staying unready: in a pod, only a terminated container's message reaches
    its status (``lastState.terminated.message``), where the operator and ``kubectl describe`` show
    it; and the kubelet's restart (with its back-off) starts the container again with its
    environment read anew, so a fixed Secret heals the pod with no one deleting it. Nothing is lost:
    the model never loaded, so no request was being served."""
    with contextlib.suppress(OSError):
        Path(path).write_text(reason[:4000])  # the kubelet keeps at most 4096 bytes
    logging.shutdown()
    os._exit(1)


def signature_series(model: OnnxModel, metadata: ModelMetadata) -> list[tuple[str, str, str, str]]:
    """``(io, name, datatype, shape)`` for every input, output and named feature: the model's contract.

    Shapes are comma-separated dims with ``-1`` for symbolic ones; features have their type
    (``number``/``category``) as datatype and no shape.
    """

    def shape(dims: tuple[int, ...]) -> str:
        return ",".join(str(d) for d in dims)

    series = [("input", t.name, t.datatype.v2, shape(t.shape)) for t in model.inputs]
    series += [("output", t.name, t.datatype.v2, shape(t.shape)) for t in model.outputs]
    series += [("feature", f.name, f.kind or "", "") for f in metadata.features]
    return series
