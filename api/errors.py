"""One error base for the write side, rendered by one handler into the seed's error envelope."""

from __future__ import annotations

from typing import Any


class TulifoError(Exception):
    """An error a client can act on: it carries its own HTTP status and machine-readable code."""

    status_code = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers = headers or {}


class Invalid(TulifoError):
    status_code = 422
    code = "VALIDATION_ERROR"


class Unauthorized(TulifoError):
    status_code = 401
    code = "UNAUTHORIZED"

    def __init__(self, message: str = "authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(TulifoError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(TulifoError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(TulifoError):
    status_code = 409
    code = "CONFLICT"


class TooManyRequests(TulifoError):
    status_code = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(retry_after)})
        kwargs.setdefault("details", {"retryAfter": retry_after})
        super().__init__(message, **kwargs)


class PayloadTooLarge(TulifoError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailable(TulifoError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
