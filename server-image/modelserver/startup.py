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
from .compare import Shadow, check_compatible
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
from .warmup import WarmupResult, feature_input, reference_feeds, run_warmup

log = logging.getLogger("modelserver.startup")
METADATA_MAX_BYTES = 4 * 1024 * 1024
COMPARE_FLAG = "--compare-model-uri"


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
        runtime.shadow = self._shadow(policy, runtime)
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

    def _shadow(self, policy: FetchPolicy, served: Runtime) -> Shadow | None:
        """Fetch, verify, load and check the comparison model (``--compare-model-uri``); None when off.

        Why refuse to get ready rather than serve without it: the operator's shadow gates read its
        series, and a pod that is ready but compares nothing would leave them without evidence while
        looking healthy. Fetched with the served model's limits, run with its execution settings.
        """
        s = self.settings
        uri = s.compare_model_uri
        if not uri:
            return None
        started = time.perf_counter()
        fix = "check the URI and its access (it is fetched like --model-uri)"
        try:
            data = fetch(uri, policy)
        except LoadError as exc:
            raise compare_error(f"the comparison model could not be fetched: {exc}", fix) from None
        try:
            digest = verify_sha256(data, s.compare_sha256, uri)
        except LoadError as exc:
            fix = "give the comparison model's digest in --compare-sha256, or correct the URI"
            raise compare_error(str(exc), fix) from None
        try:
            metadata = self._compare_metadata(uri, policy, served.metadata)
            weights = external_data.locations(data)
            with external_data.directory(uri, weights, policy) as folder:
                model = OnnxModel(data, s.intra_op_threads, s.execution_provider, external_data=folder)
        except LoadError as exc:
            raise compare_error(f"the comparison model could not be loaded: {exc}", fix) from None
        reader = PredictionReader(model, metadata)
        try:
            check_compatible(served.model, served.reader, served.metadata, model, reader, metadata)
        except LoadError as exc:
            fix = "compare with a revision of the same model (same inputs, classes and outputs)"
            raise compare_error(str(exc), fix) from None
        compared_with = s.compare_revision or digest[:12]
        shadow = Shadow(model, reader, compared_with, served.metrics.bind_shadow(compared_with))
        log.info(
            "comparison model loaded",
            extra={"compared_with": compared_with, "sha256": digest, "bytes": len(data),
                   "load_seconds": round(time.perf_counter() - started, 4)},
        )  # fmt: skip
        return shadow

    def _compare_metadata(self, uri: str, policy: FetchPolicy, served: ModelMetadata) -> ModelMetadata:
        """``metadata.json`` beside the comparison model (its classes and output names), else the served
        model's: a comparison model is an earlier revision of the same model."""
        meta_uri = sibling_uri(uri, "metadata.json")
        small = FetchPolicy(METADATA_MAX_BYTES, policy.timeout, policy.retries, policy.backoff_base)
        try:
            return parse_metadata(fetch(meta_uri, small), meta_uri)
        except NotFoundError:
            log.info("no metadata.json beside the comparison model; reading it with the served model's")
            return served

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
        shadow = self._warm_shadow(runtime)
        mean_latency_s = result.mean_latency_s + shadow.mean_latency_s
        runtime.executor = self._executor(mean_latency_s)
        runtime.batcher = self._batcher(runtime)
        runtime.metrics.set_warmup_seconds(result.seconds + shadow.seconds)
        # Everything allocated so far (modules, the session, metrics) lives for the whole process:
        # move it out of the cyclic GC's generations so collections only scan per-request garbage.
        gc.collect()
        gc.freeze()
        self.state.phase = Phase.READY
        self.state.reason = "ready"
        runtime.metrics.set_ready(True)
        log.info(
            "model ready",
            extra={"warmup_requests": result.runs, "warmup_seconds": round(result.seconds + shadow.seconds, 4),
                   "mean_inference_ms": round(mean_latency_s * 1000, 3),
                   "executor": "inline" if runtime.executor is None else "thread",
                   "batching": runtime.batcher is not None},
        )  # fmt: skip

    def _warm_shadow(self, runtime: Runtime) -> WarmupResult:
        """Warm the comparison model like the served one, so the first compared request is not slow;
        its mean latency adds to the served model's (every request runs both)."""
        shadow = runtime.shadow
        if shadow is None:
            return WarmupResult(0.0, 0.0, 0)
        n = self.settings.warmup_requests

        def progress(done: int) -> None:
            self.state.reason = f"warming up the comparison model ({done}/{n})"

        try:
            return run_warmup(shadow.model, runtime.metadata, n, progress)
        except LoadError as exc:
            problem = f"the comparison model failed its warmup: {exc}"
            raise compare_error(problem, "compare with a model that answers the served model's inputs") from None

    def _batcher(self, runtime: Runtime) -> MicroBatcher[Answer] | None:
        """Micro-batch only inline models whose batched outputs equal their row-by-row outputs (and the
        comparison model's too: a batch's rows are compared together)."""
        if self.settings.batching == "off" or runtime.executor is not None:
            return None
        models = [runtime.model] if runtime.shadow is None else [runtime.model, runtime.shadow.model]
        if not all(supports_batching(m, reference_feeds(m, runtime.metadata)) for m in models):
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


def compare_error(problem: str, fix: str) -> LoadError:
    """A load error of the comparison model: names the flag, what is wrong and what to do."""
    return LoadError(f"{COMPARE_FLAG}: {problem}; fix: {fix}, or unset {COMPARE_FLAG} to serve without a comparison")


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
