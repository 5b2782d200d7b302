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
from dataclasses import dataclass
from typing import Any, Protocol, Self

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry


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


class MetricsProvider(Protocol):
    """Anything that turns PromQL into one number; tests use a fake, production :class:`PrometheusProvider`."""

    def query(self, promql: str) -> QueryResult:
        """Evaluate ``promql`` at the current time; never raises."""
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


_API_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


def _api_error_text(exc: PrometheusApiClientException) -> str:
    """Pull Prometheus' own ``error`` message out of the client's ``HTTP Status Code N (b'...')`` text."""
    text = str(exc)
    match = _API_ERROR.match(text)
    if not match:
        return text
    status, body = match.group(1), match.group(2)
    if body.startswith(("b'", 'b"')):
        body = body[2:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    try:
        payload = json.loads(body)
        detail = f"{payload.get('errorType', 'error')}: {payload.get('error', body)}"
    except (ValueError, AttributeError):
        detail = body[:300]
    return f"HTTP {status}: {detail}"


class PrometheusProvider:
    """Instant queries against one Prometheus, bounded by ``timeout_seconds`` each.

    Create one per gate check and :meth:`close` it afterwards (or use it as a context manager): the
    circuit breaker is meant to last one check, and the HTTP session's pooled connection one check.
    """

    def __init__(
        self,
        address: str,
        timeout_seconds: float = 10.0,
        *,
        disable_ssl: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout_seconds = float(timeout_seconds)
        self._client = PrometheusConnect(
            url=self.address,
            headers=headers,
            disable_ssl=disable_ssl,
            retry=Retry(total=0, read=False, raise_on_status=False),
            timeout=self.timeout_seconds,
        )
        self._down: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def query(self, promql: str) -> QueryResult:
        """Evaluate ``promql`` now; every failure becomes a :class:`QueryResult` with ``error`` set."""
        if self._down is not None:
            return QueryResult(promql, error=f"skipped: {self._down}")
        started = time.monotonic()
        try:
            data = self._client.custom_query(
                promql,
                params={"timeout": f"{self.timeout_seconds:g}s"},
                timeout=self.timeout_seconds,
            )
        except requests.Timeout:
            self._down = f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s"
            return QueryResult(promql, error=self._down, seconds=time.monotonic() - started)
        except requests.ConnectionError as exc:
            reason = _connection_reason(exc)
            if reason == "timed out":
                self._down = f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s"
            else:
                self._down = f"Prometheus at {self.address} is unreachable ({reason})"
            return QueryResult(promql, error=self._down, seconds=time.monotonic() - started)
        except PrometheusApiClientException as exc:
            error = f"Prometheus rejected the query: {_api_error_text(exc)}"
            return QueryResult(promql, error=error, seconds=time.monotonic() - started)
        except requests.RequestException as exc:  # invalid JSON, bad URL, TLS, ...
            error = f"query to Prometheus at {self.address} failed: {type(exc).__name__}: {exc}"
            return QueryResult(promql, error=error, seconds=time.monotonic() - started)
        except (KeyError, TypeError, ValueError) as exc:  # a 200 that is not a Prometheus API answer
            error = f"unexpected answer from {self.address}: {type(exc).__name__}: {exc}"
            return QueryResult(promql, error=error, seconds=time.monotonic() - started)
        except Exception as exc:  # last resort: a gate check must report, never crash the reconcile
            error = f"query to Prometheus at {self.address} failed: {type(exc).__name__}: {exc}"
            return QueryResult(promql, error=error, seconds=time.monotonic() - started)
        value, parse_error = parse_result(data)
        return QueryResult(promql, value=value, error=parse_error, seconds=time.monotonic() - started)


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
