"""POST /api/payments/webhook: signed by Stripe or refused, applied once, amounts checked."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import stripe

from tests.api.conftest import outbox_events
from tests.api.gigs import Gig, book_gig, create_intent, move
from tests.api.stripe_support import (
    WEBHOOK,
    confirm_card,
    refunds_at_stripe,
    send_webhook,
    signed,
    stripe_event,
)


async def _paid_event(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient
) -> tuple[Gig, dict[str, Any], dict[str, Any]]:
    """A booked gig, its intent, and Stripe's payment_intent.succeeded for it (not sent)."""
    gig = await book_gig(client, amount_cents=1005)
    intent = await create_intent(client, gig)
    paid = await confirm_card(stripe_api, intent["paymentIntentId"])
    return gig, intent, stripe_event("payment_intent.succeeded", paid)


async def _escrow_status(db: asyncpg.Connection, escrow_id: uuid.UUID) -> str:
    status: str = await db.fetchval("SELECT status FROM escrow_holds WHERE id = $1", escrow_id)
    return status


async def test_a_successful_payment_funds_the_escrow_and_says_so(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, intent, event = await _paid_event(client, stripe_api)

    response = await send_webhook(client, event, secret=webhook_secret)

    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"eventId": event["id"], "outcome": "applied", "note": None}
    payment = await db.fetchrow(
        "SELECT * FROM payments WHERE id = $1", uuid.UUID(intent["paymentId"])
    )
    assert payment["status"] == "succeeded"
    assert payment["stripe_charge_id"].startswith("ch_")
    escrow = await db.fetchrow("SELECT * FROM escrow_holds WHERE id = $1", gig.escrow_id)
    assert escrow["status"] == "funded"
    assert escrow["funded_at"] is not None
    (completed,) = await outbox_events(db, event_type="payment.completed", key=gig.project_id)
    assert completed["data"] == {
        "payment_id": intent["paymentId"],
        "booking_id": str(gig.booking_id),
        "escrow_id": str(gig.escrow_id),
        "project_id": str(gig.project_id),
        "client_id": str(gig.client.id),
        "worker_id": str(gig.worker.id),
        "amount_cents": 1005,
        "fee_cents": 101,
        "net_cents": 904,
        "currency": "USD",
        "stripe_payment_intent_id": intent["paymentIntentId"],
    }
    (funded,) = await outbox_events(db, event_type="escrow.funded", key=gig.project_id)
    assert funded["data"]["escrow_id"] == str(gig.escrow_id)
    assert (funded["data"]["amount_cents"], funded["data"]["fee_cents"]) == (1005, 101)
    assert funded["data"]["net_cents"] == 904


async def test_an_unsigned_stale_or_tampered_webhook_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, _, event = await _paid_event(client, stripe_api)
    payload = json.dumps(event)
    tampered = payload.replace('"amount": 1005', '"amount": 1')
    assert tampered != payload
    attempts = {
        "MISSING_SIGNATURE": (payload, {"Content-Type": "application/json"}),
        "STALE_SIGNATURE": (
            payload,
            signed(payload, webhook_secret, timestamp=int(time.time()) - 301),
        ),
        "INVALID_SIGNATURE": (tampered, signed(payload, webhook_secret)),
    }
    for code, (body, headers) in attempts.items():
        response = await client.post(WEBHOOK, content=body, headers=headers)
        assert response.status_code == 400, (code, response.text)
        assert response.json()["error"]["code"] == code

    wrong_secret = await client.post(
        WEBHOOK, content=payload, headers=signed(payload, "whsec_someone_else")
    )
    assert wrong_secret.status_code == 400
    assert wrong_secret.json()["error"]["code"] == "INVALID_SIGNATURE"
    garbage = await client.post(
        WEBHOOK, content=payload, headers={"Stripe-Signature": "t=abc,v1=zzz"}
    )
    assert garbage.status_code == 400

    assert await _escrow_status(db, gig.escrow_id) == "unfunded"
    assert await db.fetchval("SELECT count(*) FROM stripe_events WHERE id = $1", event["id"]) == 0
    assert await outbox_events(db, event_type="escrow.funded", key=gig.project_id) == []


