"""The HTTP client the load is sent with: aiohttp (the default) or httpx.

The client shares the 2 cores with the server and PostgreSQL, so its own cost is part of what
the run sees. Measured here (16 connections): httpx ≈ 1.0-1.4 ms of client CPU per request,
aiohttp ≈ 0.3-0.4 ms. At 300 req/s either leaves the server room; above ~450 req/s httpx's share
starves the one-worker server (p99 227 ms at 450 req/s), while with aiohttp it answered 500 req/s
at p99 15 ms and 600 at p99 83 ms, so aiohttp is the default: the run measures the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import aiohttp
import httpx

ClientKind = Literal["httpx", "aiohttp"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("httpx", "aiohttp")
# (path, JSON body, headers) -> HTTP status
Patch = Callable[[str, Any, dict[str, str]], Awaitable[int]]


@asynccontextmanager
async def patch_client(
    kind: ClientKind, base_url: str, *, connections: int, timeout_s: float
) -> AsyncIterator[Patch]:
    """A PATCH function over at most `connections` keep-alive connections to `base_url`."""
    if kind == "httpx":
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as hc:

            async def patch_httpx(path: str, body: Any, headers: dict[str, str]) -> int:
                response = await hc.patch(path, json=body, headers=headers)
                return response.status_code

            yield patch_httpx
        return
    async with aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as session:

        async def patch_aiohttp(path: str, body: Any, headers: dict[str, str]) -> int:
            async with session.patch(path, json=body, headers=headers) as response:
                await response.read()
                return response.status

        yield patch_aiohttp
