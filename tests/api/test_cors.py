"""The gateway applies Starlette's CORS rules itself (api/cors.CorsPolicy): every answer carries the
CORS headers CORSMiddleware would have given it, checked against CORSMiddleware itself."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.cors import CorsPolicy
from api.middleware import GatewayMiddleware

ALLOWED = "http://localhost:3000"


async def _hello(request: Request) -> Response:
    # A response that already varies on something: CORS must add to it, not replace it.
    headers = {"Vary": "Accept-Encoding"} if request.query_params.get("vary") else None
    return PlainTextResponse("hello", headers=headers)


def _options(allow_all: bool, credentials: bool) -> dict[str, Any]:
    return {
        "allow_origins": ["*"] if allow_all else [ALLOWED],
        "allow_credentials": credentials,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Authorization", "Content-Type"],
        "expose_headers": ["X-Request-ID"],
        "max_age": 600,
    }


def _clients(options: dict[str, Any]) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    inner = Starlette(routes=[Route("/hello", _hello, methods=["GET", "POST"])])
    ours = GatewayMiddleware(inner, max_body_bytes=1024, cors=CorsPolicy(**options))
    theirs = CORSMiddleware(inner, **options)
    return (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=ours), base_url="http://t"),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=theirs), base_url="http://t"),
    )


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.multi_items()
        if name.startswith("access-control-") or name == "vary"
    }


REQUESTS = [
    pytest.param("GET", "/hello", {}, id="no origin"),
    pytest.param("GET", "/hello?vary=1", {}, id="no origin, response varies already"),
    pytest.param("GET", "/hello", {"Origin": ALLOWED}, id="allowed origin"),
    pytest.param("GET", "/hello?vary=1", {"Origin": ALLOWED}, id="allowed origin, varies"),
    pytest.param("POST", "/hello", {"Origin": "http://evil.example"}, id="other origin"),
    pytest.param(
        "OPTIONS",
        "/hello",
        {"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
        id="preflight allowed",
    ),
    pytest.param(
        "OPTIONS",
        "/hello",
        {
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
        id="preflight with headers",
    ),
]


@pytest.mark.parametrize(("allow_all", "credentials"), [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
async def test_cors_headers_are_starlettes(
    allow_all: bool, credentials: bool, method: str, path: str, headers: dict[str, str]
) -> None:
    ours, theirs = _clients(_options(allow_all, credentials))
    async with ours, theirs:
        mine = await ours.request(method, path, headers=headers)
        reference = await theirs.request(method, path, headers=headers)

    assert mine.status_code == reference.status_code
    assert _cors_headers(mine) == _cors_headers(reference)


async def test_a_refused_preflight_is_the_envelope_with_starlettes_status() -> None:
    ours, theirs = _clients(_options(allow_all=False, credentials=True))
    refused = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    async with ours, theirs:
        mine = await ours.options("/hello", headers=refused)
        reference = await theirs.options("/hello", headers=refused)

    assert mine.status_code == reference.status_code == 400
    assert mine.json()["error"]["code"] == "CORS_REFUSED"
    assert "access-control-allow-origin" not in mine.headers
