"""The live dashboard's stream: a snapshot first, then only the updates the caller may see, until
the session is revoked or the page goes. The live agent's handler (agents/live.py) publishes to
the real Redis here; one test runs the whole way: API write → outbox relay → Kafka → the live
agent in a Faust worker → Redis → the SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from agents.live import (
    ADMIN_CHANNEL,
    SENT_KEY_PREFIX,
    LiveFanout,
    LivePublisher,
    publish_notification,
)
from agents.notifications import Notifier
from agents.runtime import AgentDeps, RetryPolicy
from api.dashboard import router as dashboard_router
from api.money import platform_fee
from bridges.email import SmtpMailer
from bridges.relay import OutboxRelay
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from streams.escrow import EscrowFunded, EscrowReleased
from streams.events import Event, new_event
from streams.matching import MatchScored, RankedWorker
from streams.ratings import RatingUpdated
from streams.reviews import ReviewCreated
from tests.api.conftest import Account, bearer
from tests.api.gigs import Gig, booked_gig, gig_in_status, make_admin, release
from tests.browser.live_stack import (
    PIPELINE_DEADLINE_S,
    LiveApi,
    SseStream,
    live_pipeline,
    open_stream,
    pipeline_settings,
    serve_api,
    spawn_live_worker,
)
from tests.conftest import wait_until
from tests.databases import fresh_database
from tests.mail import MailCapture
from tests.streams.workers import append_to_outbox


@pytest.fixture(scope="module")
async def live(settings: Settings) -> AsyncIterator[LiveApi]:
    async with serve_api(settings) as api:
        yield api


@pytest.fixture
async def http(live: LiveApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def fanout(settings: Settings, live: LiveApi) -> AsyncIterator[LiveFanout]:
    """The live agent's handler, as its worker builds it, on the test's Redis and PostgreSQL."""
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    deps = AgentDeps(
        settings=settings,
        mongo=live.app.state.tulifo.mongo,
        mailer=SmtpMailer(settings),
        retry=RetryPolicy(attempts=2),
        redis=redis,
    )
    handler = LiveFanout(deps)
    try:
        yield handler
    finally:
        await handler.close()
        await redis.aclose()


# --- events as the agents would publish them ---------------------------------------------------


def scored(gig: Gig) -> Event:
    best = RankedWorker(worker_id=gig.worker.id, rank=1, score=0.87)
    record = MatchScored(
        project_id=gig.project_id, client_id=gig.client.id, changes=[best], ranked=1, top=[best]
    )
    return new_event(record, aggregate_id=gig.project_id)


def released(gig: Gig) -> Event:
    """A release names the worker, not the client: the agent looks the client up."""
    split = platform_fee(gig.amount_cents)
    record = EscrowReleased(
        escrow_id=gig.escrow_id,
        booking_id=gig.booking_id,
        project_id=gig.project_id,
        worker_id=gig.worker.id,
        payout_id=uuid.uuid4(),
        amount_cents=split.amount_cents,
        fee_cents=split.fee_cents,
        net_cents=split.net_cents,
        currency=gig.currency,
    )
    return new_event(record, aggregate_id=gig.project_id)


def funded(gig: Gig) -> Event:
    split = platform_fee(gig.amount_cents)
    record = EscrowFunded(
        escrow_id=gig.escrow_id,
        booking_id=gig.booking_id,
        project_id=gig.project_id,
        client_id=gig.client.id,
        worker_id=gig.worker.id,
        payment_id=uuid.uuid4(),
        amount_cents=split.amount_cents,
        fee_cents=split.fee_cents,
        net_cents=split.net_cents,
        currency=gig.currency,
    )
    return new_event(record, aggregate_id=gig.project_id)


def rated(worker: Account, average: float = 4.5) -> Event:
    record = RatingUpdated(
        user_id=worker.id,
        role="worker",
        review_id=uuid.uuid4(),
        count=2,
        sum=9,
        distribution=[0, 0, 0, 1, 1],
        average=average,
        bayesian=4.1,
    )
    return new_event(record, aggregate_id=worker.id)


async def mark_end(publisher: LivePublisher, stream: SseStream, account: Account) -> None:
    """Publish a notification to `account` and wait for it: Redis keeps one publisher's order,
    so whatever was published before it has reached the stream by then."""
    marker = f"marker-{uuid.uuid4()}"
    document = {
        "_id": marker,
        "userId": str(account.id),
        "type": "marker",
        "title": "marker",
        "body": "",
        "url": "/",
        "read": False,
        "createdAt": datetime.now(UTC),
    }
    assert await publish_notification(publisher, document)
    await stream.until(lambda f: f.id == marker, what=f"the marker for {account.role}")


# --- the stream --------------------------------------------------------------------------------


async def test_a_stream_without_a_valid_token_is_refused_with_401(http: httpx.AsyncClient) -> None:
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic abc"}):
        response = await http.get("/api/dashboard/stream", headers=headers)
        assert response.status_code == 401, response.text
        body = response.json()
        assert body["success"] is False
        assert body["error"]["code"] == "UNAUTHORIZED"


async def test_the_stream_starts_with_the_callers_snapshot(
    http: httpx.AsyncClient, live: LiveApi
) -> None:
    mine, theirs = await booked_gig(http), await booked_gig(http)
    async with open_stream(http, mine.worker.access_token) as stream:
        first = await stream.until(lambda f: True, what="a first frame")
    assert first.event == "snapshot"
    snapshot = first.data
    assert snapshot["role"] == "worker"
    assert snapshot["userId"] == str(mine.worker.id)
    assert snapshot["client"] is None and snapshot["admin"] is None
    worker = snapshot["worker"]
    assert worker["rating"] == {"average": None, "count": 0}
    assert [b["bid"]["id"] for b in worker["bids"]] == [mine.bid["id"]]
    assert [b["escrowId"] for b in worker["bookings"]] == [str(mine.escrow_id)]
    assert worker["bookings"][0]["escrowStatus"] == "unfunded"

    async with open_stream(http, theirs.client.access_token) as stream:
        first = await stream.until(lambda f: True, what="a first frame")
    client = first.data["client"]
    assert first.event == "snapshot" and first.data["role"] == "client"
    assert [b["escrowId"] for b in client["bookings"]] == [str(theirs.escrow_id)]
    # The same body as the snapshot endpoint's.
    response = await http.get("/api/dashboard/snapshot", headers=theirs.client.headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["client"]["bookings"] == client["bookings"]


async def test_each_role_sees_its_own_updates_and_nobody_elses(
    http: httpx.AsyncClient, live: LiveApi, fanout: LiveFanout
) -> None:
    a, b = await booked_gig(http), await booked_gig(http)
    admin = await make_admin(live.app, http)
    events = {
        "match A": scored(a),
        "match B": scored(b),
        "release A": released(a),
        "release B": released(b),
        "funding A": funded(a),
        "rating A": rated(a.worker),
        "rating B": rated(b.worker),
    }
    expected = {
        "client A": {"match A", "release A", "funding A"},
        "client B": {"match B", "release B"},
        "worker A": {"release A", "funding A", "rating A"},
        "worker B": {"release B", "rating B"},
        "admin": set(events),
    }
    viewers = {
        "client A": a.client,
        "client B": b.client,
        "worker A": a.worker,
        "worker B": b.worker,
        "admin": admin,
    }
    async with contextlib.AsyncExitStack() as stack:
        streams = {
            who: await stack.enter_async_context(open_stream(http, account.access_token))
            for who, account in viewers.items()
        }
        for stream in streams.values():
            await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
        for event in events.values():
            assert await fanout.handle(event)
        for who, stream in streams.items():
            await mark_end(fanout.publisher, stream, viewers[who])
    names = {str(event.event_id): name for name, event in events.items()}
    seen = {who: {names[i] for i in stream.ids() if i in names} for who, stream in streams.items()}
    assert seen == expected
    # Each update as the agent published it: its type, and its record in the API's spelling.
    release_a = next(f for f in streams["client A"].frames if f.event == "escrow.released")
    assert release_a.data["data"]["escrowId"] == str(a.escrow_id)
    assert release_a.data["data"]["netCents"] == platform_fee(a.amount_cents).net_cents


async def test_an_update_delivered_twice_reaches_the_page_once(
    http: httpx.AsyncClient, fanout: LiveFanout
) -> None:
    gig = await booked_gig(http)
    event = rated(gig.worker, average=3.0)
    async with open_stream(http, gig.worker.access_token) as stream:
        await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
        assert await fanout.handle(event) is True
        assert await fanout.handle(event) is False  # a redelivery: published once already
        await mark_end(fanout.publisher, stream, gig.worker)
    frames = [f for f in stream.frames if f.id == str(event.event_id)]
    assert len(frames) == 1
    assert frames[0].data["data"]["average"] == 3.0


async def test_a_stored_notification_reaches_its_users_dashboard_once(
    http: httpx.AsyncClient, live: LiveApi, settings: Settings, smtp: MailCapture
) -> None:
    gig = await booked_gig(http)
    mail = settings.model_copy(update={"smtp_host": smtp.host, "smtp_port": smtp.port})
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    notifier = Notifier(
        AgentDeps(
            settings=mail,
            mongo=live.app.state.tulifo.mongo,
            mailer=SmtpMailer(mail),
            retry=RetryPolicy(attempts=2),
            redis=redis,
        )
    )
    record = ReviewCreated(
        review_id=uuid.uuid4(),
        project_id=gig.project_id,
        reviewer_id=gig.client.id,
        reviewee_id=gig.worker.id,
        reviewee_role="worker",
        rating=5,
    )
    event = new_event(record, aggregate_id=gig.worker.id)
    try:
        async with open_stream(http, gig.worker.access_token) as stream:
            await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
            assert await notifier.notify(event) == 1
            told = await stream.until(lambda f: f.event == "notification", what="the notice")
            await notifier.notify(event)  # delivered again: stored once, shown once
            await mark_end(LivePublisher(redis), stream, gig.worker)
    finally:
        if notifier._pool is not None:
            await notifier._pool.close()
        await redis.aclose()
    assert told.data["data"]["type"] == "review_received"
    assert told.data["data"]["read"] is False
    notices = [f.id for f in stream.frames if f.event == "notification"]
    assert [i for i in notices if i and not i.startswith("marker-")] == [told.id]
    # What the page shows is what the notifications endpoint lists.
    listed = await http.get("/api/notifications", headers=gig.worker.headers)
    assert told.id in [item["id"] for item in listed.json()["data"]["items"]]


async def test_old_events_are_not_news(http: httpx.AsyncClient, fanout: LiveFanout) -> None:
    gig = await booked_gig(http)
    event = rated(gig.worker)
    old = event.model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(days=2)})
    assert await fanout.handle(old) is False


async def test_the_stream_ends_when_its_session_is_revoked(
    http: httpx.AsyncClient, live: LiveApi
) -> None:
    gig = await booked_gig(http)
    worker = gig.worker
    async with open_stream(http, worker.access_token) as stream:
        await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
        response = await http.delete("/api/sessions", headers=worker.headers)
        assert response.status_code == 200, response.text
        end = await stream.until(lambda f: f.event == "end", what="the end of the stream")
        assert end.data == {"reason": "revoked"}
        await stream.until_closed()
    again = await http.get("/api/dashboard/stream", headers=worker.headers)
    assert again.status_code == 401


async def test_a_stream_is_let_go_when_the_page_goes(
    http: httpx.AsyncClient, live: LiveApi
) -> None:
    gig = await booked_gig(http)
    before = live.open_streams
    async with open_stream(http, gig.client.access_token) as stream:
        await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
        assert live.open_streams == before + 1
    await wait_until(lambda: live.open_streams == before, timeout=30, what="the stream let go")


async def test_a_lost_subscription_ends_the_streams_and_the_next_one_is_live_again(
    http: httpx.AsyncClient, live: LiveApi, settings: Settings, fanout: LiveFanout
) -> None:
    gig = await booked_gig(http)
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with open_stream(http, gig.worker.access_token) as stream:
            await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
            # Cut this process's subscription, and only it: Redis is shared with other runs.
            connection = live.app.state.dashboard_hub._pubsub.connection
            host, port = connection._writer.get_extra_info("sockname")[:2]
            assert await redis.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
            end = await stream.until(lambda f: f.event == "end", what="the end of the stream")
            assert end.data == {"reason": "disconnected"}
    finally:
        await redis.aclose()
    # The page reconnects: a fresh snapshot, and live updates again.
    async with open_stream(http, gig.worker.access_token) as again:
        await again.until(lambda f: f.event == "snapshot", what="the snapshot")
        event = rated(gig.worker)
        assert await fanout.handle(event)
        await again.until(lambda f: f.id == str(event.event_id), what="the update")


async def test_a_quiet_stream_sends_keep_alive_comments(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_router, "KEEPALIVE_S", 0.2)
    gig = await booked_gig(http)
    async with open_stream(http, gig.worker.access_token) as stream:
        await stream.until(lambda f: f.event == "snapshot", what="the snapshot")

        async def commented() -> bool:
            await stream._read_more()
            return stream.comments >= 2

        await wait_until(commented, timeout=30, what="two keep-alive comments")


async def test_the_page_is_served_under_the_strict_csp(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/dashboard")
        script = await client.get("/dashboard/dashboard.js")
        styles = await client.get("/dashboard/dashboard.css")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Only the page's own files: nothing inline, nothing from another origin.
    assert '<script src="/dashboard/dashboard.js"' in page.text
    assert "<script>" not in page.text and "<style" not in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert styles.status_code == 200 and styles.headers["content-type"].startswith("text/css")
    assert "EventSource" not in script.text.replace("// ", "").split("use strict")[1]


# --- the whole way -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def pipeline(
    settings: Settings, kafka: str, live: LiveApi, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[None]:
    directory = tmp_path_factory.mktemp("dashboard-pipeline")
    async with live_pipeline(pipeline_settings(settings, kafka, Path(directory)), directory):
        yield


async def test_a_release_through_the_api_reaches_both_parties_live(
    http: httpx.AsyncClient, db: asyncpg.Connection, pipeline: None
) -> None:
    gig = await gig_in_status(http, db, "delivered")
    other = await booked_gig(http)
    async with contextlib.AsyncExitStack() as stack:
        worker = await stack.enter_async_context(open_stream(http, gig.worker.access_token))
        client = await stack.enter_async_context(open_stream(http, gig.client.access_token))
        outsider = await stack.enter_async_context(open_stream(http, other.client.access_token))
        for stream in (worker, client, outsider):
            await stream.until(lambda f: f.event == "snapshot", what="the snapshot")
        await release(http, gig)

        def is_release(frame: object) -> bool:
            return (
                getattr(frame, "event", None) == "escrow.released"
                and frame.data["data"]["escrowId"] == str(gig.escrow_id)  # type: ignore[attr-defined]
            )

        seen_by_worker = await worker.until(
            is_release, timeout=PIPELINE_DEADLINE_S, what="the release, for the worker"
        )
        # The event names no client: the agent looked the project's client up.
        seen_by_client = await client.until(
            is_release, timeout=PIPELINE_DEADLINE_S, what="the release, for the client"
        )
        assert seen_by_worker.id == seen_by_client.id
        assert seen_by_worker.data["data"]["workerId"] == str(gig.worker.id)
    assert not any(is_release(frame) for frame in outsider.frames)


# --- a worker killed mid-stream ------------------------------------------------------------------

# Enough that a worker is killed long before it is through them (it publishes ~1-3k/s).
KILL_EVENTS = 4_000
# The survivor waits out the dead member's session (10 s) and a rebalance, on a busy machine.
CATCH_UP_S = 150.0
# The claims that keep an update from going out twice live in Redis; the suite's database is
# emptied whenever a test run starts (tests/conftest.py), and a run started beside this one
# would wipe them mid-test. This test keeps its claims in a database of its own.
KILL_REDIS_URL = os.environ.get("TULIFO_TEST_LIVE_REDIS_URL", "redis://127.0.0.1:6379/12")


def fundings(count: int) -> list[Event]:
    """Fundings of `count` gigs: each names both its parties, so no lookup is needed."""
    events = []
    for _ in range(count):
        project = uuid.uuid4()
        record = EscrowFunded(
            escrow_id=uuid.uuid4(),
            booking_id=uuid.uuid4(),
            project_id=project,
            client_id=uuid.uuid4(),
            worker_id=uuid.uuid4(),
            payment_id=uuid.uuid4(),
            amount_cents=1005,
            fee_cents=101,
            net_cents=904,
            currency="USD",
        )
        events.append(new_event(record, aggregate_id=project))
    return events


@pytest.mark.xdist_group("process-stacks")
async def test_a_live_worker_killed_mid_stream_publishes_every_update_once(
    settings: Settings, kafka: str, tmp_path: Path
) -> None:
    events = fundings(KILL_EVENTS)
    ours = {str(event.event_id) for event in events}
    received: Counter[str] = Counter()
    settings = settings.model_copy(update={"redis_url": KILL_REDIS_URL})
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    listener = redis.pubsub()
    # The admins' channel carries every update: what a SIGKILL could lose or double shows there.
    await listener.subscribe(ADMIN_CHANNEL)
    assert (await listener.get_message(timeout=10) or {}).get("type") == "subscribe"

    async def listen() -> None:
        while True:
            message = await listener.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                message_id = json.loads(message["data"])["id"]
                if message_id in ours:
                    received[message_id] += 1

    listening = asyncio.create_task(listen())
    workers: list[ManagedProcess] = []
    # A database of its own: the module's relay holds the session database's relay lock.
    async with fresh_database("tulifo_live_kill") as database_url:
        run = pipeline_settings(
            settings.model_copy(update={"database_url": database_url}), kafka, tmp_path
        )
        relay = OutboxRelay(run)
        relaying = asyncio.create_task(relay.run())
        try:
            workers.append(spawn_live_worker(run, tmp_path, "w1"))
            await append_to_outbox(database_url, events)
            await wait_until(
                lambda: len(received) >= KILL_EVENTS // 10,
                timeout=PIPELINE_DEADLINE_S,
                what="the first tenth of the updates",
            )
            workers[0].kill()  # SIGKILL: its last offsets are not committed
            assert len(received) < KILL_EVENTS, "the worker finished before it was killed"
            workers.append(spawn_live_worker(run, tmp_path, "w2"))
            try:
                await wait_until(
                    lambda: len(received) == KILL_EVENTS,
                    timeout=CATCH_UP_S,
                    interval=0.2,
                    what="every update",
                )
            except AssertionError as exc:
                log = (tmp_path / "w2.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{exc}: {len(received)} of {KILL_EVENTS}\n{log}") from None
        finally:
            for worker in workers:
                worker.kill()
            await relay.stop()
            await relaying
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await listener.aclose()
            await redis.delete(*(f"{SENT_KEY_PREFIX}{message_id}" for message_id in ours))
            await redis.aclose()
    # The survivor went through what the victim had published but not committed: published
    # again, the claim in Redis let none of it out a second time.
    doubled = {message_id: n for message_id, n in received.items() if n > 1}
    assert doubled == {}
