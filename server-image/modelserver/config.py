"""Command-line flags with environment-variable fallbacks.

Why: the operator configures pods through env vars while humans use flags; both must mean the same
thing. Every flag ``--some-flag`` can also be set as ``MODELSERVER_SOME_FLAG``; an explicit flag
wins over the environment, and the environment over the built-in default.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

ENV_PREFIX = "MODELSERVER_"
DEFAULT_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
DEFAULT_TOKEN_TTL_SECONDS = 7 * 24 * 3600.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start; see ``--help`` for the meaning of each field."""

    model_uri: str
    model_name: str
    revision: str | None = None
    sha256: str | None = None
    metadata_uri: str | None = None
    compare_model_uri: str | None = None
    compare_sha256: str | None = None
    compare_revision: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int = 8081
    warmup_requests: int = 20
    max_body_bytes: int = 8 * 1024 * 1024
    max_model_bytes: int = 2 * 1024 * 1024 * 1024
    max_batch_size: int = 4096
    download_retries: int = 5
    download_timeout: float = 30.0
    feedback_cache_size: int = 100_000
    feedback_ttl_seconds: float = 3600.0
    max_missing_fraction: float | None = None
    log_sample_rate: float = 0.0
    log_inputs: bool = False
    log_level: str = "info"
    intra_op_threads: int = 1
    executor: str = "auto"
    inference_threads: int = 4
    inline_threshold_ms: float = 1.0
    batching: str = "auto"
    fast_path: bool = True
    feedback_key_file: str | None = None
    deployment: str | None = None
    feedback_token_ttl: float = DEFAULT_TOKEN_TTL_SECONDS
    latency_buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS
    drain_seconds: float = 0.0
    shutdown_timeout: float = 10.0
    execution_provider: str = "cpu"
    exit_on_load_failure: bool = False
    termination_message_path: str = "/dev/termination-log"


def parse_bool(text: str) -> bool:
    """Parse a boolean env value strictly (a typo should fail, not silently mean False)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError("expected 64 hexadecimal characters")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(text: str) -> float:
    """``7d``, ``36h``, ``1h30m``, ``90s`` or plain seconds; must be > 0."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            hint = f"expected a duration such as 7d, 36h, 1h30m or 90s, got {text!r}"
            raise argparse.ArgumentTypeError(hint) from None
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return seconds


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DEPLOYMENT = re.compile(rf"{_DNS_LABEL}/{_DNS_LABEL}(\.{_DNS_LABEL})*")


def _deployment(text: str) -> str:
    """``NAMESPACE/NAME`` of the ModelDeployment, as Kubernetes spells them."""
    value = text.strip()
    if len(value) > 317 or not _DEPLOYMENT.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME of the ModelDeployment, got {text!r}")
    return value


def _buckets(text: str) -> tuple[float, ...]:
    """Comma-separated histogram edges in seconds: positive, finite, strictly increasing."""
    try:
        edges = tuple(float(part) for part in text.split(","))
    except ValueError:
        hint = f"expected comma-separated seconds such as 0.01,0.05,0.1, got {text!r}"
        raise argparse.ArgumentTypeError(hint) from None
    if not all(math.isfinite(e) and e > 0 for e in edges):
        raise argparse.ArgumentTypeError(f"bucket edges must be finite numbers > 0 (seconds), got {text!r}")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise argparse.ArgumentTypeError(f"bucket edges must be strictly increasing, got {text!r}")
    return edges


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return value

    return parse


