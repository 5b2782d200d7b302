"""``python -m modelrollout run [--namespace NS ... | --all-namespaces]``: start the operator.

A thin front over ``kopf run`` so the handlers module, the liveness endpoint and the namespace
scope are always wired the same way, locally and in the Helm chart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import sys
from typing import TYPE_CHECKING

import kopf
from kubernetes import client

from modelrollout import config
from modelrollout.api import types as t

if TYPE_CHECKING:
    from modelrollout.handlers import Runtime


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modelrollout", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    run.add_argument("--liveness", default="http://127.0.0.1:8080/healthz", help="kopf liveness endpoint URL")
    config.add_arguments(run)
    run.add_argument("--metrics-port", type=int, default=0, help="serve operator metrics on this port (0: off)")
    run.add_argument("--metrics-address", default="0.0.0.0", help="address for the metrics endpoint")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", default="plain", choices=["plain", "json", "full"])
    return parser.parse_args(argv)


def scoped_settings(namespaces: list[str]) -> kopf.OperatorSettings:
    """kopf settings: bookkeeping in annotations, and scanning that follows the watch scope.

    kopf keeps its own progress in annotations, since our status schema is structural and owns
    status. Given exact namespaces, the operator needs no cluster-wide discovery, and the chart's namespace
    mode grants none: with kopf's scanning on, it would retry the forbidden list of namespaces and
    of CRDs nine times each with backoff (about 45 s) before falling back to those namespaces, and
    only then start reconciling. Globs (``team-*``) do need the namespace list, so scanning stays on.
    """
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=t.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=t.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.scanning.disabled = bool(namespaces) and not any(c in ns for ns in namespaces for c in "*?[!")
    return settings


def build_runtime(cfg: config.OperatorConfig) -> Runtime:
    """The one API client, the Kube wrapper, the Lease elector and the notifier, from the configuration."""
    from modelrollout.handlers import Runtime  # importing it registers the handlers with kopf
    from modelrollout.kube import Kube, count_requests, load_config
    from modelrollout.leader import LeaderElector
    from modelrollout.notify import Notifier
    from modelrollout.telemetry import Telemetry

    load_config()
    configuration = client.Configuration.get_default_copy()
    # One pooled connection per worker and a few for the Lease and the metrics: past the pool's size
    # urllib3 opens and drops a new connection (and TLS handshake) per request.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, cfg.workers + 4)
    api_client = client.ApiClient(configuration)
    metrics = Telemetry()
    count_requests(api_client, metrics.observe_request)
    elector = None
    if cfg.leader_election is not None:
        elector = LeaderElector(client.CoordinationV1Api(api_client), cfg.leader_election)
    kube = Kube(api_client, list_max_age=cfg.resync_seconds)
    # Its worker thread starts with the scheduler (handlers.start_scheduler); it reads urlFrom Secrets
    # through the same client, so those reads are counted and need the chart's rbac.readSecrets.
    notifier = Notifier(metrics.registry, kube.read_secret)
    return Runtime(config=cfg, api_client=api_client, kube=kube, telemetry=metrics, elector=elector, notifier=notifier)


class QuietHandlerSuccess(logging.Filter):
    """kopf logs "Handler 'on_child' succeeded." at INFO for every watch event it hands us. With
    hundreds of objects rolling out that is most of the log and a measurable share of the operator's
    CPU, and says nothing the reconcile's own lines do not: keep those lines for DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        return not (message.startswith("Handler '") and message.endswith("' succeeded."))


def configure_logging(level: str, log_format: str) -> None:
    """One handler (kopf's, in the chosen format) at the chosen level for every logger. kopf's own
    ``configure`` knows only INFO or DEBUG, so the level is set after it."""
    formats = {"plain": kopf.LogFormat.PLAIN, "json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL}
    kopf.configure(verbose=level == "DEBUG", log_format=formats[log_format])
    logging.getLogger().setLevel(level)
    logging.getLogger("kopf.objects").addFilter(QuietHandlerSuccess())


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc at ``arenas`` arenas, as ``MALLOC_ARENA_MAX`` would, before the worker
    threads start. glibc gives each thread that contends for the heap an arena of its own (up to
    eight per core) and keeps what is freed in it: the 16 reconcile threads' short-lived JSON texts
    and response bodies (every allocation above 512 bytes bypasses Python's own allocator) then hold
    memory the others cannot reuse. Done in-process so that the image, the chart and ``make
    bench-operator`` all run the operator the same way. Without glibc (musl, macOS) this does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)


def freeze_startup_objects() -> None:
    """Move everything built so far (the imported modules' functions, classes and schemas, the
    client, the registry) out of the cyclic garbage collector's reach (``gc.freeze``): it lives
    as long as the process, and each full collection would walk it again: 75,000 objects, a
    quarter of what the collector tracked at 1,000 ModelDeployments, where full collections paused
    every thread for 0.3-0.8 s (``make bench-operator``)."""
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    cap_malloc_arenas()
    configure_logging(args.log_level, args.log_format)
    try:
        cfg = config.from_arguments(args)
    except ValueError as exc:
        print(f"modelrollout run: {exc}", file=sys.stderr)
        return 2
    from modelrollout.telemetry import start_metrics_server

    runtime = build_runtime(cfg)

    if args.metrics_port:
        start_metrics_server(runtime.telemetry, args.metrics_port, args.metrics_address)
    runtime.telemetry.watch_gc_pauses()
    freeze_startup_objects()
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            settings=scoped_settings(args.namespace),
            liveness_endpoint=args.liveness,
            standalone=True,
            memo=kopf.Memo(runtime=runtime),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