async def test_a_signed_body_that_is_not_a_stripe_event_is_a_400(
    client: httpx.AsyncClient, webhook_secret: str
) -> None:
    for body in ("not json", json.dumps({"id": "evt_1", "type": "x"}), json.dumps([1])):
        response = await client.post(WEBHOOK, content=body, headers=signed(body, webhook_secret))
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "INVALID_PAYLOAD"


async def test_a_replayed_event_is_acknowledged_and_changes_nothing(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, _, event = await _paid_event(client, stripe_api)
    first = await send_webhook(client, event, secret=webhook_secret)
    assert first.json()["data"]["outcome"] == "applied"

    replay = await send_webhook(client, event, secret=webhook_secret)
    # Stripe can also send the same news under a new event id.
    same_news = await send_webhook(
        client, {**event, "id": f"evt_{uuid.uuid4().hex[:24]}"}, secret=webhook_secret
    )

    assert replay.status_code == 200
    assert replay.json()["data"]["outcome"] == "duplicate"
    assert same_news.json()["data"]["outcome"] == "ignored"
    assert len(await outbox_events(db, event_type="payment.completed", key=gig.project_id)) == 1
    assert len(await outbox_events(db, event_type="escrow.funded", key=gig.project_id)) == 1


async def test_concurrent_deliveries_of_one_event_apply_it_once(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, _, event = await _paid_event(client, stripe_api)

    responses = await asyncio.gather(
        *(send_webhook(client, event, secret=webhook_secret) for _ in range(5))
    )

    assert [r.status_code for r in responses] == [200] * 5
    outcomes = sorted(r.json()["data"]["outcome"] for r in responses)
    assert outcomes == ["applied"] + ["duplicate"] * 4
    assert len(await outbox_events(db, event_type="escrow.funded", key=gig.project_id)) == 1


async def _declined_intent(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient
) -> tuple[Gig, dict[str, Any], dict[str, Any]]:
    """A booked gig, its payment intent, and Stripe's intent after a declined card."""
    gig = await book_gig(client)
    intent = await create_intent(client, gig)
    declined = await confirm_card(
        stripe_api, intent["paymentIntentId"], card="pm_card_chargeCustomerFail"
    )
    return gig, intent, declined


async def test_a_declined_card_marks_the_payment_failed_with_stripes_reason(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, intent, declined = await _declined_intent(client, stripe_api)
    assert declined["status"] == "requires_payment_method"

    response = await send_webhook(
        client, stripe_event("payment_intent.payment_failed", declined), secret=webhook_secret
    )

    assert response.json()["data"]["outcome"] == "applied"
    payment = await db.fetchrow(
        "SELECT * FROM payments WHERE id = $1", uuid.UUID(intent["paymentId"])
    )
    assert payment["status"] == "failed"
    assert payment["failure_code"] == "card_declined"
    assert payment["failure_message"] == "Your card was declined."
    assert await _escrow_status(db, gig.escrow_id) == "unfunded"
    (failed,) = await outbox_events(db, event_type="payment.failed", key=gig.project_id)
    assert failed["data"]["failure_code"] == "card_declined"
    assert failed["data"]["amount_cents"] == gig.amount_cents
    # The client's retry gets a new intent (tests/api/test_payment_retry.py).
    again = await create_intent(client, gig)
    assert again["paymentIntentId"] != intent["paymentIntentId"]
    assert again["status"] == "pending"


async def test_a_failure_reported_twice_is_recorded_once(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    # Stripe's redelivery under another event id, or the reconciliation sweep before it
    # (api/jobs/kinds.py): the client hears of the decline once.
    gig, _, declined = await _declined_intent(client, stripe_api)
    outcomes = [
        (
            await send_webhook(
                client,
                stripe_event("payment_intent.payment_failed", declined),
                secret=webhook_secret,
            )
        ).json()["data"]["outcome"]
        for _ in range(2)
    ]
    assert outcomes == ["applied", "ignored"]
    assert len(await outbox_events(db, event_type="payment.failed", key=gig.project_id)) == 1


async def test_a_failure_reported_after_the_success_is_ignored(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, intent, event = await _paid_event(client, stripe_api)
    await send_webhook(client, event, secret=webhook_secret)
    stale_failure = stripe_event(
        "payment_intent.payment_failed",
        {**event["data"]["object"], "last_payment_error": {"code": "card_declined"}},
    )

    response = await send_webhook(client, stale_failure, secret=webhook_secret)

    assert response.json()["data"]["outcome"] == "ignored"
    status = await db.fetchval(
        "SELECT status FROM payments WHERE id = $1", uuid.UUID(intent["paymentId"])
    )
    assert status == "succeeded"
    assert await outbox_events(db, event_type="payment.failed", key=gig.project_id) == []


async def test_an_amount_or_currency_mismatch_is_recorded_and_never_funds(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, intent, event = await _paid_event(client, stripe_api)
    paid = event["data"]["object"]
    for wrong in ({"amount": 1004}, {"currency": "eur"}):
        forged = stripe_event("payment_intent.succeeded", {**paid, **wrong})

        response = await send_webhook(client, forged, secret=webhook_secret)

        assert response.status_code == 200
        ack = response.json()["data"]
        assert ack["outcome"] == "rejected"
        assert "1005 USD" in ack["note"]
        ledger = await db.fetchrow("SELECT * FROM stripe_events WHERE id = $1", forged["id"])
        assert ledger["outcome"] == "rejected"
        assert ledger["note"] == ack["note"]
    assert await _escrow_status(db, gig.escrow_id) == "unfunded"
    payment = await db.fetchrow(
        "SELECT * FROM payments WHERE id = $1", uuid.UUID(intent["paymentId"])
    )
    assert payment["status"] == "pending"
    assert "Stripe reports 1005 EUR" in payment["anomaly"]
    assert await outbox_events(db, event_type="escrow.funded", key=gig.project_id) == []


async def test_unknown_event_types_and_foreign_intents_are_acknowledged_and_ignored(
    client: httpx.AsyncClient, webhook_secret: str, db: asyncpg.Connection
) -> None:
    other_type = stripe_event("customer.created", {"id": "cus_123", "object": "customer"})
    foreign = stripe_event(
        "payment_intent.succeeded",
        {"id": "pi_not_ours", "object": "payment_intent", "amount": 100, "currency": "usd"},
    )
    for event in (other_type, foreign):
        response = await send_webhook(client, event, secret=webhook_secret)
        assert response.status_code == 200
        assert response.json()["data"]["outcome"] == "ignored"
        outcome = await db.fetchval("SELECT outcome FROM stripe_events WHERE id = $1", event["id"])
        assert outcome == "ignored"


async def test_a_payment_landing_after_cancellation_is_refunded_in_full(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await book_gig(client, amount_cents=1005)
    intent = await create_intent(client, gig)
    paid = await confirm_card(stripe_api, intent["paymentIntentId"])
    await move(client, gig, gig.client, "cancelled")

    response = await send_webhook(
        client, stripe_event("payment_intent.succeeded", paid), secret=webhook_secret
    )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["outcome"] == "applied"
    assert await refunds_at_stripe(stripe_api, intent["paymentIntentId"]) == [1005]
    assert await _escrow_status(db, gig.escrow_id) == "refunded"
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert (refunded["data"]["amount_cents"], refunded["data"]["reason"]) == (1005, "cancellation")


async def test_refunds_made_outside_the_api_are_recorded_once(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig, intent, event = await _paid_event(client, stripe_api)
    await send_webhook(client, event, secret=webhook_secret)
    charge_id = event["data"]["object"]["latest_charge"]["id"]

    # Someone refunds part of the charge in the Stripe dashboard, then the rest.
    await stripe_api.v1.refunds.create_async(params={"charge": charge_id, "amount": 300})
    partial = stripe_event(
        "charge.refunded", (await stripe_api.v1.charges.retrieve_async(charge_id)).to_dict()
    )
    first = await send_webhook(client, partial, secret=webhook_secret)
    replay = await send_webhook(client, partial, secret=webhook_secret)

    assert first.json()["data"]["outcome"] == "applied"
    assert replay.json()["data"]["outcome"] == "duplicate"
    assert await _escrow_status(db, gig.escrow_id) == "funded"
    refunded = await db.fetchval(
        "SELECT refunded_cents FROM payments WHERE id = $1", uuid.UUID(intent["paymentId"])
    )
    assert refunded == 300

    await stripe_api.v1.refunds.create_async(params={"charge": charge_id, "amount": 705})
    charge = (await stripe_api.v1.charges.retrieve_async(charge_id)).to_dict()
    # Recent API versions send the charge without its refund list: the running total is enough.
    del charge["refunds"]
    full = stripe_event("charge.refunded", charge)
    assert (await send_webhook(client, full, secret=webhook_secret)).status_code == 200
    again = stripe_event("charge.refunded", charge)
    assert (await send_webhook(client, again, secret=webhook_secret)).json()["data"][
        "outcome"
    ] == "ignored"

    rows = await db.fetch(
        """SELECT amount_cents, reason, stripe_refund_id IS NOT NULL AS has_id
             FROM refunds WHERE escrow_id = $1 ORDER BY amount_cents""",
        gig.escrow_id,
    )
    assert [tuple(r) for r in rows] == [(300, "external", True), (705, "external", False)]
    assert await _escrow_status(db, gig.escrow_id) == "refunded"
    (event_refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert event_refunded["data"]["reason"] == "external"
    assert event_refunded["data"]["amount_cents"] == 1005


async def _refunds_and_status(db: asyncpg.Connection, gig: Any) -> tuple[int, str]:
    count = await db.fetchval("SELECT count(*) FROM refunds WHERE escrow_id = $1", gig.escrow_id)
    return count, await _escrow_status(db, gig.escrow_id)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda c: c["refunds"]["data"][0].pop("amount"), "is None, not a whole number"),
        (lambda c: c["refunds"]["data"][0].update(amount="lots"), "is 'lots', not a whole"),
        (lambda c: c["refunds"]["data"][0].update(amount=12.5), "is 12.5, not a whole"),
        (lambda c: c.update(amount_refunded=10_000_000), "above the payment's 1005"),
        (lambda c: c["refunds"].update(data="nope"), "refunds.data is not a list"),
        (lambda c: c.update(refunds=["nope"]), "malformed charge.refunded"),
    ],
)
async def test_a_signed_but_malformed_refund_is_acknowledged_and_changes_nothing(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
    tamper: Any,
    why: str,
) -> None:
    gig, _, event = await _paid_event(client, stripe_api)
    await send_webhook(client, event, secret=webhook_secret)
    charge_id = event["data"]["object"]["latest_charge"]["id"]
    await stripe_api.v1.refunds.create_async(params={"charge": charge_id, "amount": 300})
    charge = (await stripe_api.v1.charges.retrieve_async(charge_id)).to_dict()
    tamper(charge)
    before = await _refunds_and_status(db, gig)

    response = await send_webhook(
        client, stripe_event("charge.refunded", charge), secret=webhook_secret
    )

    # 200, not 4xx or 500: Stripe would redeliver an event that can never apply, for days.
    assert response.status_code == 200, response.text
    ack = response.json()["data"]
    assert ack["outcome"] == "rejected"
    assert why in ack["note"]
    assert await _refunds_and_status(db, gig) == before == (0, "funded")


async def test_a_signed_body_nested_deeper_than_json_goes_is_refused(
    client: httpx.AsyncClient, webhook_secret: str
) -> None:
    payload = "[" * 100_000 + "]" * 100_000
    response = await client.post(WEBHOOK, content=payload, headers=signed(payload, webhook_secret))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_PAYLOAD"
