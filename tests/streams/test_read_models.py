"""The analytics read models, fed by the real pipeline: the API commits gigs (payments through
localstripe), the relay publishes the outbox, a real Faust worker folds the escrow balances and
ratings and materializes them. What analysts read must equal what the write side says, and a
redelivered history must change nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import stripe

from bridges.outbox import append_events
from bridges.relay import OutboxRelay
from infrastructure.database import create_pool
from infrastructure.mongo import create_mongo_client, mongo_database
from infrastructure.settings import Settings
from streams.events import Event
from streams.packing import partition_of
from streams.topics import dead_letter_topic, stream_topic
from tables.client_data import CLIENT_DATA
from tests.api.conftest import Account, api_of_its_own, client_from, unique_ip
from tests.api.gigs import Gig, book_gig, funded_gig, make_admin, move
from tests.api.stripe_support import stripe_client as stripe_client_for
from tests.bridges.support import header, read_topics
from tests.conftest import wait_until
from tests.databases import fresh_database
from tests.mail import MailCapture
from tests.streams.gig_factories import review as review_event
from tests.streams.workers import (
    Worker,
    append_to_outbox,
    balances,
    event_store,
    pipeline_settings,
    ratings_rows,
    recompute,
    spawn_worker,
)

# Joining the group, creating the changelog topics and the first assignment take seconds.
CATCH_UP_S = 90.0


@dataclass
class Live:
    settings: Settings
    http: httpx.AsyncClient
    stripe: stripe.StripeClient
    worker: Worker
    relay: OutboxRelay
    admin: Account

    @property
    def secret(self) -> str:
        return self.settings.stripe_webhook_secret.get_secret_value()


@pytest.fixture(scope="module")
async def live(
    kafka: str,
    mongo_url: str,
    redis_url: str,
    localstripe_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("read-models")
    mail = MailCapture()
    mail.start()
    async with fresh_database("tulifo_read_models") as database_url:
        settings = pipeline_settings(
            database_url=database_url,
            kafka=kafka,
            mongo_url=mongo_url,
            prefix="rm",
            redis_url=redis_url,
            mongo_database=f"rm_{uuid.uuid4().hex[:8]}",
            smtp_host=mail.host,
            smtp_port=mail.port,
            bcrypt_rounds=4,
            register_max_per_ip=1_000_000,
            stripe_api_base=localstripe_url,
        )
        worker = spawn_worker(settings, tmp)
        relay = OutboxRelay(settings)
        relay_task = asyncio.create_task(relay.run())
        try:
            async with (
                api_of_its_own(settings) as api,
                client_from(api, ip=unique_ip()) as http,
                stripe_client_for(localstripe_url) as stripe_api,
            ):
                admin = await make_admin(api, http)
                yield Live(settings, http, stripe_api, worker, relay, admin)
        finally:
            await relay.stop()
            await relay_task
            worker.process.stop()
            mail.stop()


async def caught_up(live: Live) -> bool:
    """Whether the read models equal a recomputation from the whole event store."""
    if not live.worker.process.alive:
        raise AssertionError(f"the worker died; its log:\n{live.worker.log()}")
    expected_balances, expected_ratings = recompute(await event_store(live.settings.database_url))
    return (
        await balances(live.settings.database_url) == expected_balances
        and await ratings_rows(live.settings.database_url) == expected_ratings
    )


async def wait_caught_up(live: Live) -> None:
    try:
        await wait_until(
            lambda: caught_up(live), timeout=CATCH_UP_S, interval=0.2, what="read models"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; worker log:\n{live.worker.log()}") from None


async def review(http: httpx.AsyncClient, gig: Gig, reviewer: Account, rating: int) -> None:
    response = await http.post(
        "/api/reviews",
        json={"projectId": str(gig.project_id), "rating": rating, "comment": "Fine."},
        headers=reviewer.headers,
    )
    assert response.status_code == 201, response.text


async def a_released_gig(live: Live, amount_cents: int, stars: int) -> Gig:
    gig = await funded_gig(
        live.http, live.stripe, secret=live.secret, amount_cents=amount_cents, delivered=True
    )
    await move(live.http, gig, gig.client, "completed")
    released = await live.http.post(
        f"/api/escrow/{gig.escrow_id}/release", headers=gig.client.headers
    )
    assert released.status_code == 200, released.text
    await review(live.http, gig, gig.client, stars)
    await review(live.http, gig, gig.worker, 4)
    return gig


async def a_disputed_gig(live: Live, *, resolution: str, worker_cents: int = 0) -> Gig:
    gig = await funded_gig(
        live.http, live.stripe, secret=live.secret, amount_cents=1005, delivered=True
    )
    opened = await live.http.post(
        "/api/disputes",
        json={"projectId": str(gig.project_id), "reason": "The work does not match the brief."},
        headers=gig.client.headers,
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = {"resolution": resolution, "note": "Decided on the evidence."}
    if resolution == "split":
        body |= {"workerAmountCents": worker_cents, "clientAmountCents": 1005 - worker_cents}
    resolved = await live.http.post(
        f"/api/disputes/{opened.json()['data']['id']}/resolve",
        json=body,
        headers=live.admin.headers,
    )
    assert resolved.status_code == 200, resolved.text
    return gig


async def write_side(database_url: str) -> dict[str, tuple[Any, ...]]:
    """Each booking's money as the write side's tables tell it, in the read model's columns."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """
            SELECT e.booking_id, e.status, e.currency,
                   coalesce(p.amount_cents, 0) AS funded,
                   coalesce(po.amount_cents + po.fee_cents, 0) AS released,
                   coalesce(po.amount_cents, 0) AS net,
                   coalesce(po.fee_cents, 0) AS fee,
                   coalesce((SELECT sum(amount_cents) FROM refunds r WHERE r.escrow_id = e.id), 0)
                       AS refunded
              FROM escrow_holds e
              LEFT JOIN payments p ON p.escrow_id = e.id AND p.status = 'succeeded'
              LEFT JOIN payouts po ON po.escrow_id = e.id"""
        )
    finally:
        await conn.close()
    return {
        str(r["booking_id"]): (
            r["status"],
            r["currency"],
            r["funded"],
            r["funded"] - r["released"] - r["refunded"],
            r["released"],
            r["net"],
            r["fee"],
            r["refunded"],
        )
        for r in rows
    }


async def test_after_a_mix_of_gigs_the_balances_and_ratings_are_what_the_write_side_says(
    live: Live,
) -> None:
    released = await a_released_gig(live, amount_cents=1005, stars=5)
    await a_released_gig(live, amount_cents=250_000, stars=2)
    cancelled = await funded_gig(live.http, live.stripe, secret=live.secret, amount_cents=777)
    await move(live.http, cancelled, cancelled.client, "cancelled")
    await a_disputed_gig(live, resolution="split", worker_cents=670)
    await a_disputed_gig(live, resolution="refund")
    await a_disputed_gig(live, resolution="release")
    await book_gig(live.http, amount_cents=4_200)  # booked, never paid

    await wait_caught_up(live)
    database_url = live.settings.database_url
    assert await balances(database_url) == await write_side(database_url)

    conn = await asyncpg.connect(database_url)
    try:
        earned = await conn.fetchrow(
            "SELECT earned_cents, pending_cents, fees_cents FROM analytics.worker_earnings "
            "WHERE worker_id = $1",
            released.worker.id,
        )
        # 10% of 1005 is 100.5: the fee rounds half up to 101 and the worker nets 904.
        assert tuple(earned) == (904, 0, 101)
        spend = await conn.fetchrow(
            "SELECT spent_cents, in_escrow_cents, refunded_cents FROM analytics.client_spend "
            "WHERE client_id = $1",
            cancelled.client.id,
        )
        assert tuple(spend) == (0, 0, 777)
        totals = await conn.fetchrow(
            """SELECT sum(gmv_cents) AS gmv, sum(fees_cents) AS fees, sum(refunds_cents) AS refunds
                 FROM analytics.platform_daily"""
        )
        truth = await conn.fetchrow(
            """SELECT (SELECT sum(amount_cents) FROM payments WHERE status = 'succeeded') AS gmv,
                      (SELECT sum(fee_cents) FROM payouts) AS fees,
                      (SELECT sum(amount_cents) FROM refunds) AS refunds"""
        )
        assert tuple(totals) == tuple(truth)
        rating = await conn.fetchrow(
            "SELECT count, average, stars_5 FROM analytics.worker_ratings WHERE worker_id = $1",
            released.worker.id,
        )
        assert (rating["count"], float(rating["average"]), rating["stars_5"]) == (1, 5.0, 1)
    finally:
        await conn.close()

    # The client's document in MongoDB: the project, its status and its billing.
    client = create_mongo_client(live.settings)
    try:
        client_data = mongo_database(client, live.settings)[CLIENT_DATA]

        async def billed() -> dict[str, Any] | None:
            document = await client_data.find_one({"_id": str(released.client.id)})
            entry = (document or {}).get("projects", {}).get(str(released.project_id))
            return entry if entry and entry["status"] == "completed" else None

        entry = await wait_until(billed, timeout=CATCH_UP_S, what="client_data")
    finally:
        client.close()
    assert entry["title"] == "Build a payment flow"
    assert entry["workerId"] == str(released.worker.id)
    billing = entry["billing"]
    assert (billing["paidCents"], billing["releasedCents"], billing["feesCents"]) == (
        1005,
        1005,
        101,
    )
    assert billing["inEscrowCents"] == billing["refundedCents"] == 0

    # The worker's public profile reads the same rating: the write side keeps none of its own.
    profile = await live.http.get(f"/api/users/{released.worker.id}")
    assert profile.status_code == 200, profile.text
    assert (profile.json()["data"]["ratingCount"], profile.json()["data"]["ratingAverage"]) == (
        1,
        5.0,
    )


async def test_a_redelivered_history_changes_no_read_model(live: Live) -> None:
    await a_released_gig(live, amount_cents=3_000, stars=3)
    await wait_caught_up(live)
    before = (
        await balances(live.settings.database_url),
        await ratings_rows(live.settings.database_url),
    )
    counts = await live.worker.fold_counts()
    folds = ("escrow_balances", "user_ratings")
    applied = sum(counts[(fold, "applied")] for fold in folds)
    taken = applied + sum(counts[(fold, "skipped")] for fold in folds)
    duplicates = sum(counts[(fold, "duplicate")] for fold in folds)

    # Everything again, as a relay that lost its marks (or `tulifo replay` into live topics) would.
    conn = await asyncpg.connect(live.settings.database_url)
    try:
        await conn.execute("UPDATE outbox SET published_at = NULL")
    finally:
        await conn.close()

    async def all_seen_twice() -> bool:
        now = await live.worker.fold_counts()
        return sum(now[(fold, "duplicate")] for fold in folds) - duplicates >= taken

    await wait_until(all_seen_twice, timeout=CATCH_UP_S, interval=0.2, what="the redelivery")
    after = (
        await balances(live.settings.database_url),
        await ratings_rows(live.settings.database_url),
    )
    assert after == before
    counts = await live.worker.fold_counts()
    assert sum(counts[(fold, "applied")] for fold in folds) == applied
    assert sum(counts[(fold, "dead_lettered")] for fold in folds) == 0


async def test_a_new_review_moves_the_rating_and_announces_it(live: Live) -> None:
    gig = await a_released_gig(live, amount_cents=2_000, stars=4)
    await wait_caught_up(live)
    rows = await ratings_rows(live.settings.database_url)
    assert rows[str(gig.worker.id)][:3] == ("worker", 1, 4)

    key = str(gig.worker.id).encode()
    records = await read_topics(
        live.settings.kafka_bootstrap,
        [stream_topic("ratings", live.settings.topic_prefix)],
        until=lambda got: any(r.key == key for r in got),
    )
    # Derived events go singly, keyed by their aggregate (which decides the partition).
    [announced] = [Event.model_validate_json(r.value) for r in records if r.key == key]
    assert announced.type == "rating.updated"
    assert announced.sequence == 1
    assert announced.data["count"] == 1
    assert announced.data["distribution"] == [0, 0, 0, 1, 0]
    assert announced.data["bayesian"] == pytest.approx((5 * 3.5 + 4) / 6, abs=1e-4)


async def test_an_event_that_never_reached_kafka_is_folded_from_the_event_store(
    live: Live,
) -> None:
    """A gap in an aggregate's sequence (a table recovered short, a broker that lost records)
    is filled from the outbox before the next event is folded, not skipped."""
    user = uuid.uuid4()
    reviews = [review_event(reviewee_id=user, rating=stars) for stars in (5, 4, 3, 2, 1)]
    database_url = live.settings.database_url
    await append_to_outbox(database_url, reviews[:3])
    await wait_until(
        lambda: rated(database_url, user, 3), timeout=CATCH_UP_S, what="the first three reviews"
    )
    # The fourth is committed but never published: marked so in its own transaction.
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await append_events(conn, [reviews[3]])
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE event_id = $1", reviews[3].event_id
            )
    finally:
        await pool.close()
    await append_to_outbox(database_url, reviews[4:])

    row = await wait_until(
        lambda: rated(database_url, user, 5), timeout=CATCH_UP_S, what="all five reviews"
    )
    assert (row["count"], row["sum"]) == (5, 15)
    counts = await live.worker.fold_counts()
    assert counts[("user_ratings", "filled")] >= 1


async def rated(database_url: str, user: uuid.UUID, count: int) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT count, sum FROM analytics.user_ratings WHERE user_id = $1", user
        )
    finally:
        await conn.close()
    return row if row is not None and row["count"] >= count else None


async def test_an_event_the_fold_refuses_is_dead_lettered_alone_from_its_pack(live: Live) -> None:
    """A pack holds many aggregates' events; one of them that cannot be folded is parked with its
    place in the pack, and its neighbours are folded."""
    rated_user = uuid.uuid4()
    partitions = live.settings.topic_partitions
    refused_user = next(
        candidate
        for candidate in iter(uuid.uuid4, None)
        if partition_of(str(candidate), partitions) == partition_of(str(rated_user), partitions)
    )
    refused = review_event(reviewee_id=refused_user, rating=5)
    refused = refused.model_copy(update={"data": {**refused.data, "rating": 9}})
    events = [
        review_event(reviewee_id=rated_user, rating=5),
        refused,
        review_event(reviewee_id=rated_user, rating=3),
    ]
    await append_to_outbox(live.settings.database_url, events)  # one transaction: one pack

    row = await wait_until(
        lambda: rated(live.settings.database_url, rated_user, 2),
        timeout=CATCH_UP_S,
        what="the two good reviews",
    )
    assert (row["count"], row["sum"]) == (2, 8)
    parked = await read_topics(
        live.settings.kafka_bootstrap,
        [dead_letter_topic(live.settings.topic_prefix)],
        until=lambda got: any(header(r, "event_id") == str(refused.event_id) for r in got),
    )
    [record] = [r for r in parked if header(r, "event_id") == str(refused.event_id)]
    assert Event.model_validate_json(record.value).data["rating"] == 9
    assert record.key == str(refused_user).encode()
    assert header(record, "original_index") is not None
    assert header(record, "dead_letter_agent") == "user_ratings"
    assert "rating must be 1-5, not 9" in (header(record, "dead_letter_reason") or "")
    assert await rated(live.settings.database_url, refused_user, 1) is None