_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "model_uri": (str, "model location: file:///path/model.onnx, /path/model.onnx or http(s)://..."),
    "model_name": (str, "name the model is served under (/v2/models/NAME)"),
    "revision": (str, "revision label for every metric and model_version (default: sha256[:12])"),
    "sha256": (_sha256, "expected sha256 of the model file; a mismatch keeps the server unready"),
    "metadata_uri": (str, "metadata.json location (default: metadata.json beside the model, optional)"),
    "compare_model_uri": (
        str,
        "a second model (the stable revision's) run on every answered request to count how often it agrees "
        "(modelserver_shadow_*; unset: off)",
    ),
    "compare_sha256": (_sha256, "expected sha256 of the --compare-model-uri file; a mismatch keeps the server unready"),
    "compare_revision": (str, "compared_with label of the modelserver_shadow_* metrics (default: its sha256[:12])"),
    "host": (str, "address to bind"),
    "port": (_port, "port to bind"),
    "grpc_port": (_port, "port of the Open Inference Protocol gRPC API, on the same address (0: no gRPC)"),
    "warmup_requests": (_non_negative_int, "warmup inferences before the server reports ready"),
    "max_body_bytes": (_positive_int, "largest accepted request body (413 above)"),
    "max_model_bytes": (_positive_int, "largest accepted model file"),
    "max_batch_size": (_positive_int, "largest accepted batch (first dimension / feature rows)"),
    "download_retries": (_non_negative_int, "retries for transient download errors (exponential backoff)"),
    "download_timeout": (_positive_float, "seconds per download attempt (connect and read)"),
    "feedback_cache_size": (_positive_int, "predictions kept for joining feedback by request id"),
    "feedback_ttl_seconds": (_positive_float, "how long a prediction accepts feedback"),
    "max_missing_fraction": (_probability, "reject rows missing more than this fraction of features"),
    "log_sample_rate": (_probability, "fraction of predictions written as JSON lines to stdout"),
    "log_inputs": (parse_bool, "include inputs in sampled prediction logs"),
    "log_level": (_choice("critical", "error", "warning", "info", "debug"), "server log level"),
    "intra_op_threads": (_non_negative_int, "onnxruntime intra-op threads (0 = onnxruntime default)"),
    "executor": (_choice("auto", "inline", "thread"), "where session.run executes (auto: by latency)"),
    "inference_threads": (_positive_int, "worker threads when inference runs off the event loop"),
    "inline_threshold_ms": (_positive_float, "auto executor: run inline if warmup mean is below this"),
    "batching": (_choice("auto", "off"), "micro-batch concurrent requests (auto: inline models that batch exactly)"),
    "fast_path": (parse_bool, "serve POST .../infer by a thin ASGI layer in front of FastAPI"),
    "feedback_key_file": (str, "file with the raw key of prediction tokens (unset: no tokens, id feedback only)"),
    "deployment": (_deployment, "NAMESPACE/NAME of the ModelDeployment, bound into every prediction token"),
    "feedback_token_ttl": (_duration, "how long a prediction token accepts feedback (7d, 36h, 90m, seconds)"),
    "latency_buckets": (_buckets, "comma-separated seconds: bucket edges of modelserver_request_duration_seconds"),
    "drain_seconds": (_non_negative_float, "after SIGTERM, keep serving (unready) this long before stopping"),
    "shutdown_timeout": (_positive_float, "then, seconds in-flight requests get to finish"),
    "execution_provider": (
        _choice("cpu", "cuda"),
        "onnxruntime execution provider (cuda: an NVIDIA GPU with the onnxruntime-gpu build; no silent CPU fallback)",
    ),
    "exit_on_load_failure": (
        parse_bool,
        "exit (1) when the model cannot be loaded, the reason in the termination message (in a pod: the "
        "kubelet shows it and restarts the container, reading its Secrets again)",
    ),
    "termination_message_path": (str, "where --exit-on-load-failure writes the reason (Kubernetes' default)"),
}
_REQUIRED = ("model_uri", "model_name")


def env_name(field: str) -> str:
    """``model_uri`` -> ``MODELSERVER_MODEL_URI``."""
    return ENV_PREFIX + field.upper()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelserver",
        description="Open Inference Protocol (V2) server for one ONNX model. "
        f"Every flag can also be set as an environment variable {ENV_PREFIX}<FLAG_IN_UPPER_SNAKE>.",
    )
    defaults = {f.name: f.default for f in fields(Settings)}
    for name, (kind, text) in _OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        default = defaults.get(name)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "" if name in _REQUIRED else f" (default: {default})"
        parser.add_argument(flag, dest=name, type=kind, default=None, help=f"{text}; env {env_name(name)}{shown}")
    return parser


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve flags > environment > defaults; exits with a usage message on invalid values."""
    environ = os.environ if environ is None else environ
    parser = _build_parser()
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    for name, (kind, _) in _OPTIONS.items():
        if args[name] is not None:
            values[name] = args[name]
            continue
        raw = environ.get(env_name(name))
        if raw is None or (raw == "" and name in _REQUIRED):
            continue
        try:
            values[name] = kind(raw)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            parser.error(f"invalid {env_name(name)}={raw!r}: {exc}")
    missing = [n for n in _REQUIRED if not values.get(n)]
    if missing:
        parser.error("missing " + ", ".join(f"--{n.replace('_', '-')} (or {env_name(n)})" for n in missing))
    if values.get("feedback_key_file") and not values.get("deployment"):
        parser.error("--feedback-key-file needs --deployment NAMESPACE/NAME (the identity bound into tokens)")
    for name in ("compare_sha256", "compare_revision"):
        if values.get(name) and not values.get("compare_model_uri"):
            parser.error(f"--{name.replace('_', '-')} needs --compare-model-uri (the model it describes)")
    return Settings(**values)
