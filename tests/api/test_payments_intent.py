"""POST /api/payments/create-intent: one Stripe PaymentIntent per booking, the fee split once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
import stripe

from tests.api.conftest import error_fields, register
from tests.api.gigs import book_gig, create_intent, pay

URL = "/api/payments/create-intent"


@pytest.mark.parametrize(
    ("amount", "fee", "net"),
    [
        (1005, 101, 904),  # 100.5 rounds half up
        (1004, 100, 904),
        (50, 5, 45),  # Stripe's minimum charge
        (999_999_99, 10_000_000, 89_999_999),
    ],
)
async def test_the_intent_charges_the_agreed_amount_and_splits_the_fee_exactly(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
    amount: int,
    fee: int,
    net: int,
) -> None:
    gig = await book_gig(client, amount_cents=amount)

    response = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )

    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert (data["amountCents"], data["feeCents"], data["netCents"]) == (amount, fee, net)
    assert data["currency"] == "USD"
    assert data["status"] == "pending"
    assert data["escrowId"] == str(gig.escrow_id)
    intent = await stripe_api.v1.payment_intents.retrieve_async(data["paymentIntentId"])
    assert intent.amount == amount
    assert intent.currency == "usd"
    assert intent.capture_method == "automatic"
    assert intent.client_secret == data["clientSecret"]
    assert intent.metadata["booking_id"] == str(gig.booking_id)
    assert intent.metadata["escrow_id"] == str(gig.escrow_id)
    row = await db.fetchrow("SELECT * FROM payments WHERE id = $1", uuid.UUID(data["paymentId"]))
    assert row is not None
    assert (row["amount_cents"], row["fee_cents"], row["net_cents"]) == (amount, fee, net)
    assert row["stripe_payment_intent_id"] == data["paymentIntentId"]
    assert row["status"] == "pending"


async def test_a_euro_booking_is_charged_in_lower_case_eur(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient
) -> None:
    gig = await book_gig(client, amount_cents=2_500, currency="EUR")
    data = await create_intent(client, gig)
    assert data["currency"] == "EUR"
    intent = await stripe_api.v1.payment_intents.retrieve_async(data["paymentIntentId"])
    assert intent.currency == "eur"


async def test_asking_again_returns_the_same_intent_not_a_second_one(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)
    first = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )
    again = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["data"] == first.json()["data"]
    count = await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", gig.booking_id)
    assert count == 1


async def test_concurrent_requests_for_one_booking_share_one_intent(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)

    responses = await asyncio.gather(
        *(
            client.post(URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers)
            for _ in range(5)
        )
    )

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["data"]["paymentIntentId"] for r in responses}) == 1
    count = await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", gig.booking_id)
    assert count == 1


async def test_only_the_bookings_client_may_pay_for_it(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)
    other_client = await register(client, role="client")
    as_worker = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.worker.headers
    )
    assert as_worker.status_code == 403, as_worker.text
    # Another client learns nothing of the booking: the answer for no such booking.
    hidden = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=other_client.headers
    )
    unknown = await client.post(
        URL, json={"bookingId": str(uuid.uuid4())}, headers=other_client.headers
    )
    assert hidden.status_code == unknown.status_code == 404, hidden.text
    assert hidden.json()["error"] == unknown.json()["error"]
    unauthenticated = await client.post(URL, json={"bookingId": str(gig.booking_id)})
    assert unauthenticated.status_code == 401
    assert (
        await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", gig.booking_id)
        == 0
    )


async def test_an_unknown_booking_is_a_404_and_a_malformed_one_a_422(
    client: httpx.AsyncClient,
) -> None:
    payer = await register(client, role="client")
    unknown = await client.post(URL, json={"bookingId": str(uuid.uuid4())}, headers=payer.headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"

    malformed = await client.post(URL, json={"bookingId": "not-a-uuid"}, headers=payer.headers)
    assert malformed.status_code == 422
    assert error_fields(malformed) == ["bookingId"]

    extra = await client.post(
        URL,
        json={"bookingId": str(uuid.uuid4()), "amountCents": 1},
        headers=payer.headers,
    )
    assert extra.status_code == 422
    assert error_fields(extra) == ["amountCents"]


async def test_a_funded_booking_cannot_be_paid_again(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await book_gig(client)
    await pay(client, stripe_api, gig, secret=webhook_secret)

    again = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ESCROW_ALREADY_FUNDED"


async def test_a_cancelled_project_cannot_be_paid_for(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)
    cancel = await client.put(
        f"/api/projects/{gig.project_id}/status",
        json={"status": "cancelled"},
        headers=gig.client.headers,
    )
    assert cancel.status_code == 200, cancel.text

    response = await client.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PROJECT_NOT_PAYABLE"
    assert (
        await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", gig.booking_id)
        == 0
    )
