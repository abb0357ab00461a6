"""Liveness (`/health`) and readiness (`/health/ready`, one line per dependency)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from elasticsearch import AsyncElasticsearch
from fastapi.responses import JSONResponse

from api.routers import GatedRouter
from api.state import StateDep
from infrastructure.processes import port_open

router = GatedRouter(tags=["health"])

# A dependency that takes longer than this to answer a trivial query is as good as down.
CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def live() -> dict[str, Any]:
    return {"success": True, "data": {"status": "ok"}}


async def _timed(coro: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT_S)
    except Exception as exc:
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def _kafka_reachable(bootstrap: str) -> None:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not await asyncio.to_thread(port_open, host, int(port), CHECK_TIMEOUT_S):
        raise ConnectionError(f"nothing answers at {bootstrap}")


async def _elasticsearch_serving(search: AsyncElasticsearch) -> None:
    # One attempt within the check's own deadline, not the client's 10 s and two retries.
    health = await search.options(request_timeout=CHECK_TIMEOUT_S, max_retries=0).cluster.health()
    # Yellow (replicas unassigned) is a single node's normal; red means some data cannot be read.
    if health["status"] == "red":
        raise ConnectionError("cluster health is red")


async def _elasticsearch(search: AsyncElasticsearch | None) -> dict[str, Any]:
    if search is None:
        # Not configured (TULIFO_ELASTICSEARCH_URL unset): a choice, not an outage.
        return {"status": "off"}
    return await _timed(_elasticsearch_serving(search))


@router.get("/health/ready")
async def ready(state: StateDep) -> JSONResponse:
    postgres, redis, kafka, mongodb, elasticsearch = await asyncio.gather(
        _timed(state.pool.fetchval("SELECT 1")),
        _timed(state.redis.ping()),
        _timed(_kafka_reachable(state.settings.kafka_bootstrap)),
        _timed(state.mongo.command("ping")),
        _elasticsearch(state.search),
    )
    # Kafka being down does not stop writes (they wait in the outbox), MongoDB only serves
    # notification reads and Elasticsearch only search: any of them down degrades the API, it
    # does not make it unready.
    for optional in (kafka, mongodb, elasticsearch):
        optional["required"] = False
    checks = {
        "postgres": postgres,
        "redis": redis,
        "kafka": kafka,
        "mongodb": mongodb,
        "elasticsearch": elasticsearch,
    }
    is_ready = postgres["status"] == "up" and redis["status"] == "up"
    # "off" is a dependency this deployment does not use: nothing is missing.
    all_up = all(check["status"] in ("up", "off") for check in checks.values())
    status = "ready" if is_ready and all_up else "degraded" if is_ready else "unready"
    return JSONResponse(
        {"success": is_ready, "data": {"status": status, "checks": checks}},
        status_code=200 if is_ready else 503,
    )
