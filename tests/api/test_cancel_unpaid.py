"""A project cancelled before it was paid cancels its open PaymentIntent at Stripe, after the
cancellation commits; a Stripe that cannot be reached leaves the cancellation standing and the
intent marked for a later retry."""

from __future__ import annotations

import asyncpg
import httpx
import stripe
from fastapi import FastAPI

from api.payments.service import retry_intent_cancellations
from bridges.stripe import StripeGateway
from tests.api.gigs import book_gig, create_intent, move


async def test_cancelling_an_unpaid_project_cancels_its_intent(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)
    intent = await create_intent(client, gig)

    await move(client, gig, gig.client, "cancelled")

    at_stripe = await stripe_api.v1.payment_intents.retrieve_async(intent["paymentIntentId"])
    assert at_stripe.status == "canceled"
    payment = await db.fetchrow("SELECT * FROM payments WHERE booking_id = $1", gig.booking_id)
    assert payment["status"] == "failed"
    assert payment["failure_code"] == "project_cancelled"
    assert payment["stripe_cancel"] == "cancelled"
    retry = await client.post(
        "/api/payments/create-intent",
        json={"bookingId": str(gig.booking_id)},
        headers=gig.client.headers,
    )
    assert retry.status_code == 409, retry.text
    assert (
        await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", gig.booking_id)
        == 1
    )


async def test_without_stripe_the_cancellation_stands_and_the_intent_waits(
    client: httpx.AsyncClient,
    app: FastAPI,
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
) -> None:
    gig = await book_gig(client)
    intent = await create_intent(client, gig)
    working: StripeGateway = app.state.stripe_gateway
    # A gateway to a port nothing listens on: connection refused, at once.
    app.state.stripe_gateway = StripeGateway(
        api_key="sk_test_tulifo_tests",
        api_base="http://127.0.0.1:9",
        max_network_retries=0,
    )
    try:
        await move(client, gig, gig.client, "cancelled")
    finally:
        await app.state.stripe_gateway.aclose()
        app.state.stripe_gateway = working

    project = await client.get(f"/api/projects/{gig.project_id}", headers=gig.client.headers)
    assert project.json()["data"]["status"] == "cancelled"
    payment = await db.fetchrow("SELECT * FROM payments WHERE booking_id = $1", gig.booking_id)
    assert (payment["status"], payment["stripe_cancel"]) == ("failed", "needed")
    at_stripe = await stripe_api.v1.payment_intents.retrieve_async(intent["paymentIntentId"])
    assert at_stripe.status == "requires_payment_method"

    # Earlier runs' leftovers come first (oldest first): a limit wide enough for them.
    await retry_intent_cancellations(pool=app.state.tulifo.pool, stripe=working, limit=10_000)

    at_stripe = await stripe_api.v1.payment_intents.retrieve_async(intent["paymentIntentId"])
    assert at_stripe.status == "canceled"
    assert (
        await db.fetchval("SELECT stripe_cancel FROM payments WHERE id = $1", payment["id"])
        == "cancelled"
    )
