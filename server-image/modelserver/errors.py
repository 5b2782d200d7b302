"""Errors that carry their HTTP answer.

Why: every failure a client can cause must become a 4xx with a message naming the offending field,
and the handlers should not need to know how that is rendered. Raising :class:`ApiError` anywhere
below the HTTP layer gives exactly one place (the route wrapper) that turns it into
``{"error": "..."}`` with the right status.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A client-visible error: HTTP ``status`` plus a human-readable ``message``."""

    def __init__(self, status: int, message: str, /, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body: always ``{"error": message}``, plus any extra fields."""
        return {"error": self.message, **self.extra}


def bad_request(message: str, /, **extra: Any) -> ApiError:
    """400: the request is malformed or does not fit the model."""
    return ApiError(400, message, **extra)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: error messages quote what was sent, never all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LoadError(Exception):
    """The model could not be loaded, verified, warmed up or self-checked: the server never gets ready."""
