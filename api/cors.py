"""CORS as Starlette does it, with a refused preflight answered in the error envelope.

Starlette refuses a preflight with a plain-text 400 ("Disallowed CORS origin"); every other
error of the API is the envelope, and clients parse one shape.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

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
