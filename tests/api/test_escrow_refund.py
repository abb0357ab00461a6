"""Cancelling a funded project refunds its hold through Stripe: the cancel pins the refund, Stripe
is called with nothing held, and the refund and the cancellation are recorded together
(api/escrow/refunds.py; `refund_for_cancellation` does the same for a project already
cancelled)."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest
import stripe
from fastapi import FastAPI

from api.errors import TulifoError
from api.escrow.service import refund_for_cancellation
from bridges.stripe import StripeGateway
from infrastructure.processes import free_port
from tests.api.conftest import outbox_events
from tests.api.gigs import book_gig, funded_gig, move
from tests.api.stripe_support import refunds_at_stripe


async def _hold(db: asyncpg.Connection, escrow_id: uuid.UUID) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow(
        """SELECT e.status, e.refunded_at, p.status AS project_status,
                  pay.stripe_payment_intent_id, pay.refunded_cents
             FROM escrow_holds e
             JOIN projects p ON p.id = e.project_id
             JOIN payments pay ON pay.escrow_id = e.id
            WHERE e.id = $1""",
        escrow_id,
    )
    return row


async def test_cancelling_a_funded_project_refunds_the_whole_amount(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, amount_cents=1005)
    await move(client, gig, gig.worker, "in_progress")

    await move(client, gig, gig.client, "cancelled")

    hold = await _hold(db, gig.escrow_id)
    assert (hold["status"], hold["project_status"]) == ("refunded", "cancelled")
    assert hold["refunded_at"] is not None
    assert hold["refunded_cents"] == 1005
    assert await refunds_at_stripe(stripe_api, hold["stripe_payment_intent_id"]) == [1005]
    refund = await db.fetchrow("SELECT * FROM refunds WHERE escrow_id = $1", gig.escrow_id)
    assert (refund["amount_cents"], refund["reason"], refund["created_by"]) == (
        1005,
        "cancellation",
        gig.client.id,
    )
    assert refund["stripe_refund_id"].startswith("re_")
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert refunded["data"] == {
        "escrow_id": str(gig.escrow_id),
        "booking_id": str(gig.booking_id),
        "project_id": str(gig.project_id),
        "client_id": str(gig.client.id),
        "refund_id": str(refund["id"]),
        "amount_cents": 1005,
        "currency": "USD",
        "reason": "cancellation",
        "dispute_id": None,
    }


async def test_the_refund_is_called_directly_and_is_a_no_op_on_an_unfunded_hold(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)
    await refund_for_cancellation(
        app.state.tulifo.pool,
        stripe=app.state.stripe_gateway,
        project_id=gig.project_id,
        actor_id=gig.client.id,
    )
    assert (
        await db.fetchval("SELECT status FROM escrow_holds WHERE id = $1", gig.escrow_id)
        == "unfunded"
    )
    assert (
        await db.fetchval("SELECT count(*) FROM refunds WHERE escrow_id = $1", gig.escrow_id) == 0
    )


async def test_stripe_down_leaves_the_refund_pinned_for_the_retry(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    nobody_listens = StripeGateway(api_key="sk_test_x", api_base=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TulifoError) as raised:
            await refund_for_cancellation(
                app.state.tulifo.pool,
                project_id=gig.project_id,
                actor_id=gig.client.id,
                stripe=nobody_listens,
            )
    finally:
        await nobody_listens.aclose()

    assert raised.value.status_code == 503
    assert raised.value.code == "PAYMENT_PROVIDER_UNAVAILABLE"
    hold = await _hold(db, gig.escrow_id)
    # Pinned, not refunded: nothing else may decide about the money until the refund is made.
    assert (hold["status"], hold["refunded_cents"]) == ("refunding", 0)
    assert await refunds_at_stripe(stripe_api, hold["stripe_payment_intent_id"]) == []
    assert await outbox_events(db, event_type="escrow.refunded", key=gig.project_id) == []

    # Stripe back: the same call makes the pinned refund, once.
    await refund_for_cancellation(
        app.state.tulifo.pool,
        project_id=gig.project_id,
        actor_id=gig.client.id,
        stripe=app.state.stripe_gateway,
    )
    hold = await _hold(db, gig.escrow_id)
    assert (hold["status"], hold["refunded_cents"]) == ("refunded", gig.amount_cents)
    assert await refunds_at_stripe(stripe_api, hold["stripe_payment_intent_id"]) == [
        gig.amount_cents
    ]
    assert len(await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)) == 1


async def test_a_frozen_hold_is_not_refunded_by_a_cancellation(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    opened = await client.post(
        "/api/disputes",
        json={"projectId": str(gig.project_id), "reason": "The worker never started."},
        headers=gig.client.headers,
    )
    assert opened.status_code == 201, opened.text

    with pytest.raises(TulifoError) as raised:
        await refund_for_cancellation(
            app.state.tulifo.pool,
            stripe=app.state.stripe_gateway,
            project_id=gig.project_id,
            actor_id=gig.client.id,
        )

    assert (raised.value.status_code, raised.value.code) == (409, "ESCROW_FROZEN")
    assert (await _hold(db, gig.escrow_id))["status"] == "frozen"
