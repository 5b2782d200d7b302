"""The operator's configuration: one object, built once at start from the command line (whose
defaults come from ``MODELROLLOUT_*`` environment variables, so the Helm chart can set them) and
handed to the handlers through kopf's memo. Nothing reads these settings at import time.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field

from modelrollout.metrics.connection import PrometheusDefaults


@dataclass(frozen=True)
class LeaderElection:
    """A ``coordination.k8s.io/v1`` Lease that one operator replica holds while it reconciles.

    The timings follow client-go's defaults: a holder that has not renewed within ``renew_deadline``
    stops reconciling before ``lease_duration`` lets a standby take the Lease, so two replicas never
    decide for the same object at once (a write in flight when the Lease is lost still has to pass
    the resourceVersion precondition of the status it read).
    """

    namespace: str
    name: str = "modelrollout-operator"
    identity: str = field(default_factory=socket.gethostname)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )


@dataclass(frozen=True)
class OperatorConfig:
    model_server_image: str = "modelrollout/modelserver:0.1.0"
    # For ModelDeployments that do not name their own (spec.analysis.prometheus).
    prometheus: PrometheusDefaults = field(default_factory=PrometheusDefaults)
    # How soon an object is looked at again while it waits on something no watch event announces
    # (a Prometheus scrape for its signature check, a Deployment that is rolling): the poll period.
    poll_seconds: float = 5.0
    # Every object is read again at least this often even when nothing is due (a missed watch
    # event, a hand-edited child): the resync period of controller-runtime's informers.
    resync_seconds: float = 300.0
    # Reconciles running at once, each on its own object; one slow object holds one worker only.
    workers: int = 16
    leader_election: LeaderElection | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if not 0 < self.poll_seconds <= self.resync_seconds:
            raise ValueError(
                f"poll period ({self.poll_seconds}s) must be positive and at most the resync period "
                f"({self.resync_seconds}s)"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` flags that fill :class:`OperatorConfig`; each defaults to its environment variable."""
    env = os.environ.get
    d = OperatorConfig()
    p = d.prometheus
    parser.add_argument(
        "--model-server-image",
        default=env("MODELROLLOUT_DEFAULT_IMAGE", d.model_server_image),
        help="image for ModelDeployments without spec.serving.image (env MODELROLLOUT_DEFAULT_IMAGE)",
    )
    parser.add_argument(
        "--prometheus-address",
        default=env("MODELROLLOUT_PROMETHEUS_ADDRESS", p.address),
        help="Prometheus for ModelDeployments that do not name one (env MODELROLLOUT_PROMETHEUS_ADDRESS)",
    )
    parser.add_argument(
        "--prometheus-timeout-seconds",
        type=float,
        default=float(env("MODELROLLOUT_PROMETHEUS_TIMEOUT_SECONDS", str(p.timeout_seconds))),
        help="per-query timeout of the default Prometheus (env MODELROLLOUT_PROMETHEUS_TIMEOUT_SECONDS)",
    )
    # Credentials of the default Prometheus: files (a mounted Secret), read at every check.
    for flag, help_text in (
        ("bearer-token-file", "token sent as 'Authorization: <type> <token>'"),
        ("basic-auth-password-file", "password for --prometheus-basic-auth-username"),
        ("ca-file", "PEM CA bundle the server certificate must chain to"),
        ("cert-file", "PEM client certificate (with --prometheus-key-file)"),
        ("key-file", "PEM key of the client certificate"),
    ):
        variable = "MODELROLLOUT_PROMETHEUS_" + flag.upper().replace("-", "_")
        parser.add_argument(f"--prometheus-{flag}", default=env(variable, ""), help=f"{help_text} (env {variable})")
    parser.add_argument(
        "--prometheus-authorization-type",
        default=env("MODELROLLOUT_PROMETHEUS_AUTHORIZATION_TYPE", p.authorization_type),
        help="scheme of the bearer token file's Authorization header (env MODELROLLOUT_PROMETHEUS_AUTHORIZATION_TYPE)",
    )
    parser.add_argument(
        "--prometheus-basic-auth-username",
        default=env("MODELROLLOUT_PROMETHEUS_BASIC_AUTH_USERNAME", ""),
        help="basic-auth user of the default Prometheus (env MODELROLLOUT_PROMETHEUS_BASIC_AUTH_USERNAME)",
    )
    parser.add_argument(
        "--prometheus-insecure-skip-verify",
        action="store_true",
        default=env("MODELROLLOUT_PROMETHEUS_INSECURE_SKIP_VERIFY", "") not in ("", "0", "false"),
        help="do not verify the default Prometheus' certificate (env MODELROLLOUT_PROMETHEUS_INSECURE_SKIP_VERIFY)",
    )
    parser.add_argument(
        "--prometheus-header",
        action="append",
        default=[h for h in env("MODELROLLOUT_PROMETHEUS_HEADERS", "").split("\n") if h.strip()],
        metavar="NAME=VALUE",
        help="extra header for the default Prometheus, repeatable (env MODELROLLOUT_PROMETHEUS_HEADERS, one per line)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=float(env("MODELROLLOUT_TICK_SECONDS", str(d.poll_seconds))),
        help="re-check period of an object waiting on something no event announces (env MODELROLLOUT_TICK_SECONDS)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(env("MODELROLLOUT_RESYNC_SECONDS", str(d.resync_seconds))),
        help="every object is re-read at least this often (env MODELROLLOUT_RESYNC_SECONDS)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("MODELROLLOUT_WORKERS", str(d.workers))),
        help="reconciles of different objects running at once (env MODELROLLOUT_WORKERS)",
    )
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        default=env("MODELROLLOUT_LEADER_ELECT", "") not in ("", "0", "false"),
        help="run as one of several replicas: reconcile only while holding a Lease (env MODELROLLOUT_LEADER_ELECT)",
    )
    parser.add_argument(
        "--leader-elect-namespace",
        default=env("MODELROLLOUT_LEADER_ELECT_NAMESPACE", env("POD_NAMESPACE", "default")),
        help="namespace of the Lease (env MODELROLLOUT_LEADER_ELECT_NAMESPACE, else POD_NAMESPACE)",
    )
    parser.add_argument("--leader-elect-name", default=LeaderElection.name, help="name of the Lease")
    parser.add_argument(
        "--leader-elect-identity",
        default=env("POD_NAME", socket.gethostname()),
        help="this replica's name in the Lease (env POD_NAME, else the host name)",
    )
    parser.add_argument("--lease-duration", type=float, default=LeaderElection.lease_duration)
    parser.add_argument("--renew-deadline", type=float, default=LeaderElection.renew_deadline)
    parser.add_argument("--retry-period", type=float, default=LeaderElection.retry_period)


