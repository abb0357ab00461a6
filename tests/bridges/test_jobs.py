"""The job runner (`tulifo jobs`) on real services: the auto-release releases a delivered gig's
escrow once, and only while the client has not answered; two runners never run one job twice; a
runner SIGKILLed in the middle of a release leaves a lease that another runner takes over, and
the release happens exactly once; a PaymentIntent whose webhook was lost is reconciled with
Stripe (localstripe)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI

from agents.jobs import jobs_for
from api.jobs.kinds import AUTO_RELEASE, RECONCILE_PAYMENTS, JobWork
from bridges.jobs import JobRunner
from infrastructure.mongo import MongoDatabase
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from streams.events import Event
from tables import jobs as store
from tables.jobs import Job
from tests.api.conftest import api_of_its_own, client_from, outbox_events, unique_ip
from tests.api.gigs import (
    Gig,
    accept_bid,
    award,
    awarded_gig,
    book_gig,
    create_intent,
    deliver,
    funded_gig,
    move,
    open_gig,
    project_body,
    submit_bid,
)
from tests.api.stripe_support import confirm_card, send_webhook, stripe_event
from tests.conftest import wait_until
from tests.streams.workers import REPO, worker_env
from tests.tables.support import scratch_database

LEASE_S = 2.0


@pytest.fixture(scope="module")
def job_settings(settings: Settings, localstripe_url: str) -> Settings:
    return settings.model_copy(
        update={
            "stripe_api_base": localstripe_url,
            "jobs_lease_seconds": LEASE_S,
            "jobs_poll_seconds": 0.1,
            "jobs_backoff_first_seconds": 0.05,
            "jobs_backoff_max_seconds": 0.2,
        }
    )


@pytest.fixture(scope="module")
async def api(job_settings: Settings) -> AsyncIterator[FastAPI]:
    async with api_of_its_own(job_settings) as app:
        yield app


@pytest.fixture
async def http(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_from(api, ip=unique_ip()) as client:
        yield client


@pytest.fixture
async def queue(mongo_url: str) -> AsyncIterator[MongoDatabase]:
    async with scratch_database(mongo_url) as db:
        yield db


def runner_on(
    api: FastAPI, settings: Settings, queue: MongoDatabase, name: str, **kinds: Any
) -> JobRunner:
    work = JobWork(settings=settings, pool=api.state.tulifo.pool, stripe=api.state.stripe_gateway)
    if kinds:
        return JobRunner(settings, mongo=queue, work=work, kinds=kinds, name=name)
    return JobRunner(settings, mongo=queue, work=work, name=name)


async def delivered_gig(http: httpx.AsyncClient, sc: Any, settings: Settings) -> Gig:
    secret = settings.stripe_webhook_secret.get_secret_value()
    return await funded_gig(http, sc, secret=secret, delivered=True)


async def schedule_auto_release(db: asyncpg.Connection, queue: MongoDatabase, gig: Gig) -> str:
    """The job the scheduling agent makes for the gig's last delivery, due now."""
    delivered = await outbox_events(db, event_type="project.delivered", key=gig.project_id)
    event_id = delivered[-1]["event_id"]
    at = datetime.now(UTC)
    await store.schedule(
        queue,
        kind=AUTO_RELEASE,
        subject=event_id,
        payload={"projectId": str(gig.project_id), "deliveryEventId": event_id},
        run_at=at,
        now=at,
    )
    return store.job_id(AUTO_RELEASE, event_id)


async def escrow_row(db: asyncpg.Connection, gig: Gig) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow(
        """SELECT e.status, p.status AS project_status,
                  (SELECT count(*) FROM payouts WHERE escrow_id = e.id) AS payouts
             FROM escrow_holds e JOIN projects p ON p.id = e.project_id WHERE e.id = $1""",
        gig.escrow_id,
    )
    return row


async def drain(runner: JobRunner) -> None:
    while await runner.run_one():
        pass


