"""GET /api/escrow/{id}: the hold with every payment, payout and refund, for its parties and
admins; anyone else gets the 404 of a hold that does not exist."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import stripe
from fastapi import FastAPI

from tests.api.conftest import Account, register
from tests.api.gigs import Gig, book_gig, funded_gig, make_admin, move


async def _view(client: httpx.AsyncClient, gig: Gig, who: Account) -> dict[str, Any]:
    response = await client.get(f"/api/escrow/{gig.escrow_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_a_released_hold_lists_its_payment_and_payout(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await funded_gig(
        client, stripe_api, secret=webhook_secret, amount_cents=1005, delivered=True
    )
    released = await client.post(f"/api/escrow/{gig.escrow_id}/release", headers=gig.client.headers)
    assert released.status_code == 200, released.text

    for party in (gig.client, gig.worker):
        data = await _view(client, gig, party)
        assert data["status"] == "released"
        (payment,) = data["payments"]
        assert payment["id"] == data["paymentId"]
        assert payment["paymentIntentId"].startswith("pi_")
        assert (payment["status"], payment["amountCents"], payment["currency"]) == (
            "succeeded",
            1005,
            "USD",
        )
        assert (payment["feeCents"], payment["netCents"], payment["refundedCents"]) == (101, 904, 0)
        assert payment["succeededAt"] is not None
        (payout,) = data["payouts"]
        assert (payout["amountCents"], payout["feeCents"], payout["status"]) == (
            904,
            101,
            "pending_transfer",
        )
        assert (payout["currency"], payout["disputeId"]) == ("USD", None)
        assert payout["createdAt"] is not None
        assert data["refunds"] == []


async def test_a_refunded_hold_lists_its_refund(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, amount_cents=2_000)
    await move(client, gig, gig.client, "cancelled")

    data = await _view(client, gig, gig.worker)

    assert (data["status"], data["refundedCents"]) == ("refunded", 2_000)
    (payment,) = data["payments"]
    assert (payment["status"], payment["refundedCents"]) == ("succeeded", 2_000)
    (refund,) = data["refunds"]
    assert (refund["amountCents"], refund["currency"], refund["reason"]) == (
        2_000,
        "USD",
        "cancellation",
    )
    assert (refund["paymentId"], refund["disputeId"]) == (payment["id"], None)
    assert data["payouts"] == []


async def test_an_unfunded_hold_has_no_movements(client: httpx.AsyncClient) -> None:
    gig = await book_gig(client)

    data = await _view(client, gig, gig.client)

    assert data["status"] == "unfunded"
    assert (data["payments"], data["payouts"], data["refunds"]) == ([], [], [])
    assert (data["paymentId"], data["payout"]) == (None, None)


async def test_others_get_the_answer_of_a_hold_that_does_not_exist(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    gig = await book_gig(client)
    admin = await make_admin(app, client)
    assert (await _view(client, gig, admin))["id"] == str(gig.escrow_id)

    missing = await client.get(f"/api/escrow/{uuid.uuid4()}", headers=gig.client.headers)
    assert missing.status_code == 404
    for role in ("client", "worker"):
        stranger = await register(client, role=role)
        response = await client.get(f"/api/escrow/{gig.escrow_id}", headers=stranger.headers)
        assert response.status_code == 404, (role, response.text)
        assert response.json()["error"] == missing.json()["error"]
    assert (await client.get(f"/api/escrow/{gig.escrow_id}")).status_code == 401