def from_arguments(args: argparse.Namespace) -> OperatorConfig:
    """The configuration the parsed ``run`` flags describe (a ValueError names a bad combination)."""
    election = None
    if args.leader_elect:
        election = LeaderElection(
            namespace=args.leader_elect_namespace,
            name=args.leader_elect_name,
            identity=args.leader_elect_identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    return OperatorConfig(
        model_server_image=args.model_server_image,
        prometheus=PrometheusDefaults(
            address=args.prometheus_address,
            timeout_seconds=args.prometheus_timeout_seconds,
            authorization_type=args.prometheus_authorization_type,
            bearer_token_file=args.prometheus_bearer_token_file,
            basic_auth_username=args.prometheus_basic_auth_username,
            basic_auth_password_file=args.prometheus_basic_auth_password_file,
            ca_file=args.prometheus_ca_file,
            cert_file=args.prometheus_cert_file,
            key_file=args.prometheus_key_file,
            insecure_skip_verify=args.prometheus_insecure_skip_verify,
            headers=tuple(_header(h) for h in args.prometheus_header),
        ),
        poll_seconds=args.poll_seconds,
        resync_seconds=max(args.resync_seconds, args.poll_seconds),
        workers=args.workers,
        leader_election=election,
    )


def _header(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` of --prometheus-header as a pair (a ValueError names the bad flag)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--prometheus-header {text!r}: expected NAME=VALUE")
    if name.strip().lower() == "authorization":
        raise ValueError("--prometheus-header: set the Authorization header with --prometheus-bearer-token-file")
    return name.strip(), value.strip()
