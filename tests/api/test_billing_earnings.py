"""GET /api/billing/earnings and /api/billing/payouts: a worker's side of the money."""

from __future__ import annotations

import httpx
import stripe

from api.money import platform_fee
from tests.api.conftest import register
from tests.api.gigs import funded_gig


async def _earnings(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, object]]:
    response = await client.get("/api/billing/earnings", headers=headers)
    assert response.status_code == 200, response.text
    currencies: list[dict[str, object]] = response.json()["data"]["currencies"]
    return currencies


async def test_a_worker_sees_what_is_held_then_what_was_paid_out_net_of_the_fee(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await funded_gig(
        client, stripe_api, secret=webhook_secret, amount_cents=1_005, delivered=True
    )
    worker = gig.worker.headers
    assert await _earnings(client, worker) == [
        {
            "currency": "USD",
            "paidOutCents": 0,
            "pendingTransferCents": 0,
            "payoutsCount": 0,
            "feesCents": 0,
            "heldCents": 1_005,
        }
    ]
    released = await client.post(f"/api/escrow/{gig.escrow_id}/release", headers=gig.client.headers)
    assert released.status_code == 200, released.text

    fee = platform_fee(1_005).fee_cents
    [usd] = await _earnings(client, worker)
    assert usd["heldCents"] == 0
    assert usd["payoutsCount"] == 1
    assert usd["feesCents"] == fee
    assert usd["paidOutCents"] + usd["pendingTransferCents"] == 1_005 - fee  # type: ignore[operator]

    page = (await client.get("/api/billing/payouts", headers=worker)).json()["data"]
    [payout] = page["items"]
    assert page["nextCursor"] is None
    assert (payout["escrowId"], payout["bookingId"], payout["projectId"]) == (
        str(gig.escrow_id),
        str(gig.booking_id),
        str(gig.project_id),
    )
    assert (payout["amountCents"], payout["feeCents"], payout["currency"]) == (
        1_005 - fee,
        fee,
        "USD",
    )
    # The client's own billing is not the worker's, and the other way round.
    assert (
        await client.get("/api/billing/earnings", headers=gig.client.headers)
    ).status_code == 403
    assert (await client.get("/api/billing/summary", headers=worker)).status_code == 403


async def test_a_worker_without_bookings_has_no_earnings_and_no_payouts(
    client: httpx.AsyncClient,
) -> None:
    worker = await register(client, role="worker")
    assert await _earnings(client, worker.headers) == []
    page = (await client.get("/api/billing/payouts", headers=worker.headers)).json()["data"]
    assert page == {"items": [], "nextCursor": None}
