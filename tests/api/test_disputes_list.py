"""GET /api/disputes: the admins' queue of disputes, newest first, page by page, by status."""

from __future__ import annotations

from typing import Any

import httpx
import stripe
from fastapi import FastAPI

from tests.api.conftest import Account, error_fields, register
from tests.api.gigs import Gig, funded_gig, make_admin

REASON = "The delivered work does not match the brief."


async def _open(client: httpx.AsyncClient, gig: Gig, who: Account) -> str:
    response = await client.post(
        "/api/disputes",
        json={"projectId": str(gig.project_id), "reason": REASON},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    dispute_id: str = response.json()["data"]["id"]
    return dispute_id


async def _page(
    client: httpx.AsyncClient, who: Account, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = await client.get("/api/disputes", params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return data["items"], data["nextCursor"]


async def test_admins_list_disputes_newest_first_by_status_page_by_page(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
) -> None:
    gigs = [
        await funded_gig(
            client, stripe_api, secret=webhook_secret, amount_cents=1005, delivered=True
        )
        for _ in range(3)
    ]
    first = await _open(client, gigs[0], gigs[0].worker)
    second = await _open(client, gigs[1], gigs[1].client)
    third = await _open(client, gigs[2], gigs[2].worker)
    admin = await make_admin(app, client)
    resolved = await client.post(
        f"/api/disputes/{second}/resolve", json={"resolution": "refund"}, headers=admin.headers
    )
    assert resolved.status_code == 200, resolved.text

    # Nothing else opens disputes while this test runs: the newest ones are these three.
    seen: list[str] = []
    cursor: str | None = None
    for page in range(3):
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        items, cursor = await _page(client, admin, **params)
        assert len(items) == 1
        # Older disputes of other tests may follow the third; the first two must lead on.
        assert cursor is not None or page == 2
        seen.append(items[0]["id"])
    assert seen == [third, second, first]

    open_items, _ = await _page(client, admin, status="open", limit=2)
    assert [item["id"] for item in open_items] == [third, first]
    newest = open_items[0]
    assert (newest["projectId"], newest["escrowId"]) == (
        str(gigs[2].project_id),
        str(gigs[2].escrow_id),
    )
    assert newest["projectTitle"] == "Build a payment flow"
    assert newest["openedBy"] == {"id": str(gigs[2].worker.id), "name": "Wim Worker"}
    assert (newest["reason"], newest["status"], newest["resolution"]) == (REASON, "open", None)
    assert (newest["escrowStatus"], newest["amountCents"], newest["currency"]) == (
        "frozen",
        1005,
        "USD",
    )

    resolved_items, _ = await _page(client, admin, status="resolved", limit=1)
    (done,) = resolved_items
    assert done["id"] == second
    assert done["openedBy"]["id"] == str(gigs[1].client.id)
    assert (done["status"], done["resolution"], done["escrowStatus"]) == (
        "resolved",
        "refund",
        "refunded",
    )
    assert (done["clientAmountCents"], done["workerAmountCents"]) == (1005, 0)
    assert done["resolvedBy"] == str(admin.id)
    assert done["resolvedAt"] is not None


async def test_only_admins_list_disputes(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)
    await _open(client, gig, gig.worker)
    for account in (gig.client, gig.worker, await register(client, role="client")):
        response = await client.get("/api/disputes", headers=account.headers)
        assert response.status_code == 403, (account.role, response.text)
    assert (await client.get("/api/disputes")).status_code == 401


async def test_bad_parameters(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_admin(app, client)
    for params, field in (({"status": "closed"}, "query.status"), ({"cursor": "%%%"}, "cursor")):
        response = await client.get("/api/disputes", params=params, headers=admin.headers)
        assert response.status_code == 422, (params, response.text)
        assert field in error_fields(response)
