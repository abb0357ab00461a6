"""The auto-release end to end, on a one-second review window: the worker delivers through the
API → the outbox relay → Kafka → the Faust worker's scheduling agent → a job in `worker_queue`
→ `tulifo jobs` (a process) → the escrow released as the client's release would → its
`escrow.released` on Kafka, and the job's history in `worker_queue_logs`."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from elasticsearch import AsyncElasticsearch

from bridges.relay import OutboxRelay
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from streams.packing import unpack
from streams.topics import stream_topic
from tables import jobs as store
from tests.api.conftest import outbox_events
from tests.api.gigs import funded_gig
from tests.bridges.support import read_topics
from tests.conftest import APP_LIFESPAN_S, wait_until
from tests.databases import fresh_database
from tests.streams.workers import REPO, pipeline_settings, worker_env

# The worker joins its consumer group in seconds on Tansu; the margin is for a busy machine.
DEADLINE_S = 90.0


@dataclass
class Stack:
    settings: Settings
    http: httpx.AsyncClient
    mongo: MongoDatabase
    processes: list[ManagedProcess]

    def logs(self) -> str:
        return "\n".join(
            f"--- {proc.name}\n{proc.log_path.read_text(errors='replace')[-3000:]}"
            for proc in self.processes
            if proc.log_path is not None and proc.log_path.exists()
        )


@pytest.fixture
async def stack(
    kafka: str,
    mongo_url: str,
    redis_url: str,
    elasticsearch_url: str,
    localstripe_url: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    async with fresh_database() as database_url:
        settings = pipeline_settings(
            database_url=database_url,
            kafka=kafka,
            mongo_url=mongo_url,
            prefix="j",
            mongo_database=f"jobs_{uuid.uuid4().hex[:8]}",
            redis_url=redis_url,
            elasticsearch_url=elasticsearch_url,
            search_index_prefix=f"j{uuid.uuid4().hex[:8]}_",
            stripe_api_base=localstripe_url,
            bcrypt_rounds=4,
            register_max_per_ip=1_000_000,
            review_window_seconds=1,
        )
        common = {
            "TULIFO_REVIEW_WINDOW_SECONDS": "1",
            "TULIFO_STRIPE_API_BASE": localstripe_url,
            "TULIFO_JOBS_POLL_SECONDS": "0.1",
        }
        worker = ManagedProcess.spawn(
            "worker",
            [sys.executable, "-m", "streams.worker"],
            env=worker_env(
                settings,
                TULIFO_FAUST_DATA_DIR=str(tmp_path / "faust"),
                TULIFO_WORKER_AGENTS="jobs",
                **common,
            ),
            cwd=REPO,
            log_path=tmp_path / "worker.log",
        )
        runner = ManagedProcess.spawn(
            "jobs",
            [sys.executable, "-m", "bridges.jobs"],
            env=worker_env(settings, **common),
            cwd=REPO,
            log_path=tmp_path / "jobs.log",
        )
        relay = OutboxRelay(settings)
        relaying = asyncio.create_task(relay.run())
        mongo_client = create_mongo_client(settings)
        from api.app import create_app

        app = create_app(settings)
        try:
            async with (
                LifespanManager(
                    app, startup_timeout=APP_LIFESPAN_S, shutdown_timeout=APP_LIFESPAN_S
                ),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                ) as http,
            ):
                yield Stack(
                    settings, http, mongo_database(mongo_client, settings), [worker, runner]
                )
        finally:
            await relay.stop()
            await relaying
            runner.stop()
            worker.stop()
            await mongo_client.drop_database(settings.mongo_database)
            mongo_client.close()


async def test_a_delivery_left_unanswered_is_released_by_the_job(
    stack: Stack, stripe_api: Any
) -> None:
    settings = stack.settings
    secret = settings.stripe_webhook_secret.get_secret_value()
    gig = await funded_gig(stack.http, stripe_api, secret=secret, delivered=True)

    async def released() -> bool:
        for proc in stack.processes:
            assert proc.alive, f"{proc.name} died:\n{stack.logs()}"
        status = await stack.http.get(f"/api/escrow/{gig.escrow_id}", headers=gig.client.headers)
        return bool(status.json()["data"]["status"] == "released")

    try:
        await wait_until(released, timeout=DEADLINE_S, what="the escrow released by the job")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None

    db = await asyncpg.connect(settings.database_url)
    try:
        [delivered] = await outbox_events(db, event_type="project.delivered", key=gig.project_id)
        released_events = await outbox_events(db, event_type="escrow.released", key=gig.project_id)
        project = await db.fetchval("SELECT status FROM projects WHERE id = $1", gig.project_id)
    finally:
        await db.close()
    assert len(released_events) == 1 and project == "completed"
    job = await store.get_job(stack.mongo, store.job_id("auto_release", delivered["event_id"]))
    assert job is not None and job.status == "done" and job.attempts == 1

    # The release travels on like any other: its event reaches Kafka.
    wanted = str(released_events[0]["event_id"])

    def has_release(records: list[Any]) -> bool:
        return any(wanted in ids_of(record) for record in records)

    records = await read_topics(
        settings.kafka_bootstrap,
        [stream_topic("gigs", settings.topic_prefix)],
        until=has_release,
        timeout=DEADLINE_S,
    )
    assert has_release(records)

    # And the runner's history is in Elasticsearch.
    es = AsyncElasticsearch(settings.elasticsearch_url)
    try:
        index = store.log_index(settings.search_index_prefix)

        async def logged() -> list[str]:
            await es.indices.refresh(index=index)
            found = await es.search(index=index, query={"term": {"jobId": job.id}})
            return sorted(hit["_source"]["outcome"] for hit in found["hits"]["hits"])

        assert await wait_until(logged, timeout=30, what="the job's log") == ["done", "started"]
    finally:
        await es.close()


def ids_of(record: Any) -> list[str]:
    return [str(envelope.get("event_id")) for envelope in unpack(record.value)]
