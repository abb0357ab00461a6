"""GET /api/bookings: a party's own bookings, newest first, page by page, by escrow status."""

from __future__ import annotations

from typing import Any

import httpx
import stripe
from fastapi import FastAPI

from tests.api.conftest import Account, error_fields, register
from tests.api.gigs import book_gig, make_admin, pay


async def _page(
    client: httpx.AsyncClient, who: Account, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = await client.get("/api/bookings", params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return data["items"], data["nextCursor"]


async def test_each_party_sees_its_own_bookings_with_the_other_side(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner = await register(client, role="client", name="Cleo Client")
    first = await book_gig(client, owner=owner, amount_cents=1_250)
    second = await book_gig(client, owner=owner, amount_cents=3_000, currency="EUR")
    elsewhere = await book_gig(client)

    items, cursor = await _page(client, owner)
    assert cursor is None
    assert [item["id"] for item in items] == [str(second.booking_id), str(first.booking_id)]
    newest = items[0]
    assert newest["projectId"] == str(second.project_id)
    assert newest["projectTitle"] == "Build a payment flow"
    assert (newest["agreedAmountCents"], newest["currency"]) == (3_000, "EUR")
    assert (newest["escrowId"], newest["escrowStatus"]) == (str(second.escrow_id), "unfunded")
    assert newest["role"] == "client"
    assert newest["otherParty"] == {"id": str(second.worker.id), "name": "Wim Worker"}

    worker_items, _ = await _page(client, first.worker)
    assert [item["id"] for item in worker_items] == [str(first.booking_id)]
    assert worker_items[0]["role"] == "worker"
    assert worker_items[0]["otherParty"] == {"id": str(owner.id), "name": "Cleo Client"}

    stranger = await register(client, role="worker")
    assert await _page(client, stranger) == ([], None)

    admin = await make_admin(app, client)
    admin_items, _ = await _page(client, admin, limit=3)
    # Nothing else books while this test runs: the three newest bookings are these.
    assert [item["id"] for item in admin_items] == [
        str(elsewhere.booking_id),
        str(second.booking_id),
        str(first.booking_id),
    ]
    assert (admin_items[0]["role"], admin_items[0]["otherParty"]) == (None, None)


async def test_paging_with_the_cursor_walks_every_booking_once(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    gigs = [await book_gig(client, owner=owner, amount_cents=1_000 + i) for i in range(5)]

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        items, cursor = await _page(client, owner, **params)
        pages += 1
        seen += [item["id"] for item in items]
        if cursor is None:
            break

    assert pages == 3
    assert seen == [str(gig.booking_id) for gig in reversed(gigs)]


async def test_the_status_filter_is_the_escrow_status(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    owner = await register(client, role="client")
    unfunded = await book_gig(client, owner=owner)
    funded = await book_gig(client, owner=owner)
    await pay(client, stripe_api, funded, secret=webhook_secret)

    items, _ = await _page(client, owner, status="funded")
    assert [(item["id"], item["escrowStatus"]) for item in items] == [
        (str(funded.booking_id), "funded")
    ]
    items, _ = await _page(client, owner, status="unfunded")
    assert [item["id"] for item in items] == [str(unfunded.booking_id)]
    assert await _page(client, owner, status="released") == ([], None)


async def test_bad_parameters_and_no_token(client: httpx.AsyncClient) -> None:
    someone = await register(client, role="client")
    for params, field in (
        ({"status": "paid"}, "query.status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "query.limit"),
    ):
        response = await client.get("/api/bookings", params=params, headers=someone.headers)
        assert response.status_code == 422, (params, response.text)
        assert field in error_fields(response)
    assert (await client.get("/api/bookings")).status_code == 401
