"""Prometheus metrics of the HTTP layer, served at /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "tulifo_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
# Buckets around the 50 ms p99 target for writes (DESIGN.md §6), and bcrypt's ~250 ms logins.
HTTP_LATENCY = Histogram(
    "tulifo_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
