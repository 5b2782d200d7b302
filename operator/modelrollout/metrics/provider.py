"""Prometheus as a source of single numbers for gates, on ``prometheus-api-client``.

Why a wrapper at all: a gate needs exactly one float per query, and everything else — an empty
vector, ``NaN`` from ``0/0``, an unreachable server, a PromQL error, a query that returns one series
per pod — must become a *reason* the gate can print, never an exception that escapes into the
operator. ``query`` therefore never raises: it returns a :class:`QueryResult` that is either a finite
value, "no data", or an error with a human-readable message.

Timeouts. The client is synchronous; the operator calls it from a worker thread, off kopf's event
loop. Each query is bounded three ways so that one check can never hang past ``timeoutSeconds``:

* ``requests`` connect and read timeouts of ``timeout_seconds`` (Prometheus writes its answer in one
  piece after evaluating, so the read timeout is effectively the total);
* Prometheus' own ``timeout`` query parameter, so the server abandons an expensive evaluation too;
* no HTTP retries (the library's default retries connection errors with backoff, which would
  multiply the wait): the rollout engine re-checks every interval anyway.

And a per-check circuit breaker: after a connection error or a timeout, the remaining queries of the
same check are answered at once with the same error instead of waiting again, so a dead Prometheus
costs one timeout per check, not one per query.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, Self

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from modelrollout.metrics.connection import CredentialsError, PrometheusConnection


@dataclass(frozen=True)
class QueryResult:
    """One PromQL evaluation: a finite ``value``, no data (both ``None``), or an ``error``."""

    query: str
    value: float | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def no_data(self) -> bool:
        """True when Prometheus answered but had nothing to say (empty vector, NaN, ±Inf)."""
        return self.error is None and self.value is None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None


@dataclass(frozen=True)
class VectorResult:
    """One PromQL evaluation that may return many series (the drift gate's counts per feature and
    bin): each series' labels and finite value, or an ``error``."""

    query: str
    series: tuple[tuple[dict[str, str], float], ...] = ()
    error: str | None = None
    seconds: float = 0.0


class MetricsProvider(Protocol):
    """Anything that turns PromQL into numbers; tests use a fake, production :class:`PrometheusProvider`."""

    def query(self, promql: str) -> QueryResult:
        """Evaluate ``promql`` at the current time as one number; never raises."""
        ...

    def query_vector(self, promql: str) -> VectorResult:
        """Evaluate ``promql`` at the current time as labelled series; never raises."""
        ...


def _scalar(raw: Any) -> float | None:
    """Parse a Prometheus sample value (a string such as ``"0.5"``, ``"NaN"``, ``"+Inf"``)."""
    value = float(raw)
    return value if math.isfinite(value) else None


