"""/api/admin/jobs: admins see the scheduled jobs, the dead ones with why, and retry them; nobody
else sees or retries anything."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.jobs.kinds import JobWork
from bridges.jobs import JobRunner
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from tables import jobs as store
from tables.jobs import Job
from tests.api.conftest import Account, register
from tests.api.gigs import auth, make_admin
from tests.conftest import wait_until


@pytest.fixture
def mongo(app: FastAPI) -> MongoDatabase:
    db: MongoDatabase = app.state.tulifo.mongo
    return db


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_admin(app, client)


async def dead_job(mongo: MongoDatabase, kind: str, *, error: str = "it broke") -> str:
    at = datetime.now(UTC)
    await store.schedule(mongo, kind=kind, subject="s", payload={"n": 1}, run_at=at, now=at)
    job = await store.claim(mongo, owner="t", now=at, lease=timedelta(seconds=60), kinds=[kind])
    assert job is not None
    await store.fail(
        mongo, job, now=at, error=error, max_attempts=1, backoff=store.Backoff(), permanent=True
    )
    return job.id


async def all_pages(client: httpx.AsyncClient, who: Account, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = query + (f"&after={after}" if after else "")
        response = await client.get(f"/api/admin/jobs?{params}", headers=auth(who))
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        items += page["items"]
        after = page["nextAfter"]
        if after is None:
            return items


async def test_a_job_that_keeps_failing_ends_dead_and_admins_see_why(
    app: FastAPI,
    client: httpx.AsyncClient,
    mongo: MongoDatabase,
    admin: Account,
    settings: Settings,
) -> None:
    kind = f"broken_{uuid.uuid4().hex[:8]}"

    async def broken(work: JobWork, job: Job) -> str:
        raise ConnectionError("the partner API refused the connection")

    quick = settings.model_copy(
        update={
            "jobs_max_attempts": 3,
            "jobs_backoff_first_seconds": 0.05,
            "jobs_backoff_max_seconds": 0.1,
            "jobs_poll_seconds": 0.05,
        }
    )
    at = datetime.now(UTC)
    await store.schedule(mongo, kind=kind, subject="one", payload={"x": 1}, run_at=at, now=at)
    work = JobWork(settings=quick, pool=app.state.tulifo.pool, stripe=app.state.stripe_gateway)
    runner = JobRunner(quick, mongo=mongo, work=work, kinds={kind: broken}, name="t")
    task = asyncio.ensure_future(runner.run())

    async def shown_dead() -> list[dict[str, Any]]:
        return [
            item
            for item in await all_pages(client, admin, "status=dead&limit=100")
            if item["kind"] == kind
        ]

    try:
        shown = await wait_until(shown_dead, timeout=30, what="the job dead in the admin view")
    finally:
        await runner.stop()
        await task
    assert len(shown) == 1
    item = shown[0]
    assert (item["id"], item["status"], item["attempts"]) == (f"{kind}:one", "dead", 3)
    assert item["lastError"] == "ConnectionError: the partner API refused the connection"
    assert item["payload"] == {"x": 1} and item["leaseOwner"] is None


async def test_retrying_a_dead_job_schedules_it_now_from_its_first_attempt(
    client: httpx.AsyncClient, mongo: MongoDatabase, admin: Account
) -> None:
    job_id = await dead_job(mongo, f"k_{uuid.uuid4().hex[:8]}")
    response = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=auth(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert (body["data"]["status"], body["data"]["attempts"]) == ("scheduled", 0)
    job = await store.get_job(mongo, job_id)
    assert job is not None and job.status == "scheduled"
    assert job.next_run_at <= datetime.now(UTC)

    again = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=auth(admin))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "JOB_NOT_DEAD"
    missing = await client.post("/api/admin/jobs/nothing:here/retry", headers=auth(admin))
    assert missing.status_code == 404


async def test_a_status_that_does_not_exist_is_refused_naming_the_field(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.get("/api/admin/jobs?status=zombie", headers=auth(admin))
    assert response.status_code == 422
    fields = [detail["field"] for detail in response.json()["error"]["details"]]
    assert fields == ["query.status"]


@pytest.mark.parametrize("role", ["anonymous", "client", "worker"])
async def test_only_admins_see_or_retry_jobs(
    client: httpx.AsyncClient, mongo: MongoDatabase, role: str
) -> None:
    job_id = await dead_job(mongo, f"k_{uuid.uuid4().hex[:8]}")
    who = None if role == "anonymous" else await register(client, role=role)
    expected = 401 if who is None else 403
    listed = await client.get("/api/admin/jobs?status=dead", headers=auth(who))
    retried = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=auth(who))
    assert (listed.status_code, retried.status_code) == (expected, expected)
    assert listed.json()["success"] is False
    job = await store.get_job(mongo, job_id)
    assert job is not None and job.status == "dead"  # untouched
