"""/api/billing: a client's totals per currency and their payments, page by page."""

from __future__ import annotations

import httpx
import stripe
from fastapi import FastAPI

from tests.api.conftest import Account, register
from tests.api.gigs import book_gig, create_intent, funded_gig, make_admin, move, pay


async def _summary(client: httpx.AsyncClient, account: Account) -> list[dict[str, object]]:
    response = await client.get("/api/billing/summary", headers=account.headers)
    assert response.status_code == 200, response.text
    currencies: list[dict[str, object]] = response.json()["data"]["currencies"]
    return currencies


async def test_the_summary_adds_up_paid_refunded_held_released_and_fees(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
) -> None:
    released = await funded_gig(
        client, stripe_api, secret=webhook_secret, amount_cents=1005, delivered=True
    )
    owner = released.client
    assert (
        await client.post(f"/api/escrow/{released.escrow_id}/release", headers=owner.headers)
    ).status_code == 200
    refunded = await book_gig(client, owner=owner, amount_cents=2_000, currency="USD")
    await pay(client, stripe_api, refunded, secret=webhook_secret)
    await move(client, refunded, owner, "cancelled")
    held = await book_gig(client, owner=owner, amount_cents=3_000, currency="USD")
    await pay(client, stripe_api, held, secret=webhook_secret)
    pending = await book_gig(client, owner=owner, amount_cents=4_000, currency="USD")
    await create_intent(client, pending)
    euros = await book_gig(client, owner=owner, amount_cents=999, currency="EUR")
    await pay(client, stripe_api, euros, secret=webhook_secret)

    totals = await _summary(client, owner)

    assert totals == [
        {
            "currency": "EUR",
            "paidCents": 999,
            "paymentsCount": 1,
            "pendingCents": 0,
            "refundedCents": 0,
            "inEscrowCents": 999,
            "releasedCents": 0,
            "feesCents": 0,
        },
        {
            "currency": "USD",
            "paidCents": 1005 + 2_000 + 3_000,
            "paymentsCount": 3,
            "pendingCents": 4_000,
            "refundedCents": 2_000,
            "inEscrowCents": 3_000,
            "releasedCents": 1005,
            "feesCents": 101,
        },
    ]
    for row in totals:
        assert row["paidCents"] == (
            row["refundedCents"] + row["inEscrowCents"] + row["releasedCents"]  # type: ignore[operator]
        )

    page = await client.get("/api/billing/payments", headers=owner.headers)
    items = page.json()["data"]["items"]
    assert [(i["amountCents"], i["status"], i["escrowStatus"]) for i in items] == [
        (999, "succeeded", "funded"),
        (4_000, "pending", "unfunded"),
        (3_000, "succeeded", "funded"),
        (2_000, "succeeded", "refunded"),
        (1005, "succeeded", "released"),
    ]
    assert items[-1]["feeCents"] == 101 and items[-1]["netCents"] == 904
    assert items[3]["refundedCents"] == 2_000


async def test_payments_page_newest_first_and_only_the_clients_own(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
) -> None:
    first = await book_gig(client, amount_cents=1_000)
    owner = first.client
    await create_intent(client, first)
    for amount in (2_000, 3_000):
        await create_intent(client, await book_gig(client, owner=owner, amount_cents=amount))
    someone_else = await book_gig(client, amount_cents=7_000)
    await create_intent(client, someone_else)

    one = await client.get("/api/billing/payments?limit=2", headers=owner.headers)
    assert one.status_code == 200
    data = one.json()["data"]
    assert [i["amountCents"] for i in data["items"]] == [3_000, 2_000]
    assert data["nextCursor"]
    two = await client.get(
        f"/api/billing/payments?limit=2&cursor={data['nextCursor']}", headers=owner.headers
    )
    assert [i["amountCents"] for i in two.json()["data"]["items"]] == [1_000]
    assert two.json()["data"]["nextCursor"] is None

    bad = await client.get("/api/billing/payments?cursor=garbage", headers=owner.headers)
    assert bad.status_code == 422
    too_many = await client.get("/api/billing/payments?limit=1000", headers=owner.headers)
    assert too_many.status_code == 422


async def test_billing_is_for_clients(app: FastAPI, client: httpx.AsyncClient) -> None:
    worker = await register(client, role="worker")
    admin = await make_admin(app, client)
    for account in (worker, admin):
        for path in ("/api/billing/summary", "/api/billing/payments"):
            assert (await client.get(path, headers=account.headers)).status_code == 403
    assert (await client.get("/api/billing/summary")).status_code == 401
    newcomer = await register(client, role="client")
    assert await _summary(client, newcomer) == []