async def test_auto_release_pays_the_worker_once_as_the_client_release_would(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    stripe_api: Any,
    job_settings: Settings,
) -> None:
    gig = await delivered_gig(http, stripe_api, job_settings)
    job_id = await schedule_auto_release(db, queue, gig)
    runner = runner_on(api, job_settings, queue, "r1")
    await drain(runner)

    job = await store.get_job(queue, job_id)
    assert job is not None and job.status == "done", job
    row = await escrow_row(db, gig)
    assert (row["status"], row["project_status"], row["payouts"]) == ("released", "completed", 1)
    released = await outbox_events(db, event_type="escrow.released", key=gig.project_id)
    assert len(released) == 1
    data = released[0]["data"]
    assert released[0]["actor_id"] is None  # the platform, not the client
    assert (data["amount_cents"], data["fee_cents"], data["net_cents"]) == (10_000, 1_000, 9_000)
    view = (await http.get(f"/api/escrow/{gig.escrow_id}", headers=gig.worker.headers)).json()
    assert view["data"]["status"] == "released"

    # Run again (an admin's retry, a runner that died before marking it done): nothing more.
    await queue[store.WORKER_QUEUE].update_one(
        {"_id": job_id}, {"$set": {"status": "scheduled", "nextRunAt": datetime.now(UTC)}}
    )
    await drain(runner)
    again = await store.get_job(queue, job_id)
    assert again is not None and again.status == "done"
    assert len(await outbox_events(db, event_type="escrow.released", key=gig.project_id)) == 1
    assert (await escrow_row(db, gig))["payouts"] == 1


async def test_auto_release_does_nothing_once_the_client_asked_for_changes(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    stripe_api: Any,
    job_settings: Settings,
) -> None:
    gig = await delivered_gig(http, stripe_api, job_settings)
    first = await schedule_auto_release(db, queue, gig)
    await move(http, gig, gig.client, "in_progress")  # changes requested
    runner = runner_on(api, job_settings, queue, "r1")
    await drain(runner)
    assert (await escrow_row(db, gig))["status"] == "funded"

    # Delivered again: the first delivery's job is stale, the new one has its own window.
    await move(http, gig, gig.worker, "delivered")
    await queue[store.WORKER_QUEUE].update_one(
        {"_id": first}, {"$set": {"status": "scheduled", "nextRunAt": datetime.now(UTC)}}
    )
    await drain(runner)
    assert "later delivery" in await note_of(queue, first)
    assert (await escrow_row(db, gig))["status"] == "funded"
    await schedule_auto_release(db, queue, gig)
    await drain(runner)
    assert (await escrow_row(db, gig))["status"] == "released"


async def note_of(queue: MongoDatabase, job_id: str) -> str:
    doc = await queue[store.WORKER_QUEUE].find_one({"_id": job_id})
    assert doc is not None
    return str(doc.get("note"))


async def test_auto_release_leaves_a_disputed_escrow_frozen(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    stripe_api: Any,
    job_settings: Settings,
) -> None:
    gig = await delivered_gig(http, stripe_api, job_settings)
    job_id = await schedule_auto_release(db, queue, gig)
    opened = await http.post(
        "/api/disputes",
        json={"projectId": str(gig.project_id), "reason": "The delivery is not what we agreed."},
        headers=gig.client.headers,
    )
    assert opened.status_code == 201, opened.text
    await drain(runner_on(api, job_settings, queue, "r1"))
    assert "disputed" in await note_of(queue, job_id)
    assert (await escrow_row(db, gig))["status"] == "frozen"


async def test_two_runners_never_run_one_job_twice(
    api: FastAPI, queue: MongoDatabase, job_settings: Settings
) -> None:
    runs: Counter[str] = Counter()

    async def count(work: JobWork, job: Job) -> str:
        runs[job.id] += 1
        await asyncio.sleep(0)  # let the other runner try to claim meanwhile
        return "counted"

    at = datetime.now(UTC)
    for n in range(40):
        await store.schedule(queue, kind="count", subject=str(n), payload={}, run_at=at, now=at)
    runners = [runner_on(api, job_settings, queue, f"r{n}", count=count) for n in range(2)]
    await asyncio.gather(*(drain(runner) for runner in runners))
    assert runs == Counter({f"count:{n}": 1 for n in range(40)})
    assert await queue[store.WORKER_QUEUE].count_documents({"status": "done"}) == 40


