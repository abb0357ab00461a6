"""The OpenAPI document as the API behaves: every error status an operation can answer, each with
the error envelope as its body, and a token asked for only where one is required.

FastAPI documents a 422 in its own `{"detail": ...}` shape, which this API never sends, and marks
every route that reads an optional token as needing one. Rather than repeat `responses=` on each
of ~40 routes (and let them drift), the statuses are derived here from what each route is made
of, by the same rules that produce them at run time:

- 400: the request has a body that cannot be parsed (and the Stripe webhook's unsigned, stale or
  tampered one);
- 401: the route requires a signed-in user (a `SignedInScheme` among its dependencies), or checks
  credentials sent in its body (sign-in, refresh, sign-out);
- 403: the route requires a signed-in user, who may lack the role;
- 404: the path or a `…Id` parameter names an object, or a signed-in user changes something (the
  body names objects);
- 409: a signed-in user changes something (the object is not in a state that allows it);
- 413: the request has a body (the gateway caps its size);
- 422: the request has a body or parameters to validate;
- 429: sign-up, sign-in and refresh (per-address and per-account limits);
- 503: anything under /api: a dependency (Stripe, the password hasher) is unavailable.

tests/api/test_openapi_contract.py holds the server to it with schemathesis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import _get_api_route_for_openapi, get_openapi

from api.auth.dependencies import SignedInScheme
from api.envelope import ErrorEnvelope

_ERROR_REF = "#/components/schemas/ErrorEnvelope"
_DESCRIPTIONS = {
    "400": "Bad request",
    "401": "No valid access token",
    "403": "The caller's role may not do this",
    "404": "No such object, or not one the caller may see",
    "409": "The object is not in a state that allows this",
    "413": "Request body too large",
    "422": "Invalid request; `error.details` names each field",
    "429": "Too many attempts; `Retry-After` says when to try again",
    "503": "A dependency is unavailable; `Retry-After` says when to try again",
}
_RATE_LIMITED = ("/api/auth/register", "/api/auth/login", "/api/auth/refresh")
# Public operations that check a password or token of their own (in the body).
_CREDENTIALS = ("/api/auth/login", "/api/auth/refresh", "/api/auth/logout")
_WEBHOOK = "/api/payments/webhook"
_MUTATING = {"post", "put", "patch", "delete"}


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` with the corrected document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = corrected(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title, version=app.version, routes=app.routes, description=app.description
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ErrorEnvelope.model_json_schema(ref_template=_REF_TEMPLATE)[
        "$defs"
    ].items():
        schemas.setdefault(name, schema)
    envelope = ErrorEnvelope.model_json_schema(ref_template=_REF_TEMPLATE)
    envelope.pop("$defs", None)
    schemas["ErrorEnvelope"] = envelope
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)

    for route in _api_routes(app):
        authenticated = _requires_sign_in(route.dependant)
        for method in route.methods or ():
            operation = spec["paths"][route.path_format][method.lower()]
            if not authenticated:
                # Public: a token is read if sent (to show an owner more), never required.
                operation.pop("security", None)
            responses = operation.setdefault("responses", {})
            for status in _statuses(route, method.lower(), operation, authenticated):
                responses[status] = {
                    "description": _DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                }
    return spec


_REF_TEMPLATE = "#/components/schemas/{model}"


def _statuses(
    route: Any, method: str, operation: dict[str, Any], authenticated: bool
) -> Iterator[str]:
    path: str = route.path_format
    has_body = "requestBody" in operation or path == _WEBHOOK
    names_objects = "{" in path or any(
        p["name"].endswith(("Id", "_id")) for p in operation.get("parameters", ())
    )
    if has_body:
        yield "400"
    if authenticated or path in _CREDENTIALS:
        yield "401"
    if authenticated:
        yield "403"
    if names_objects or (authenticated and method in _MUTATING):
        yield "404"
    if authenticated and method in _MUTATING:
        yield "409"
    if has_body:
        yield "413"
    if has_body or operation.get("parameters"):
        yield "422"
    if path in _RATE_LIMITED:
        yield "429"
    if path.startswith("/api/"):
        yield "503"


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every documented route (an APIRoute, or FastAPI's view of one through an included router,
    which has its attributes), walked as FastAPI's own document walks them."""
    for context in routing.iter_route_contexts(app.routes):
        route = _get_api_route_for_openapi(context)
        if route is not None and route.include_in_schema:
            yield route


def _requires_sign_in(dependant: Dependant) -> bool:
    """Whether a signed-in user is required by any of `dependant`'s dependencies, however deep."""
    return any(
        isinstance(d.call, SignedInScheme) or _requires_sign_in(d) for d in dependant.dependencies
    )