def _describe_labels(metric: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return metric.get("__name__", "") + "{" + inner + "}"


def parse_result(data: Any) -> tuple[float | None, str | None]:
    """Turn the ``data.result`` of an instant query into ``(value, error)``.

    An instant-vector with one series or a scalar gives its value; an empty vector or a non-finite
    value gives no data; several series or a range vector are errors, because a gate compares one
    number and silently picking a series would hide a query that is not scoped the way the user thinks.
    """
    if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
        # resultType scalar (or string): [timestamp, "value"]
        try:
            return _scalar(data[1]), None
        except (TypeError, ValueError):
            return None, f"query returned a non-numeric value {data[1]!r}"
    if not isinstance(data, list):
        return None, f"unexpected query result {data!r:.200}"
    if not data:
        return None, None
    if len(data) > 1:
        shown = "; ".join(_describe_labels(s.get("metric", {})) for s in data[:3])
        more = f" and {len(data) - 3} more" if len(data) > 3 else ""
        return None, (
            f"query returned {len(data)} series ({shown}{more}); a gate needs exactly one number: "
            "aggregate with sum(...) or narrow the label matchers"
        )
    series = data[0]
    if "value" not in series:
        return None, "query returned a range vector; wrap it in a function such as rate() or avg_over_time()"
    try:
        return _scalar(series["value"][1]), None
    except (TypeError, ValueError, IndexError):
        return None, f"query returned a non-numeric value {series.get('value')!r}"


def parse_vector(data: Any) -> tuple[tuple[tuple[dict[str, str], float], ...], str | None]:
    """Turn the ``data.result`` of an instant query into labelled finite values (non-finite ones,
    such as ``0/0``, are left out), or an error for anything but an instant vector."""
    if not isinstance(data, list) or (data and not isinstance(data[0], dict)):
        return (), f"expected an instant vector, got {data!r:.200}"
    out = []
    for series in data:
        if "value" not in series:
            return (), "query returned a range vector; wrap it in a function such as increase()"
        try:
            value = _scalar(series["value"][1])
        except (TypeError, ValueError, IndexError):
            return (), f"query returned a non-numeric value {series.get('value')!r}"
        if value is not None:
            out.append((dict(series.get("metric", {})), value))
    return tuple(out), None


_API_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


def _api_error(exc: PrometheusApiClientException) -> tuple[int | None, str]:
    """The HTTP status and Prometheus' own ``error`` message out of the client's
    ``HTTP Status Code N (b'...')`` text."""
    text = str(exc)
    match = _API_ERROR.match(text)
    if not match:
        return None, text
    status, body = match.group(1), match.group(2)
    if body.startswith(("b'", 'b"')):
        body = body[2:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    try:
        payload = json.loads(body)
        detail = f"{payload.get('errorType', 'error')}: {payload.get('error', body)}"
    except (ValueError, AttributeError):
        detail = body.strip()[:300]
    return int(status), f"HTTP {status}: {detail}"


def _tls_reason(exc: requests.exceptions.SSLError) -> str:
    """The words of a TLS failure that say what to fix (verify failed, unknown CA, no client certificate)."""
    text = str(exc)
    for needle in (
        "certificate verify failed",
        "tlsv13 alert certificate required",
        "sslv3 alert bad certificate",
        "tlsv1 alert unknown ca",
        "wrong version number",
    ):
        if needle in text:
            detail = text[text.index(needle) :].split(")", 1)[0].split("'", 1)[0]
            return detail.rstrip(" (")
    return text[:200]


class PrometheusProvider:
    """Instant queries against one Prometheus, bounded by the connection's timeout each.

    Create one per gate check and :meth:`close` it afterwards (or use it as a context manager): the
    circuit breaker is meant to last one check, and the HTTP session (its pooled connection, and the
    key files of a client certificate) one check.
    """

    def __init__(self, connection: PrometheusConnection) -> None:
        self.address = connection.address.rstrip("/")
        self.timeout_seconds = float(connection.timeout_seconds)
        self._session = connection.session()
        self._client = PrometheusConnect(
            url=self.address,
            headers=dict(connection.headers) or None,
            session=self._session,
            retry=Retry(total=0, read=False, raise_on_status=False),
            timeout=self.timeout_seconds,
        )
        self._down: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def query(self, promql: str) -> QueryResult:
        """Evaluate ``promql`` now; every failure becomes a :class:`QueryResult` with ``error`` set."""
        if self._down is not None:
            return QueryResult(promql, error=f"skipped: {self._down}")
        started = time.monotonic()
        data, error = self.call(promql)
        if error is not None:
            return QueryResult(promql, error=error, seconds=time.monotonic() - started)
        value, parse_error = parse_result(data)
        return QueryResult(promql, value=value, error=parse_error, seconds=time.monotonic() - started)

    def query_vector(self, promql: str) -> VectorResult:
        """Evaluate ``promql`` now as labelled series; failures become ``error``, as in :meth:`query`."""
        started = time.monotonic()
        data, error = self.call(promql)
        if error is not None:
            return VectorResult(promql, error=error, seconds=time.monotonic() - started)
        series, parse_error = parse_vector(data)
        return VectorResult(promql, series, parse_error, time.monotonic() - started)

    def call(self, promql: str) -> tuple[Any, str | None]:
        """``(data, None)`` with the API's ``result``, or ``(None, message)``; never raises.

        A failure that every later query of the check would meet too (no connection, a timeout, a
        TLS failure, credentials refused) opens the circuit breaker.
        """
        if self._down is not None:
            return None, f"skipped: {self._down}"
        try:
            data = self._client.custom_query(
                promql,
                params={"timeout": f"{self.timeout_seconds:g}s"},
                timeout=self.timeout_seconds,
            )
        except requests.Timeout:
            self._down = f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s"
            return None, self._down
        except requests.exceptions.SSLError as exc:
            self._down = f"TLS with Prometheus at {self.address} failed ({_tls_reason(exc)})"
            return None, self._down
        except requests.ConnectionError as exc:
            reason = _connection_reason(exc)
            if reason == "timed out":
                self._down = f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s"
            else:
                self._down = f"Prometheus at {self.address} is unreachable ({reason})"
            return None, self._down
        except PrometheusApiClientException as exc:
            status, text = _api_error(exc)
            if status in (401, 403):
                self._down = (
                    f"Prometheus at {self.address} refused the credentials ({text}): check "
                    "spec.analysis.prometheus (authorization, basicAuth, tls) and its Secrets, or the "
                    "operator's --prometheus-* credential flags"
                )
                return None, self._down
            return None, f"Prometheus rejected the query: {text}"
        except requests.RequestException as exc:  # invalid JSON, bad URL, ...
            return None, f"query to Prometheus at {self.address} failed: {type(exc).__name__}: {exc}"
        except (KeyError, TypeError, ValueError) as exc:  # a 200 that is not a Prometheus API answer
            return None, f"unexpected answer from {self.address}: {type(exc).__name__}: {exc}"
        except Exception as exc:  # last resort: a gate check must report, never crash the reconcile
            return None, f"query to Prometheus at {self.address} failed: {type(exc).__name__}: {exc}"
        return data, None


@contextmanager
def open_provider(connection: PrometheusConnection | CredentialsError | None) -> Iterator[MetricsProvider | None]:
    """The provider for one check: Prometheus over ``connection`` (closed afterwards), one that
    reports why the credentials could not be read, or None when no Prometheus is configured."""
    if connection is None:
        yield None
    elif isinstance(connection, CredentialsError):
        yield Unavailable(f"Prometheus credentials: {connection}")
    else:
        with PrometheusProvider(connection) as provider:
            yield provider


class Unavailable:
    """A provider for a Prometheus that cannot be asked at all (its credentials could not be read):
    every query answers with the same error, so every gate reports it as blind, with the reason."""

    def __init__(self, error: str) -> None:
        self.error = error

    def query(self, promql: str) -> QueryResult:
        return QueryResult(promql, error=self.error)

    def query_vector(self, promql: str) -> VectorResult:
        return VectorResult(promql, error=self.error)


def _connection_reason(exc: requests.ConnectionError) -> str:
    """The innermost useful words of a connection error, e.g. ``connection refused``."""
    text = str(exc)
    for needle, short in (
        ("timed out", "timed out"),
        ("Connection refused", "connection refused"),
        ("Name or service not known", "name does not resolve"),
        ("Temporary failure in name resolution", "name does not resolve"),
        ("No route to host", "no route to host"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed without an answer"),
    ):
        if needle in text:
            return short
    return text[:200]
