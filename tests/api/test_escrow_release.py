"""GET /api/escrow/{id} and POST /api/escrow/{id}/release: the client pays the worker the net,
once, after delivery, never while a dispute is open."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import stripe
from fastapi import FastAPI

from tests.api.conftest import outbox_events, register
from tests.api.gigs import book_gig, funded_gig, make_admin, move


def _release(client: httpx.AsyncClient, escrow_id: uuid.UUID, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/escrow/{escrow_id}/release", headers=headers)


async def _state(db: asyncpg.Connection, escrow_id: uuid.UUID) -> tuple[str, str, int]:
    """(escrow status, project status, payouts) of a hold."""
    row = await db.fetchrow(
        """SELECT e.status, p.status AS project_status,
                  (SELECT count(*) FROM payouts WHERE escrow_id = e.id) AS payouts
             FROM escrow_holds e JOIN projects p ON p.id = e.project_id WHERE e.id = $1""",
        escrow_id,
    )
    return row["status"], row["project_status"], row["payouts"]


async def test_releasing_a_delivered_gig_pays_the_worker_the_net_and_completes_it(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(
        client, stripe_api, secret=webhook_secret, amount_cents=1005, delivered=True
    )

    response = await _release(client, gig.escrow_id, gig.client.headers)

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "released"
    assert (data["amountCents"], data["feeCents"], data["netCents"]) == (1005, 101, 904)
    assert data["payout"]["amountCents"] == 904
    assert data["payout"]["feeCents"] == 101
    assert data["payout"]["status"] == "pending_transfer"
    assert data["releasedAt"] is not None
    payout = await db.fetchrow("SELECT * FROM payouts WHERE escrow_id = $1", gig.escrow_id)
    assert (payout["worker_id"], payout["amount_cents"], payout["currency"]) == (
        gig.worker.id,
        904,
        "USD",
    )
    assert await _state(db, gig.escrow_id) == ("released", "completed", 1)
    (released,) = await outbox_events(db, event_type="escrow.released", key=gig.project_id)
    assert released["data"] == {
        "escrow_id": str(gig.escrow_id),
        "booking_id": str(gig.booking_id),
        "project_id": str(gig.project_id),
        "worker_id": str(gig.worker.id),
        "payout_id": str(payout["id"]),
        "amount_cents": 1005,
        "fee_cents": 101,
        "net_cents": 904,
        "currency": "USD",
        "dispute_id": None,
    }
    moves = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert (moves[-1]["data"]["from_status"], moves[-1]["data"]["to_status"]) == (
        "delivered",
        "completed",
    )


async def test_a_client_who_accepted_the_delivery_can_still_release(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)
    await move(client, gig, gig.client, "completed")

    response = await _release(client, gig.escrow_id, gig.client.headers)

    assert response.status_code == 200, response.text
    assert await _state(db, gig.escrow_id) == ("released", "completed", 1)


async def test_concurrent_releases_pay_exactly_once(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)

    responses = await asyncio.gather(
        *(_release(client, gig.escrow_id, gig.client.headers) for _ in range(6))
    )

    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409, 409]
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 409}
    assert codes == {"ESCROW_SETTLED"}
    assert await _state(db, gig.escrow_id) == ("released", "completed", 1)
    assert len(await outbox_events(db, event_type="escrow.released", key=gig.project_id)) == 1


async def test_the_database_refuses_a_second_payout_even_without_the_status_check(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)
    assert (await _release(client, gig.escrow_id, gig.client.headers)).status_code == 200
    try:
        await db.execute(
            """INSERT INTO payouts (id, escrow_id, worker_id, amount_cents, fee_cents, currency)
               VALUES ($1, $2, $3, 1, 0, 'USD')""",
            uuid.uuid4(),
            gig.escrow_id,
            gig.worker.id,
        )
    except asyncpg.UniqueViolationError:
        pass
    else:
        raise AssertionError("a second payout for one escrow hold was accepted")


async def test_release_before_delivery_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    await move(client, gig, gig.worker, "in_progress")

    response = await _release(client, gig.escrow_id, gig.client.headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PROJECT_NOT_DELIVERED"
    assert response.json()["error"]["details"] == {"projectStatus": "in_progress"}
    assert await _state(db, gig.escrow_id) == ("funded", "in_progress", 0)


async def test_an_unfunded_hold_cannot_be_released(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)

    response = await _release(client, gig.escrow_id, gig.client.headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ESCROW_NOT_FUNDED"
    assert await _state(db, gig.escrow_id) == ("unfunded", "awarded", 0)


async def test_release_while_a_dispute_is_open_is_a_409(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)
    opened = await client.post(
        "/api/disputes",
        json={"projectId": str(gig.project_id), "reason": "The delivery is incomplete."},
        headers=gig.worker.headers,
    )
    assert opened.status_code == 201, opened.text

    response = await _release(client, gig.escrow_id, gig.client.headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ESCROW_FROZEN"
    assert await _state(db, gig.escrow_id) == ("frozen", "disputed", 0)


async def test_only_the_client_may_release(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)
    stranger = await register(client, role="client")
    admin = await make_admin(app, client)

    for account in (gig.worker, admin):  # they may see the hold, not release it
        response = await _release(client, gig.escrow_id, account.headers)
        assert response.status_code == 403, (account.role, response.text)
    hidden = await _release(client, gig.escrow_id, stranger.headers)
    unknown = await _release(client, uuid.uuid4(), stranger.headers)
    assert hidden.status_code == unknown.status_code == 404, hidden.text
    assert hidden.json()["error"] == unknown.json()["error"]
    assert (await client.post(f"/api/escrow/{gig.escrow_id}/release")).status_code == 401
    assert await _state(db, gig.escrow_id) == ("funded", "delivered", 0)


async def test_unknown_and_malformed_hold_ids(client: httpx.AsyncClient) -> None:
    someone = await register(client, role="client")
    unknown = await _release(client, uuid.uuid4(), someone.headers)
    assert unknown.status_code == 404
    malformed = await client.post("/api/escrow/12345/release", headers=someone.headers)
    assert malformed.status_code == 422
    assert (
        await client.get(f"/api/escrow/{uuid.uuid4()}", headers=someone.headers)
    ).status_code == 404
    assert (await client.get("/api/escrow/nope", headers=someone.headers)).status_code == 422


async def test_participants_and_admins_read_the_hold_others_may_not(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, amount_cents=2_000)
    admin = await make_admin(app, client)
    for account in (gig.client, gig.worker, admin):
        response = await client.get(f"/api/escrow/{gig.escrow_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert (data["status"], data["paymentStatus"], data["payout"]) == (
            "funded",
            "succeeded",
            None,
        )
        assert (data["amountCents"], data["feeCents"], data["netCents"]) == (2_000, 200, 1_800)
    stranger = await register(client, role="worker")
    response = await client.get(f"/api/escrow/{gig.escrow_id}", headers=stranger.headers)
    # The answer for a hold that does not exist: the id is not confirmed.
    assert response.status_code == 404
