"""After a declined card, create-intent makes a new PaymentIntent for the booking (the failed one
cancelled at Stripe first); while one is pending or paid it answers with that one."""

from __future__ import annotations

import asyncpg
import httpx
import stripe

from tests.api.gigs import book_gig, create_intent
from tests.api.stripe_support import confirm_card, send_webhook, stripe_event


async def _decline(
    client: httpx.AsyncClient, sc: stripe.StripeClient, intent_id: str, *, secret: str
) -> None:
    declined = await confirm_card(sc, intent_id, card="pm_card_chargeCustomerFail")
    assert declined["status"] == "requires_payment_method"
    response = await send_webhook(
        client, stripe_event("payment_intent.payment_failed", declined), secret=secret
    )
    assert response.json()["data"]["outcome"] == "applied", response.text


async def test_a_pending_intent_is_answered_again(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient
) -> None:
    gig = await book_gig(client)
    first = await create_intent(client, gig)
    again = await create_intent(client, gig)
    assert again["paymentIntentId"] == first["paymentIntentId"]
    assert again["paymentId"] == first["paymentId"]


async def test_a_declined_card_gets_a_new_intent_that_can_be_paid(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await book_gig(client, amount_cents=2500)
    first = await create_intent(client, gig)
    await _decline(client, stripe_api, first["paymentIntentId"], secret=webhook_secret)

    retry = await client.post(
        "/api/payments/create-intent",
        json={"bookingId": str(gig.booking_id)},
        headers=gig.client.headers,
    )

    assert retry.status_code == 201, retry.text
    second = retry.json()["data"]
    assert second["paymentIntentId"] != first["paymentIntentId"]
    assert second["status"] == "pending" and second["amountCents"] == 2500
    # The failed intent can no longer be paid beside the new one.
    old = await stripe_api.v1.payment_intents.retrieve_async(first["paymentIntentId"])
    assert old.status == "canceled"
    key = await db.fetchval(
        "SELECT idempotency_key FROM payment_intent_attempts WHERE booking_id = $1", gig.booking_id
    )
    assert key == f"pi-{gig.booking_id}-2"
    # Asked again while the new one is pending: the same one.
    assert (await create_intent(client, gig))["paymentIntentId"] == second["paymentIntentId"]

    paid = await confirm_card(stripe_api, second["paymentIntentId"])
    response = await send_webhook(
        client, stripe_event("payment_intent.succeeded", paid), secret=webhook_secret
    )
    assert response.json()["data"]["outcome"] == "applied", response.text
    rows = await db.fetch(
        "SELECT id, status FROM payments WHERE booking_id = $1 ORDER BY created_at", gig.booking_id
    )
    assert [(str(r["id"]), r["status"]) for r in rows] == [
        (first["paymentId"], "failed"),
        (second["paymentId"], "succeeded"),
    ]
    escrow = await client.get(f"/api/escrow/{gig.escrow_id}", headers=gig.client.headers)
    assert escrow.json()["data"]["status"] == "funded"


async def test_two_declines_get_three_distinct_intents(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await book_gig(client)
    seen = []
    for _ in range(2):
        intent = await create_intent(client, gig)
        seen.append(intent["paymentIntentId"])
        await _decline(client, stripe_api, intent["paymentIntentId"], secret=webhook_secret)
    seen.append((await create_intent(client, gig))["paymentIntentId"])
    assert len(set(seen)) == 3
