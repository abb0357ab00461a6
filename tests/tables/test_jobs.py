"""The job store in MongoDB: scheduling once per subject, claims that never hand one job to two
runners, leases that expire, retries with backoff and the dead state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch

from infrastructure.mongo import MongoDatabase
from tables.jobs import (
    WORKER_QUEUE,
    Backoff,
    claim,
    ensure_indexes,
    ensure_log_index,
    extend_lease,
    fail,
    finish,
    get_job,
    list_jobs,
    log_index,
    revive,
    schedule,
    write_log,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
BACKOFF = Backoff(first_s=30, max_s=120)


async def a_job(db: MongoDatabase, subject: str = "e1", *, at: datetime = NOW) -> str:
    await schedule(
        db, kind="auto_release", subject=subject, payload={"p": subject}, run_at=at, now=NOW
    )
    return f"auto_release:{subject}"


async def test_scheduling_twice_for_one_subject_keeps_the_first_job(
    mongo_db: MongoDatabase,
) -> None:
    assert await schedule(
        mongo_db, kind="auto_release", subject="e1", payload={"v": 1}, run_at=NOW, now=NOW
    )
    assert not await schedule(
        mongo_db,
        kind="auto_release",
        subject="e1",
        payload={"v": 2},
        run_at=NOW + timedelta(days=1),
        now=NOW,
    )
    job = await get_job(mongo_db, "auto_release:e1")
    assert job is not None
    assert (job.payload, job.next_run_at, job.status, job.attempts) == (
        {"v": 1},
        NOW,
        "scheduled",
        0,
    )
    assert await mongo_db[WORKER_QUEUE].count_documents({}) == 1


async def test_only_due_jobs_are_claimed(mongo_db: MongoDatabase) -> None:
    await ensure_indexes(mongo_db)
    await a_job(mongo_db, "later", at=NOW + timedelta(minutes=5))
    assert await claim(mongo_db, owner="r1", now=NOW, lease=LEASE) is None
    job = await claim(mongo_db, owner="r1", now=NOW + timedelta(minutes=5), lease=LEASE)
    assert job is not None and job.id == "auto_release:later"
    assert (job.status, job.attempts, job.lease_owner) == ("running", 1, "r1")


async def test_a_running_job_is_not_claimed_again_until_its_lease_expires(
    mongo_db: MongoDatabase,
) -> None:
    await a_job(mongo_db)
    first = await claim(mongo_db, owner="r1", now=NOW, lease=LEASE)
    assert first is not None
    assert await claim(mongo_db, owner="r2", now=NOW + LEASE / 2, lease=LEASE) is None
    taken = await claim(mongo_db, owner="r2", now=NOW + LEASE + timedelta(seconds=1), lease=LEASE)
    assert taken is not None and (taken.lease_owner, taken.attempts) == ("r2", 2)
    # The first runner lost its lease: what it writes now changes nothing.
    assert not await finish(mongo_db, first, now=NOW + LEASE * 2)
    assert not await extend_lease(mongo_db, first, now=NOW + LEASE * 2, lease=LEASE)
    assert await finish(mongo_db, taken, now=NOW + LEASE * 2)
    done = await get_job(mongo_db, taken.id)
    assert done is not None and (done.status, done.lease_owner) == ("done", None)


async def test_many_concurrent_claims_hand_each_job_to_one_runner(mongo_db: MongoDatabase) -> None:
    for n in range(5):
        await a_job(mongo_db, f"e{n}")
    claims = await asyncio.gather(
        *(claim(mongo_db, owner=f"r{n}", now=NOW, lease=LEASE) for n in range(20))
    )
    won = [job.id for job in claims if job is not None]
    assert sorted(won) == [f"auto_release:e{n}" for n in range(5)]


async def test_failures_back_off_then_end_dead_with_the_reason(mongo_db: MongoDatabase) -> None:
    await a_job(mongo_db)
    now = NOW
    pauses = []
    for attempt in range(1, 4):
        job = await claim(mongo_db, owner="r1", now=now, lease=LEASE)
        assert job is not None and job.attempts == attempt
        status = await fail(
            mongo_db, job, now=now, error=f"boom {attempt}", max_attempts=3, backoff=BACKOFF
        )
        stored = await get_job(mongo_db, job.id)
        assert stored is not None and stored.last_error == f"boom {attempt}"
        if attempt < 3:
            assert status == "retrying"
            pauses.append(stored.next_run_at - now)
            assert await claim(mongo_db, owner="r1", now=now, lease=LEASE) is None
            now = stored.next_run_at
        else:
            assert status == "dead"
    assert pauses == [timedelta(seconds=30), timedelta(seconds=60)]
    assert await claim(mongo_db, owner="r1", now=now + timedelta(days=1), lease=LEASE) is None
    dead = await list_jobs(mongo_db, status="dead", limit=10)
    assert [job.id for job in dead] == ["auto_release:e1"]


def test_backoff_doubles_and_is_capped() -> None:
    assert [BACKOFF.delay(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 120, 120]


async def test_a_dead_job_revived_runs_again_from_its_first_attempt(
    mongo_db: MongoDatabase,
) -> None:
    job_id = await a_job(mongo_db)
    assert await revive(mongo_db, job_id, now=NOW) is None  # not dead: nothing to revive
    job = await claim(mongo_db, owner="r1", now=NOW, lease=LEASE)
    assert job is not None
    await fail(mongo_db, job, now=NOW, error="no", max_attempts=5, backoff=BACKOFF, permanent=True)
    later = NOW + timedelta(hours=1)
    revived = await revive(mongo_db, job_id, now=later)
    assert revived is not None and (revived.status, revived.attempts) == ("scheduled", 0)
    again = await claim(mongo_db, owner="r2", now=later, lease=LEASE)
    assert again is not None and again.attempts == 1


async def test_a_periodic_job_is_scheduled_again_when_done(mongo_db: MongoDatabase) -> None:
    await schedule(
        mongo_db, kind="sweep", subject="every", payload={}, run_at=NOW, now=NOW, every_s=300
    )
    job = await claim(mongo_db, owner="r1", now=NOW, lease=LEASE)
    assert job is not None and await finish(mongo_db, job, now=NOW)
    stored = await get_job(mongo_db, job.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.next_run_at) == (
        "scheduled",
        0,
        NOW + timedelta(seconds=300),
    )


async def test_the_log_is_written_once_per_attempt_and_outcome(
    elasticsearch_url: str, mongo_db: MongoDatabase
) -> None:
    await a_job(mongo_db)
    job = await claim(mongo_db, owner="r1", now=NOW, lease=LEASE)
    assert job is not None
    es = AsyncElasticsearch(elasticsearch_url)
    prefix = f"t{id(job)}_"
    try:
        await ensure_log_index(es, prefix=prefix)
        await ensure_log_index(es, prefix=prefix)  # a second runner starting: no error
        for _ in range(2):
            assert await write_log(es, prefix=prefix, job=job, outcome="done", runner="r1", at=NOW)
        await es.indices.refresh(index=log_index(prefix))
        found = await es.search(index=log_index(prefix), query={"term": {"jobId": job.id}})
        assert found["hits"]["total"]["value"] == 1
    finally:
        await es.close()


async def test_a_log_that_cannot_be_written_does_not_raise(mongo_db: MongoDatabase) -> None:
    await a_job(mongo_db)
    job = await claim(mongo_db, owner="r1", now=NOW, lease=LEASE)
    assert job is not None
    es = AsyncElasticsearch("http://127.0.0.1:1", request_timeout=1, max_retries=0)
    try:
        assert not await write_log(es, prefix="", job=job, outcome="done", runner="r1", at=NOW)
    finally:
        await es.close()
