"""CORS as Starlette does it, with a refused preflight answered in the error envelope.

Starlette refuses a preflight with a plain-text 400 ("Disallowed CORS origin"); every other
error of the API is the envelope, and clients parse one shape.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.envelope import error_body


class EnvelopeCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode(errors="replace")  # "Disallowed CORS origin, …"
        what = refused.removeprefix("Disallowed CORS ").strip() or "request"
        headers = {
            key: value
            for key, value in response.headers.items()
            if key.lower() not in ("content-length", "content-type")
        }
        return JSONResponse(
            error_body(
                "CORS_REFUSED",
                f"cross-origin request refused: {what} not allowed",
                {"refused": [part.strip() for part in what.split(",")]},
            ),
            status_code=response.status_code,
            headers=headers,
        )


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("CorsPolicy is applied by the gateway, never called as an app")


class CorsPolicy(EnvelopeCORSMiddleware):
    """Starlette's CORS rules, applied by the gateway (api/middleware.py) rather than as a layer
    of their own: a layer wraps every response's `send` and rebuilds its headers through
    MutableHeaders, ~20 µs a request that mostly carry no Origin at all.

    Answers as CORSMiddleware does: preflights through `preflight_response` (the envelope when
    refused), and on other responses the simple headers and the mirrored origin when one is sent
    and allowed, and `Vary: Origin` always (tests/api/test_cors.py holds it to Starlette's)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(_no_app, **options)
        self._simple = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.simple_headers.items()
        ]
        self._simple_names = {name for name, _ in self._simple}

    def is_preflight(self, method: str, origin: str | None, has_request_method: bool) -> bool:
        return origin is not None and method == "OPTIONS" and has_request_method

    def response_headers(
        self, headers: list[tuple[bytes, bytes]], origin: str | None
    ) -> list[tuple[bytes, bytes]]:
        """`headers` of a response (not a preflight's) with the CORS headers for `origin`."""
        vary = [value for name, value in headers if name.lower() == b"vary"]
        replaced = {b"vary"} | (self._simple_names if origin is not None else set())
        answer = [(name, value) for name, value in headers if name.lower() not in replaced]
        if origin is not None:
            answer.extend(self._simple)
            explicit = (self.allow_all_origins and self.allow_credentials) or (
                not self.allow_all_origins and self.is_allowed_origin(origin)
            )
            if explicit:
                answer = [(n, v) for n, v in answer if n != b"access-control-allow-origin"]
                answer.append((b"access-control-allow-origin", origin.encode("latin-1")))
        answer.append((b"vary", b", ".join([*vary, b"Origin"])))
        return answer
