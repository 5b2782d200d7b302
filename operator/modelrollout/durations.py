"""Time as Kubernetes writes it: Go-style durations ("30s", "1m30s", "250ms") and RFC 3339 stamps.

The CRD checks the same grammar with a regex and CEL's ``duration()``, so anything that reaches the
operator parses; the parser still fails with a clear message for direct callers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError naming the bad text otherwise."""
    if not re.fullmatch(DURATION_PATTERN, text or ""):
        raise ValueError(f"invalid duration {text!r}: use forms like 30s, 5m, 1h30m, 250ms")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds the way Prometheus range selectors accept them (integer seconds or ms)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 from the API server (``...Z``) or a datetime from pydantic, to an aware datetime;
    None when absent or garbled (a status timestamp must never crash a reader)."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