async def test_a_job_that_keeps_failing_ends_dead_with_its_reason(
    api: FastAPI, queue: MongoDatabase, job_settings: Settings
) -> None:
    settings = job_settings.model_copy(update={"jobs_max_attempts": 3})
    attempts: list[int] = []

    async def broken(work: JobWork, job: Job) -> str:
        attempts.append(job.attempts)
        raise RuntimeError("the downstream is gone")

    at = datetime.now(UTC)
    await store.schedule(queue, kind="broken", subject="x", payload={}, run_at=at, now=at)
    runner = runner_on(api, settings, queue, "r1", broken=broken)
    task = asyncio.ensure_future(runner.run())
    try:
        dead = await wait_until(
            lambda: store.list_jobs(queue, status="dead", limit=5), timeout=30, what="a dead job"
        )
    finally:
        await runner.stop()
        await task
    assert attempts == [1, 2, 3]
    assert [job.id for job in dead] == ["broken:x"]
    assert dead[0].last_error == "RuntimeError: the downstream is gone"


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
async def test_a_runner_stopped_mid_release_leaves_it_to_the_next_which_releases_once(
    stop: str,
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    stripe_api: Any,
    job_settings: Settings,
    tmp_path: Path,
) -> None:
    gig = await delivered_gig(http, stripe_api, job_settings)
    job_id = await schedule_auto_release(db, queue, gig)
    env = worker_env(
        job_settings.model_copy(update={"mongo_database": queue.name}),
        TULIFO_STRIPE_API_BASE=str(job_settings.stripe_api_base),
        TULIFO_JOBS_LEASE_SECONDS=str(LEASE_S),
        TULIFO_JOBS_POLL_SECONDS="0.1",
    )

    def spawn(name: str) -> ManagedProcess:
        return ManagedProcess.spawn(
            name,
            [sys.executable, "-m", "bridges.jobs"],
            env=env,
            cwd=REPO,
            log_path=tmp_path / f"{name}.log",
        )

    # The test holds the project's row lock: the runner's release waits inside its transaction.
    blocker = await asyncpg.connect(job_settings.database_url)
    first = spawn("jobs-1")
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", gig.project_id)

        async def release_waiting() -> bool:
            job = await store.get_job(queue, job_id)
            waiting = await db.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'
                      AND query LIKE '%FROM projects%FOR UPDATE%'"""
            )
            return job is not None and job.status == "running" and waiting > 0

        await wait_until(release_waiting, timeout=30, what="the release waiting on the lock")
        if stop == "SIGKILL":
            first.kill()  # a crash, mid-transaction
        else:
            # A clean stop does not wait for the job in hand: it is left to its lease.
            first.stop(timeout=15)
            assert first.popen.returncode == 0, first.log_path and first.log_path.read_text()
        await tx.rollback()
    finally:
        first.kill()
        await blocker.close()

    # Nothing was released; the job is still running under the stopped runner's lease.
    assert (await escrow_row(db, gig))["status"] == "funded"
    left = await store.get_job(queue, job_id)
    assert left is not None and (left.status, left.attempts) == ("running", 1)
    second = spawn("jobs-2")
    try:
        done = await wait_until(
            lambda: done_job(queue, job_id), timeout=30, what="the job done by the second runner"
        )
    finally:
        second.stop()
    assert done.attempts == 2 and done.lease_owner is None
    row = await escrow_row(db, gig)
    assert (row["status"], row["project_status"], row["payouts"]) == ("released", "completed", 1)
    assert len(await outbox_events(db, event_type="escrow.released", key=gig.project_id)) == 1


async def done_job(queue: MongoDatabase, job_id: str) -> Job | None:
    job = await store.get_job(queue, job_id)
    return job if job is not None and job.status == "done" else None


async def sweep_after_lost_webhook(
    api: FastAPI, db: asyncpg.Connection, queue: MongoDatabase, job_settings: Settings, gig: Any
) -> JobRunner:
    """The reconciliation sweep run two days after `gig`'s payment, whose webhook never came.
    Other tests' payments are younger than the reconcile delay here: the sweep asks about this
    one only. Returns the runner, for the next sweep."""
    await db.execute(
        "UPDATE payments SET created_at = now() - interval '2 days' WHERE escrow_id = $1",
        gig.escrow_id,
    )
    settings = job_settings.model_copy(update={"payment_reconcile_after_seconds": 86_400})
    runner = runner_on(api, settings, queue, "r1")
    await runner.prepare()  # schedules the periodic sweeps, due now
    await drain(runner)
    return runner


async def sweep_again(runner: JobRunner, queue: MongoDatabase) -> None:
    """The periodic sweep made due once more, and run."""
    sweep = await store.get_job(queue, store.job_id(RECONCILE_PAYMENTS, "periodic"))
    assert sweep is not None
    await queue[store.WORKER_QUEUE].update_one(
        {"_id": sweep.id}, {"$set": {"nextRunAt": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    await drain(runner)


async def test_a_payment_whose_webhook_was_lost_is_reconciled_once(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    stripe_api: Any,
    job_settings: Settings,
) -> None:
    gig = await book_gig(http)
    intent = await create_intent(http, gig)
    paid = await confirm_card(stripe_api, intent["paymentIntentId"])
    assert paid["status"] == "succeeded"
    # Stripe's webhook never arrives; two days on, the sweep asks Stripe.
    runner = await sweep_after_lost_webhook(api, db, queue, job_settings, gig)

    row = await escrow_row(db, gig)
    assert row["status"] == "funded"
    completed = await outbox_events(db, event_type="payment.completed", key=gig.project_id)
    funded = await outbox_events(db, event_type="escrow.funded", key=gig.project_id)
    assert (len(completed), len(funded)) == (1, 1)
    assert completed[0]["data"]["stripe_payment_intent_id"] == intent["paymentIntentId"]
    sweep = await store.get_job(queue, store.job_id(RECONCILE_PAYMENTS, "periodic"))
    assert sweep is not None and sweep.status == "scheduled"  # periodic: scheduled again

    # The next sweep, and the late webhook itself, change nothing.
    await sweep_again(runner, queue)
    secret = job_settings.stripe_webhook_secret.get_secret_value()
    late = await send_webhook(http, stripe_event("payment_intent.succeeded", paid), secret=secret)
    assert late.json()["data"]["outcome"] == "ignored"
    assert len(await outbox_events(db, event_type="payment.completed", key=gig.project_id)) == 1
    # And the gig goes on: delivered, then released through the auto-release.
    await deliver(http, gig)
    await schedule_auto_release(db, queue, gig)
    await drain(runner)
    assert (await escrow_row(db, gig))["status"] == "released"


async def test_a_declined_payment_whose_webhook_was_lost_is_failed_once(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    stripe_api: Any,
    job_settings: Settings,
) -> None:
    gig = await book_gig(http)
    intent = await create_intent(http, gig)
    declined = await confirm_card(
        stripe_api, intent["paymentIntentId"], card="pm_card_chargeCustomerFail"
    )
    assert declined["status"] == "requires_payment_method"
    # Stripe's payment_failed webhook never arrives; the client hears nothing of the decline.
    runner = await sweep_after_lost_webhook(api, db, queue, job_settings, gig)

    payment = await db.fetchrow(
        "SELECT status, failure_code FROM payments WHERE escrow_id = $1", gig.escrow_id
    )
    assert payment is not None and payment["status"] == "failed"
    assert payment["failure_code"]  # Stripe's reason, as the webhook would have recorded it
    assert (await escrow_row(db, gig))["status"] == "unfunded"
    failed = await outbox_events(db, event_type="payment.failed", key=gig.project_id)
    assert len(failed) == 1

    # The next sweep, and the late webhook, change nothing more.
    await sweep_again(runner, queue)
    secret = job_settings.stripe_webhook_secret.get_secret_value()
    late = await send_webhook(
        http, stripe_event("payment_intent.payment_failed", declined), secret=secret
    )
    assert late.json()["data"]["outcome"] == "ignored", late.text
    assert len(await outbox_events(db, event_type="payment.failed", key=gig.project_id)) == 1


async def schedule_from_outbox(
    db: asyncpg.Connection, queue: MongoDatabase, settings: Settings, event_type: str, key: Any
) -> list[str]:
    """The jobs the scheduling agent makes for the outbox's `event_type` events of `key`, made
    due now."""
    ids = []
    at = datetime.now(UTC)
    for envelope in await outbox_events(db, event_type=event_type, key=key):
        for job in jobs_for(Event.model_validate(envelope), settings):
            await store.schedule(
                queue, kind=job.kind, subject=job.subject, payload=job.payload, run_at=at, now=at
            )
            ids.append(store.job_id(job.kind, job.subject))
    return ids


async def test_a_bid_left_pending_expires_and_can_no_longer_be_accepted(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    job_settings: Settings,
) -> None:
    gig = await open_gig(http)
    jobs = await schedule_from_outbox(db, queue, job_settings, "bid.submitted", gig.project_id)
    assert len(jobs) == 2  # one per bid
    runner = runner_on(api, job_settings, queue, "r1")
    await drain(runner)
    await drain(runner)  # nothing left to do: still one event per bid

    statuses = dict(
        await db.fetch("SELECT id, status FROM bids WHERE project_id = $1", gig.project_id)
    )
    assert set(statuses.values()) == {"expired"}
    expired = await outbox_events(db, event_type="bid.expired", key=gig.project_id)
    assert sorted(e["data"]["bid_id"] for e in expired) == sorted(str(b) for b in statuses)
    assert all(e["actor_id"] is None for e in expired)

    refused = await accept_bid(http, gig.client, gig.project_id, gig.bid["id"])
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"currentStatus": "expired"}
    # The worker may bid again: the expired bid no longer holds the slot.
    again = await submit_bid(http, gig.worker, str(gig.project_id), amountCents=100_000)
    assert again["status"] == "pending"


async def test_an_accepted_bid_does_not_expire(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    job_settings: Settings,
) -> None:
    gig = await awarded_gig(http)
    jobs = await schedule_from_outbox(db, queue, job_settings, "bid.submitted", gig.project_id)
    await drain(runner_on(api, job_settings, queue, "r1"))
    statuses = sorted(
        await db.fetch("SELECT status FROM bids WHERE project_id = $1", gig.project_id)
    )
    assert [row["status"] for row in statuses] == ["accepted", "rejected"]
    assert await outbox_events(db, event_type="bid.expired", key=gig.project_id) == []
    notes = sorted([await note_of(queue, job_id) for job_id in jobs])
    assert notes == ["not expired: the bid is accepted", "not expired: the bid is rejected"]


async def test_both_parties_of_an_awarded_project_are_reminded_of_its_deadline_once(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    job_settings: Settings,
) -> None:
    deadline = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=123456)
    gig = await open_gig(http, project=project_body(deadline=deadline.isoformat()))
    # The client moves the deadline while the project is open: the first job is stale.
    later = deadline + timedelta(days=5)
    response = await http.patch(
        gig.url, json={"deadline": later.isoformat()}, headers=gig.client.headers
    )
    assert response.status_code == 200, response.text
    await award(http, gig)
    jobs = await schedule_from_outbox(db, queue, job_settings, "project.created", gig.project_id)
    jobs += await schedule_from_outbox(db, queue, job_settings, "project.updated", gig.project_id)
    assert len(jobs) == 2
    runner = runner_on(api, job_settings, queue, "r1")
    await drain(runner)
    assert [await note_of(queue, job_id) for job_id in jobs] == [
        "no reminder: the deadline moved",
        "reminded",
    ]
    # Once, whatever reruns the job.
    await queue[store.WORKER_QUEUE].update_one(
        {"_id": jobs[1]}, {"$set": {"status": "scheduled", "nextRunAt": datetime.now(UTC)}}
    )
    await drain(runner)
    [reminder] = await outbox_events(
        db, event_type="project.deadline_approaching", key=gig.project_id
    )
    assert reminder["data"]["client_id"] == str(gig.client.id)
    assert reminder["data"]["worker_id"] == str(gig.worker.id)
    assert datetime.fromisoformat(reminder["data"]["deadline"]) == later


async def test_an_open_project_is_not_reminded_of_its_deadline(
    api: FastAPI,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    queue: MongoDatabase,
    job_settings: Settings,
) -> None:
    deadline = datetime.now(UTC) + timedelta(days=30)
    gig = await open_gig(http, project=project_body(deadline=deadline.isoformat()))
    [job_id] = await schedule_from_outbox(
        db, queue, job_settings, "project.created", gig.project_id
    )
    await drain(runner_on(api, job_settings, queue, "r1"))
    assert await note_of(queue, job_id) == "no reminder: the project is open"
    assert (
        await outbox_events(db, event_type="project.deadline_approaching", key=gig.project_id) == []
    )


async def test_a_log_that_cannot_be_written_does_not_fail_the_job(
    api: FastAPI, queue: MongoDatabase, job_settings: Settings
) -> None:
    async def fine(work: JobWork, job: Job) -> str:
        return "ok"

    at = datetime.now(UTC)
    await store.schedule(queue, kind="fine", subject="1", payload={}, run_at=at, now=at)
    work = JobWork(
        settings=job_settings, pool=api.state.tulifo.pool, stripe=api.state.stripe_gateway
    )
    # Nothing listens there: every log write fails.
    search = AsyncElasticsearch("http://127.0.0.1:1", request_timeout=1, max_retries=0)
    runner = JobRunner(
        job_settings, mongo=queue, work=work, search=search, kinds={"fine": fine}, name="r1"
    )
    try:
        await runner.prepare()
        await drain(runner)
    finally:
        await search.close()
    job = await store.get_job(queue, "fine:1")
    assert job is not None and (job.status, job.attempts) == ("done", 1)


async def test_a_job_whose_payload_is_wrong_is_dead_at_once(
    api: FastAPI, queue: MongoDatabase, job_settings: Settings
) -> None:
    at = datetime.now(UTC)
    await store.schedule(
        queue, kind=AUTO_RELEASE, subject="bad", payload={"projectId": "no"}, run_at=at, now=at
    )
    await drain(runner_on(api, job_settings, queue, "r1"))
    job = await store.get_job(queue, store.job_id(AUTO_RELEASE, "bad"))
    assert job is not None and (job.status, job.attempts) == ("dead", 1)
    assert job.last_error is not None and "auto_release payload is not valid" in job.last_error
