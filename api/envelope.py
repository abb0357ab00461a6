"""The seed's response envelope: `{"success": true, "data": ...}` and its error twin."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    success: bool = True
    data: T


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    success: bool = False
    error: ErrorBody


def ok(data: T) -> Envelope[T]:
    """Wrap a result in the success envelope. Not `Envelope[T](...)`: subscripting the generic
    at run time is a class lookup per call (~3 us), and FastAPI validates the envelope against
    the route's own `Envelope[...]` anyway."""
    return Envelope(data=data)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error envelope as a plain dict, for handlers and middleware that answer directly."""
    return {"success": False, "error": {"code": code, "message": message, "details": details}}
