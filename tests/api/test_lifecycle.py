"""The gig lifecycle end to end: a client and a worker go from project to reviews through the HTTP
API alone (only the card payment happens at Stripe, played by localstripe), then the real outbox
relay publishes what the write side committed, and Kafka carries every seed event of the story
with the data that links them.

The story runs on an API and a database of its own, so its outbox holds this story and nothing
else, and the relay publishes it under a topic prefix of its own.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI

from api.money import platform_fee
from bridges.kafka import event_topics
from bridges.relay import OutboxRelay
from infrastructure.settings import Settings
from streams.packing import partition_of
from streams.topics import topic_of
from tests.api.conftest import Account, api_of_its_own, client_from, register, unique_ip
from tests.api.gigs import Gig, accept_bid, book_worker, data, move, open_gig, release
from tests.api.stripe_support import confirm_card, send_webhook, stripe_event
from tests.bridges.support import Delivered, outbox_rows, read_events
from tests.databases import fresh_database

# 10% of 1005 cents is 100.5: the fee rounds half up to 101 and the worker nets 904, so an
# amount that went through a float or a second fee rule shows here.
AMOUNT = 1005
SPLIT = platform_fee(AMOUNT)
CURRENCY = "USD"

# Every event the story commits, with how many times.
STORY_EVENTS = Counter(
    {
        "user.registered": 2,
        "project.created": 1,
        "bid.submitted": 1,
        "bid.accepted": 1,
        "booking.created": 1,
        "payment.completed": 1,
        "escrow.funded": 1,
        "project.status_changed": 2,  # work starts; the client accepts the delivery
        "project.delivered": 1,
        "escrow.released": 1,
        "review.created": 2,
    }
)


@dataclass(frozen=True)
class Marketplace:
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture
async def marketplace(settings: Settings, kafka: str, app: FastAPI) -> AsyncIterator[Marketplace]:
    """The API on a fresh database, with Kafka and a topic prefix of its own for the relay."""
    async with fresh_database("tulifo_lifecycle") as database_url:
        own = settings.model_copy(
            update={
                "database_url": database_url,
                "kafka_bootstrap": kafka,
                "topic_prefix": f"life{uuid.uuid4().hex[:8]}",
            }
        )
        async with (
            api_of_its_own(own) as api,
            client_from(api, ip=unique_ip()) as http,
        ):
            yield Marketplace(http, own)


@dataclass
class Story:
    """What the story made, as the API answered it: the gig, and the ids beyond it that Kafka's
    events must link."""

    gig: Gig
    payment_id: str = ""
    payment_intent_id: str = ""
    payout_id: str = ""
    client_review_id: str = ""
    worker_review_id: str = ""


async def test_a_gig_from_project_to_reviews_puts_every_seed_event_on_kafka(
    marketplace: Marketplace, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    assert (SPLIT.fee_cents, SPLIT.net_cents) == (101, 904)
    http = marketplace.http
    story = await client_posts_a_project_and_a_worker_bids(http)
    gig = story.gig
    await client_accepts_the_bid(http, gig)
    await client_books(http, gig)
    await client_pays_by_card(http, stripe_api, story, webhook_secret=webhook_secret)
    await worker_moves_the_project(http, gig, "in_progress")
    await worker_moves_the_project(http, gig, "delivered")
    await client_accepts_the_delivery(http, gig)
    await client_releases_the_escrow(http, story)
    await client_reviews_the_worker(http, story)
    await worker_reviews_the_client(http, story)

    records = await relay_the_outbox_to_kafka(marketplace.settings)

    events = [record.event for record in records]
    assert Counter(event["type"] for event in events) == STORY_EVENTS
    assert len({event["event_id"] for event in events}) == len(events)
    for record, event in zip(records, events, strict=True):
        assert_envelope(
            record,
            event,
            prefix=marketplace.settings.topic_prefix,
            partitions=marketplace.settings.topic_partitions,
        )
    assert_each_event_tells_its_part_of_the_story(events, story)
    assert_the_projects_events_share_a_partition_in_order(records, gig)


# --- the story, one HTTP call (or Stripe's part) at a time --------------------------------------


async def client_posts_a_project_and_a_worker_bids(http: httpx.AsyncClient) -> Story:
    gig = await open_gig(
        http,
        amount_cents=AMOUNT,
        owner=await register(http, role="client", name="Cleo Client"),
        worker_name="Wim Worker",
        project={
            "title": "Checkout with escrow",
            "description": "Stripe, webhooks, payouts.",
            "budgetCents": AMOUNT,
            "currency": CURRENCY,
            "requiredSkills": ["Python", "Stripe"],
        },
        bid={"deliveryDays": 5, "proposal": "Shipped this before."},
        rival=False,
    )
    return Story(gig)


async def client_accepts_the_bid(http: httpx.AsyncClient, gig: Gig) -> None:
    accepted = data(await accept_bid(http, gig.client, gig.project_id, gig.bid["id"]))
    assert accepted["bid"]["status"] == "accepted"


async def client_books(http: httpx.AsyncClient, gig: Gig) -> None:
    booking = (await book_worker(http, gig)).booking
    assert booking is not None
    assert (booking["escrow"]["feeCents"], booking["escrow"]["netCents"]) == (
        SPLIT.fee_cents,
        SPLIT.net_cents,
    )


async def client_pays_by_card(
    http: httpx.AsyncClient, sc: stripe.StripeClient, story: Story, *, webhook_secret: str
) -> None:
    """The client asks us for a PaymentIntent, pays it in the browser (Stripe's side), and
    Stripe tells us with the signed `payment_intent.succeeded` webhook."""
    intent = data(
        await http.post(
            "/api/payments/create-intent",
            json={"bookingId": str(story.gig.booking_id)},
            headers=story.gig.client.headers,
        ),
        201,
    )
    assert (intent["amountCents"], intent["feeCents"], intent["netCents"]) == (
        SPLIT.amount_cents,
        SPLIT.fee_cents,
        SPLIT.net_cents,
    )
    story.payment_id, story.payment_intent_id = intent["paymentId"], intent["paymentIntentId"]
    paid = await confirm_card(sc, story.payment_intent_id)
    assert (paid["status"], paid["amount"]) == ("succeeded", AMOUNT)
    response = await send_webhook(
        http, stripe_event("payment_intent.succeeded", paid), secret=webhook_secret
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["outcome"] == "applied"


async def worker_moves_the_project(http: httpx.AsyncClient, gig: Gig, status: str) -> None:
    await _move(http, gig, gig.worker, status)


async def client_accepts_the_delivery(http: httpx.AsyncClient, gig: Gig) -> None:
    await _move(http, gig, gig.client, "completed")


async def client_releases_the_escrow(http: httpx.AsyncClient, story: Story) -> None:
    escrow = await release(http, story.gig)
    assert escrow["status"] == "released"
    assert escrow["payout"]["amountCents"] == SPLIT.net_cents
    story.payout_id = escrow["payout"]["id"]


async def client_reviews_the_worker(http: httpx.AsyncClient, story: Story) -> None:
    story.client_review_id = await _review(http, story.gig, story.gig.client, rating=5)


async def worker_reviews_the_client(http: httpx.AsyncClient, story: Story) -> None:
    story.worker_review_id = await _review(http, story.gig, story.gig.worker, rating=4)


async def _move(http: httpx.AsyncClient, gig: Gig, who: Account, status: str) -> None:
    await move(http, gig, who, status)
    assert gig.project["status"] == status


async def _review(http: httpx.AsyncClient, gig: Gig, reviewer: Account, *, rating: int) -> str:
    review = data(
        await http.post(
            "/api/reviews",
            json={"projectId": str(gig.project_id), "rating": rating, "comment": "Smooth."},
            headers=reviewer.headers,
        ),
        201,
    )
    review_id: str = review["id"]
    return review_id


# --- Kafka ----------------------------------------------------------------------------------------


async def relay_the_outbox_to_kafka(settings: Settings) -> list[Delivered]:
    """Run the outbox relay until the outbox is drained, then read every topic of the catalog
    (dead letters included) from the beginning until each committed event is there."""
    relay = OutboxRelay(settings)
    await relay.start()
    try:
        while await relay.publish_pending():
            pass
    finally:
        await relay.stop()
    rows = await outbox_rows(settings.database_url)
    assert rows and all(row["published_at"] for row in rows)
    records = await read_events(
        settings.kafka_bootstrap, event_topics(settings.topic_prefix), count=len(rows)
    )
    assert sorted(r.event_id for r in records) == sorted(str(row["event_id"]) for row in rows)
    return records


def assert_envelope(
    record: Delivered, event: dict[str, Any], *, prefix: str, partitions: int
) -> None:
    """The event is on its stream's topic, on its aggregate's partition, and the envelope is
    whole."""
    assert record.topic == topic_of(event["type"], prefix)
    assert record.partition == partition_of(event["aggregate_id"], partitions)
    assert uuid.UUID(event["event_id"]).version == 4
    assert event["version"] == 1
    assert datetime.fromisoformat(event["occurred_at"]).tzinfo is not None
    assert set(event) == {
        "event_id",
        "type",
        "version",
        "occurred_at",
        "aggregate_id",
        "actor_id",
        "sequence",
        "data",
    }
    assert isinstance(event["sequence"], int)


def assert_each_event_tells_its_part_of_the_story(
    events: list[dict[str, Any]], story: Story
) -> None:
    published = {(e["type"], e["aggregate_id"], e["actor_id"]): e["data"] for e in events}
    expected = expected_events(story)
    assert published.keys() == expected.keys()
    for (event_type, key, actor), expected_data in expected.items():
        assert published[(event_type, key, actor)] == expected_data, event_type


def assert_the_projects_events_share_a_partition_in_order(
    records: list[Delivered], gig: Gig
) -> None:
    """Keyed by the project, its events land on one partition of the gigs topic, numbered 1, 2,
    3, … in the order they were made."""
    on_the_project = [record for record in records if record.key == str(gig.project_id).encode()]
    assert len(on_the_project) == 10  # all but the two registrations and the two reviews
    assert {(record.topic, record.partition) for record in on_the_project} == {
        (on_the_project[0].topic, on_the_project[0].partition)
    }
    in_order = sorted(on_the_project, key=lambda record: record.position)
    assert [r.event["sequence"] for r in in_order] == list(range(1, 11))
    moves = [r.event for r in in_order if r.type == "project.status_changed"]
    assert [(m["data"]["to_status"], m["actor_id"]) for m in moves] == [
        ("in_progress", str(gig.worker.id)),
        ("completed", str(gig.client.id)),
    ]


def expected_events(story: Story) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """(type, key, actor) → data of every event the story should have published. Money events
    of the gig are keyed by the project; a review by its reviewee; a user by themself. Stripe's
    webhook acts for no user of ours: its events have no actor."""
    gig = story.gig
    client, worker = str(gig.client.id), str(gig.worker.id)
    project, bid_id = str(gig.project_id), gig.bid["id"]
    booking_id, escrow_id = str(gig.booking_id), str(gig.escrow_id)
    money = {
        "amount_cents": SPLIT.amount_cents,
        "fee_cents": SPLIT.fee_cents,
        "net_cents": SPLIT.net_cents,
        "currency": CURRENCY,
    }
    parties = {"project_id": project, "client_id": client, "worker_id": worker}
    return {
        ("user.registered", client, client): {
            "user_id": client,
            "email": gig.client.email,
            "name": "Cleo Client",
            "role": "client",
        },
        ("user.registered", worker, worker): {
            "user_id": worker,
            "email": gig.worker.email,
            "name": "Wim Worker",
            "role": "worker",
        },
        ("project.created", project, client): {
            "project_id": project,
            "client_id": client,
            "title": "Checkout with escrow",
            "description": "Stripe, webhooks, payouts.",
            "budget_cents": AMOUNT,
            "currency": CURRENCY,
            "required_skills": ["Python", "Stripe"],
            "deadline": None,
            "status": "open",
        },
        ("bid.submitted", project, worker): {
            "bid_id": bid_id,
            **parties,
            "amount_cents": AMOUNT,
            "currency": CURRENCY,
            "delivery_days": 5,
        },
        ("bid.accepted", project, client): {
            "bid_id": bid_id,
            **parties,
            "amount_cents": AMOUNT,
            "currency": CURRENCY,
            "delivery_days": 5,
            "rejected_bid_ids": [],
        },
        ("booking.created", project, client): {
            "booking_id": booking_id,
            "bid_id": bid_id,
            **parties,
            "escrow_hold_id": escrow_id,
            "agreed_amount_cents": SPLIT.amount_cents,
            "fee_cents": SPLIT.fee_cents,
            "net_cents": SPLIT.net_cents,
            "currency": CURRENCY,
        },
        ("payment.completed", project, None): {
            "payment_id": story.payment_id,
            "booking_id": booking_id,
            "escrow_id": escrow_id,
            **parties,
            **money,
            "stripe_payment_intent_id": story.payment_intent_id,
        },
        ("escrow.funded", project, None): {
            "escrow_id": escrow_id,
            "booking_id": booking_id,
            **parties,
            "payment_id": story.payment_id,
            **money,
        },
        ("project.status_changed", project, worker): {
            **parties,
            "from_status": "awarded",
            "to_status": "in_progress",
            "rejected_bid_ids": [],
        },
        ("project.delivered", project, worker): {
            **parties,
            "booking_id": booking_id,
            "agreed_amount_cents": SPLIT.amount_cents,
            "currency": CURRENCY,
        },
        ("project.status_changed", project, client): {
            **parties,
            "from_status": "delivered",
            "to_status": "completed",
            "rejected_bid_ids": [],
        },
        ("escrow.released", project, client): {
            "escrow_id": escrow_id,
            "booking_id": booking_id,
            "project_id": project,
            "worker_id": worker,
            "payout_id": story.payout_id,
            **money,
            "dispute_id": None,
        },
        ("review.created", worker, client): {
            "review_id": story.client_review_id,
            "project_id": project,
            "reviewer_id": client,
            "reviewee_id": worker,
            "reviewee_role": "worker",
            "rating": 5,
        },
        ("review.created", client, worker): {
            "review_id": story.worker_review_id,
            "project_id": project,
            "reviewer_id": worker,
            "reviewee_id": client,
            "reviewee_role": "client",
            "rating": 4,
        },
    }
