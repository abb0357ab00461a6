"""The seed's envelope, security headers, request ids, body limit, health and metrics."""

from __future__ import annotations

import httpx


async def test_unknown_route_answers_404_in_the_error_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nowhere")
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "NOT_FOUND"
    assert "/api/nowhere" in body["error"]["message"]


async def test_liveness_answers_ok_with_security_headers_and_a_request_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"status": "ok"}}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert len(response.headers["x-request-id"]) == 32


async def test_a_callers_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_readiness_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    body = response.json()
    checks = body["data"]["checks"]
    assert checks["postgres"]["status"] == "up"
    assert checks["redis"]["status"] == "up"
    assert checks["mongodb"]["status"] == "up"
    # The test settings point Kafka at a closed port: writes still work, so only "degraded".
    assert checks["kafka"]["status"] == "down"
    assert response.status_code == 200
    assert body["data"]["status"] == "degraded"


async def test_an_oversized_body_is_refused_with_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_streamed_body_without_length_is_cut_at_the_limit(
    client: httpx.AsyncClient,
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 65_536

    response = await client.post(
        "/api/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_metrics_are_served_in_prometheus_format(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "tulifo_http_requests_total" in response.text
    assert 'route="/health"' in response.text


async def test_cors_preflight_allows_configured_origins_only(client: httpx.AsyncClient) -> None:
    allowed = await client.options(
        "/api/auth/login",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers.get("access-control-allow-origin") == "http://localhost:3000"
    refused = await client.options(
        "/api/auth/login",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in refused.headers
