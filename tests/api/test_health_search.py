"""Readiness and Elasticsearch: up when it answers; down or not configured, the API stays ready."""

from __future__ import annotations

from typing import Any

import httpx

from infrastructure.processes import free_port
from infrastructure.settings import Settings
from tests.api.conftest import api_of_its_own, client_from, unique_ip


async def readiness(settings: Settings) -> tuple[int, dict[str, Any]]:
    """/health/ready of an API of its own on `settings`."""
    async with api_of_its_own(settings) as app, client_from(app, ip=unique_ip()) as client:
        response = await client.get("/health/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body["data"]


async def test_readiness_reports_elasticsearch_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    check = response.json()["data"]["checks"]["elasticsearch"]
    assert check["status"] == "up", check
    assert check["required"] is False
    assert check["latency_ms"] >= 0


async def test_every_dependency_up_is_ready(settings: Settings, kafka: str) -> None:
    status, data = await readiness(settings.model_copy(update={"kafka_bootstrap": kafka}))
    assert {name: check["status"] for name, check in data["checks"].items()} == {
        "postgres": "up",
        "redis": "up",
        "kafka": "up",
        "mongodb": "up",
        "elasticsearch": "up",
    }
    assert (status, data["status"]) == (200, "ready")


async def test_an_elasticsearch_that_does_not_answer_degrades_the_api(
    settings: Settings, kafka: str
) -> None:
    silent = settings.model_copy(
        update={"kafka_bootstrap": kafka, "elasticsearch_url": f"http://127.0.0.1:{free_port()}"}
    )
    status, data = await readiness(silent)
    check = data["checks"]["elasticsearch"]
    assert check["status"] == "down"
    assert check["required"] is False
    assert "Connection" in check["error"], check
    assert (status, data["status"]) == (200, "degraded")


async def test_search_not_configured_is_off_and_not_missing(settings: Settings, kafka: str) -> None:
    off = settings.model_copy(update={"kafka_bootstrap": kafka, "elasticsearch_url": None})
    status, data = await readiness(off)
    assert data["checks"]["elasticsearch"] == {"status": "off", "required": False}
    assert (status, data["status"]) == (200, "ready")
