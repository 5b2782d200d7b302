"""``python -m modelrollout run [--namespace NS ... | --all-namespaces]``: start the operator.

A thin front over ``kopf run`` so the handlers module, the liveness endpoint and the namespace
scope are always wired the same way, locally and in the Helm chart.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import kopf


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modelrollout", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    run.add_argument("--liveness", default="http://127.0.0.1:8080/healthz", help="kopf liveness endpoint URL")
    run.add_argument(
        "--prometheus-address",
        default=os.environ.get("MODELROLLOUT_PROMETHEUS_ADDRESS", ""),
        help="Prometheus for ModelDeployments that do not name one (env MODELROLLOUT_PROMETHEUS_ADDRESS)",
    )
    run.add_argument("--metrics-port", type=int, default=0, help="serve operator metrics on this port (0: off)")
    run.add_argument("--metrics-address", default="0.0.0.0", help="address for the metrics endpoint")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", default="plain", choices=["plain", "json", "full"])
    return parser.parse_args(argv)


def scoped_settings(namespaces: list[str]) -> kopf.OperatorSettings:
    """kopf settings that follow the watch scope.

    Given exact namespaces, the operator needs no cluster-wide discovery, and the chart's namespace
    mode grants none: with kopf's scanning on, it would retry the forbidden list of namespaces and
    of CRDs nine times each with backoff (about 45 s) before falling back to those namespaces, and
    only then start reconciling. Globs (``team-*``) do need the namespace list, so scanning stays on.
    """
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = bool(namespaces) and not any(c in ns for ns in namespaces for c in "*?[!")
    return settings


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level)
    os.environ["MODELROLLOUT_PROMETHEUS_ADDRESS"] = args.prometheus_address  # read by the handlers at import
    from modelrollout import (
        handlers,  # noqa: F401 - registers the handlers with kopf
        telemetry,
    )

    if args.metrics_port:
        telemetry.start_metrics_server(args.metrics_port, args.metrics_address)

    kopf.configure(
        verbose=args.log_level == "DEBUG",
        log_format={"plain": kopf.LogFormat.PLAIN, "json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL}[
            args.log_format
        ],
    )
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            settings=scoped_settings(args.namespace),
            liveness_endpoint=args.liveness,
            standalone=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
