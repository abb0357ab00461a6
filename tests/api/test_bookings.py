"""/api/bookings: booking the accepted bid's worker creates the booking and its escrow hold."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.conftest import error_fields, outbox_events, register
from tests.api.gigs import awarded_gig, book, booked_gig, open_gig, project_status, row_counts


async def test_booking_creates_the_booking_and_its_unfunded_hold_in_one_go(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    # 1005 cents → a fee of 101 (10%, half up) and 904 for the worker (api/money.py).
    gig = await awarded_gig(client, amount_cents=100_005)
    response = await book(client, gig.owner, gig.project_id, gig.worker.id, 100_005)
    assert response.status_code == 201, response.text
    booking = response.json()["data"]
    assert booking["projectId"] == str(gig.project_id)
    assert booking["bidId"] == gig.bid["id"]
    assert booking["clientId"] == str(gig.owner.id)
    assert booking["workerId"] == str(gig.worker.id)
    assert booking["agreedAmountCents"] == 100_005
    escrow = booking["escrow"]
    assert escrow["status"] == "unfunded"
    assert (escrow["amountCents"], escrow["feeCents"], escrow["netCents"]) == (
        100_005,
        10_001,
        90_004,
    )
    assert escrow["currency"] == "USD"
    assert escrow["fundedAt"] is None

    hold = await db.fetchrow("SELECT * FROM escrow_holds WHERE project_id = $1", gig.project_id)
    assert hold is not None
    assert str(hold["id"]) == escrow["id"]
    assert str(hold["booking_id"]) == booking["id"]
    assert (hold["client_id"], hold["worker_id"]) == (gig.owner.id, gig.worker.id)

    (event,) = await outbox_events(db, event_type="booking.created", key=gig.project_id)
    assert event["actor_id"] == str(gig.owner.id)
    assert event["data"] == {
        "booking_id": booking["id"],
        "project_id": str(gig.project_id),
        "bid_id": gig.bid["id"],
        "client_id": str(gig.owner.id),
        "worker_id": str(gig.worker.id),
        "escrow_hold_id": escrow["id"],
        "agreed_amount_cents": 100_005,
        "fee_cents": 10_001,
        "net_cents": 90_004,
        "currency": "USD",
    }
    # The project shows its booking, and stays awarded until the worker starts.
    project = (await client.get(gig.url, headers=gig.owner.headers)).json()["data"]
    assert (project["bookingId"], project["status"]) == (booking["id"], "awarded")


async def test_agreed_amount_may_be_spelled_with_its_unit(client: httpx.AsyncClient) -> None:
    gig = await awarded_gig(client)
    response = await client.post(
        "/api/bookings",
        json={
            "projectId": str(gig.project_id),
            "workerId": str(gig.worker.id),
            "agreedAmountCents": gig.bid["amountCents"],
        },
        headers=gig.owner.headers,
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"workerId": "rival"}, ["workerId"]),
        ({"workerId": "random"}, ["workerId"]),
        ({"agreedAmountCents": 119_999}, ["agreedAmountCents"]),
        ({"agreedAmountCents": 150_000}, ["agreedAmountCents"]),
        ({"workerId": "rival", "agreedAmountCents": 1_000}, ["workerId", "agreedAmountCents"]),
        ({"agreedAmountCents": 0}, ["agreedAmountCents"]),
        ({"agreedAmountCents": -120_000}, ["agreedAmountCents"]),
        ({"agreedAmountCents": 10**20}, ["agreedAmountCents"]),
        ({"agreedAmountCents": 1200.0}, ["agreedAmountCents"]),
        ({"agreedAmountCents": None}, ["agreedAmountCents"]),
        ({"projectId": "not-a-uuid"}, ["projectId"]),
        ({"escrowStatus": "funded"}, ["escrowStatus"]),
    ],
)
async def test_terms_that_differ_from_the_accepted_bid_are_422s_that_write_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, change: dict[str, Any], fields: list[str]
) -> None:
    gig = await awarded_gig(client, amount_cents=120_000)
    people = {"rival": str(gig.rival.id), "random": str(uuid.uuid4())}
    body: dict[str, Any] = {
        "projectId": str(gig.project_id),
        "workerId": str(gig.worker.id),
        "agreedAmountCents": 120_000,
    }
    body.update({k: people.get(v, v) if isinstance(v, str) else v for k, v in change.items()})
    before = await row_counts(db)
    response = await client.post("/api/bookings", json=body, headers=gig.owner.headers)
    assert response.status_code == 422, response.text
    assert error_fields(response) == fields
    assert await row_counts(db) == before


async def test_a_project_is_booked_once(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    gig = await booked_gig(client)
    before = await row_counts(db)
    again = await book(client, gig.owner, gig.project_id, gig.worker.id, gig.bid["amountCents"])
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ALREADY_BOOKED"
    assert await row_counts(db) == before


async def test_two_bookings_at_once_make_one(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await awarded_gig(client)
    responses = await asyncio.gather(
        *(
            book(client, gig.owner, gig.project_id, gig.worker.id, gig.bid["amountCents"])
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409]
    for table in ("bookings", "escrow_holds"):
        count = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE project_id = $1", gig.project_id
        )
        assert count == 1, table
    assert len(await outbox_events(db, event_type="booking.created", key=gig.project_id)) == 1


async def test_only_the_owner_books_and_only_an_awarded_project(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await awarded_gig(client)
    still_open = await open_gig(client)
    other_client = await register(client, role="client")
    amount = gig.bid["amountCents"]
    before = await row_counts(db)
    # The booked worker and the losing bidder see the project; others get a 404.
    for account in (gig.worker, gig.rival):
        response = await book(client, account, gig.project_id, gig.worker.id, amount)
        assert response.status_code == 403
    response = await book(client, other_client, gig.project_id, gig.worker.id, amount)
    assert response.status_code == 404
    anonymous = await client.post(
        "/api/bookings",
        json={
            "projectId": str(gig.project_id),
            "workerId": str(gig.worker.id),
            "agreedAmountCents": amount,
        },
    )
    assert anonymous.status_code == 401
    unknown = await book(client, gig.owner, str(uuid.uuid4()), gig.worker.id, amount)
    assert unknown.status_code == 404

    response = await book(
        client, still_open.owner, still_open.project_id, still_open.worker.id, amount
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PROJECT_NOT_AWARDED"
    assert await row_counts(db) == before
    assert await project_status(db, gig.project_id) == "awarded"


async def test_a_booking_is_read_by_its_parties_only(client: httpx.AsyncClient) -> None:
    gig = await booked_gig(client)
    assert gig.booking is not None
    url = f"/api/bookings/{gig.booking['id']}"
    for account in (gig.owner, gig.worker):
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 200
        assert response.json()["data"] == gig.booking
    other_client = await register(client, role="client")
    missing = await client.get(f"/api/bookings/{uuid.uuid4()}", headers=gig.owner.headers)
    assert missing.status_code == 404
    for account in (gig.rival, other_client):
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 404
        assert response.json() == missing.json()
    assert (await client.get(url)).status_code == 401
    malformed = await client.get("/api/bookings/123", headers=gig.owner.headers)
    assert malformed.status_code == 422
