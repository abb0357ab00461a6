"""PUT /api/projects/{id}/status: each side makes only its own moves, in order, under a lock."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import stripe
from fastapi import FastAPI

from bridges.stripe import Refund, StripeFailure
from tests.api.conftest import Account, error_fields, outbox_events, register
from tests.api.gigs import (
    STATUSES,
    Gig,
    booked_gig,
    fund_escrow,
    funded_gig,
    gig_in_status,
    move,
    open_gig,
    project_status,
    put_status,
    row_counts,
)
from tests.api.stripe_support import refunds_at_stripe

# Every move this endpoint makes, and who makes it. Written out here, not read from
# api/projects/lifecycle.py, so a change to the rules has to change this test too.
LEGAL = {
    ("awarded", "in_progress"): "worker",
    ("in_progress", "delivered"): "worker",
    ("delivered", "in_progress"): "client",
    ("delivered", "completed"): "client",
    ("open", "cancelled"): "client",
    ("awarded", "cancelled"): "client",
    ("in_progress", "cancelled"): "client",
}


def _actor(gig: Gig, party: str) -> Account:
    return gig.owner if party == "client" else gig.worker


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("party", ["client", "worker"])
async def test_every_move_a_party_may_not_make_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, current: str, party: str
) -> None:
    gig = await gig_in_status(client, db, current)
    actor = _actor(gig, party)
    # Until a bid is accepted the worker is only a bidder, not a party: every move is a 403.
    worker_id = await db.fetchval("SELECT worker_id FROM projects WHERE id = $1", gig.project_id)
    outsider = party == "worker" and worker_id != gig.worker.id
    before = await row_counts(db)
    for target in STATUSES:
        owner = LEGAL.get((current, target))
        if owner == party and not outsider:
            continue
        response = await put_status(client, actor, gig.project_id, target)
        body = response.json()
        expected = 403 if owner is not None or outsider else 409
        assert response.status_code == expected, (current, target, party, body)
        if expected == 409:
            assert body["error"]["code"] == "ILLEGAL_TRANSITION"
            allowed = sorted(t for (f, t), p in LEGAL.items() if f == current and p == party)
            assert body["error"]["details"]["currentStatus"] == current
            assert sorted(body["error"]["details"]["allowed"]) == allowed
    assert await project_status(db, gig.project_id) == current
    assert await row_counts(db) == before


async def test_the_whole_happy_path_emits_one_event_per_move(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await booked_gig(client, amount_cents=120_000)
    await fund_escrow(db, gig.project_id)
    moves = [
        (gig.worker, "in_progress"),
        (gig.worker, "delivered"),
        (gig.owner, "in_progress"),  # changes requested
        (gig.worker, "delivered"),
        (gig.owner, "completed"),
    ]
    for account, status in moves:
        response = await put_status(client, account, gig.project_id, status)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == status

    changes = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert [(e["data"]["from_status"], e["data"]["to_status"]) for e in changes] == [
        ("awarded", "in_progress"),
        ("delivered", "in_progress"),
        ("delivered", "completed"),
    ]
    worker, owner = str(gig.worker.id), str(gig.owner.id)
    assert [e["actor_id"] for e in changes] == [worker, owner, owner]
    deliveries = await outbox_events(db, event_type="project.delivered", key=gig.project_id)
    assert len(deliveries) == 2
    assert gig.booking is not None
    assert deliveries[0]["data"] == {
        "project_id": str(gig.project_id),
        "client_id": str(gig.owner.id),
        "worker_id": str(gig.worker.id),
        "booking_id": gig.booking["id"],
        "agreed_amount_cents": 120_000,
        "currency": "USD",
    }


async def test_work_starts_only_once_booked_and_funded(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    accepted = await client.post(
        f"{gig.url}/bids/{gig.bid['id']}/accept", headers=gig.owner.headers
    )
    assert accepted.status_code == 200
    not_booked = await put_status(client, gig.worker, gig.project_id, "in_progress")
    assert not_booked.status_code == 409
    assert not_booked.json()["error"]["code"] == "NOT_BOOKED"

    booked = await client.post(
        "/api/bookings",
        json={
            "projectId": str(gig.project_id),
            "workerId": str(gig.worker.id),
            "agreedAmountCents": gig.bid["amountCents"],
        },
        headers=gig.owner.headers,
    )
    assert booked.status_code == 201
    unfunded = await put_status(client, gig.worker, gig.project_id, "in_progress")
    assert unfunded.status_code == 409
    assert unfunded.json()["error"]["code"] == "ESCROW_NOT_FUNDED"
    assert unfunded.json()["error"]["details"]["escrowStatus"] == "unfunded"
    assert await project_status(db, gig.project_id) == "awarded"

    await fund_escrow(db, gig.project_id)
    started = await put_status(client, gig.worker, gig.project_id, "in_progress")
    assert started.status_code == 200


async def test_outsiders_cannot_move_a_project(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "in_progress")
    other_client = await register(client, role="client")
    other_worker = await register(client, role="worker")
    before = await row_counts(db)
    # The losing bidder may see the project but is not a party to it.
    rival = await put_status(client, gig.rival, gig.project_id, "delivered")
    assert rival.status_code == 403
    for stranger in (other_client, other_worker):
        response = await put_status(client, stranger, gig.project_id, "cancelled")
        assert response.status_code == 404
    assert (await put_status(client, None, gig.project_id, "cancelled")).status_code == 401
    assert await row_counts(db) == before


async def test_a_status_the_machine_does_not_know_is_a_422(client: httpx.AsyncClient) -> None:
    gig = await open_gig(client)
    response = await put_status(client, gig.owner, gig.project_id, "paused")
    assert response.status_code == 422
    assert error_fields(response) == ["status"]
    unknown = await put_status(client, gig.owner, str(uuid.uuid4()), "cancelled")
    assert unknown.status_code == 404


async def test_cancelling_an_open_project_rejects_its_pending_bids(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    response = await put_status(client, gig.owner, gig.project_id, "cancelled")
    assert response.status_code == 200
    statuses = await db.fetch("SELECT status FROM bids WHERE project_id = $1", gig.project_id)
    assert {row["status"] for row in statuses} == {"rejected"}
    (event,) = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert event["data"] == {
        "project_id": str(gig.project_id),
        "client_id": str(gig.owner.id),
        "worker_id": None,
        "from_status": "open",
        "to_status": "cancelled",
        "rejected_bid_ids": [gig.bid["id"], gig.rival_bid["id"]],
    }


async def test_cancelling_an_unfunded_booking_needs_no_refund(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "awarded")
    response = await put_status(client, gig.owner, gig.project_id, "cancelled")
    assert response.status_code == 200
    hold = await db.fetchval(
        "SELECT status FROM escrow_holds WHERE project_id = $1", gig.project_id
    )
    assert hold == "unfunded"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM refunds r JOIN escrow_holds e ON e.id = r.escrow_id "
            "WHERE e.project_id = $1",
            gig.project_id,
        )
        == 0
    )


async def test_cancelling_funded_work_refunds_it_with_the_cancellation(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    await move(client, gig, gig.worker, "in_progress")
    response = await put_status(client, gig.client, gig.project_id, "cancelled")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "cancelled"
    hold = await db.fetchrow(
        "SELECT status, refunded_at FROM escrow_holds WHERE id = $1", gig.escrow_id
    )
    assert hold["status"] == "refunded" and hold["refunded_at"] is not None
    refund = await db.fetchrow(
        "SELECT amount_cents, reason, created_by FROM refunds WHERE escrow_id = $1", gig.escrow_id
    )
    assert tuple(refund) == (gig.amount_cents, "cancellation", gig.client.id)
    events = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert (events[-1]["data"]["from_status"], events[-1]["data"]["to_status"]) == (
        "in_progress",
        "cancelled",
    )
    assert events[-1]["data"]["worker_id"] == str(gig.worker.id)
    # The refund is written before the move, as one change: a reader never sees the project
    # cancelled with its money still held.
    order = await db.fetch(
        """SELECT event_type FROM outbox
            WHERE key = $1 AND event_type IN ('escrow.refunded', 'project.status_changed')
            ORDER BY id""",
        str(gig.project_id),
    )
    assert [r["event_type"] for r in order][-2:] == ["escrow.refunded", "project.status_changed"]


async def test_a_refund_stripe_refuses_leaves_the_project_uncancelled(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    await move(client, gig, gig.worker, "in_progress")

    async def refused(**_: Any) -> Refund:
        # What the gateway makes of a 4xx from Stripe (a charge disputed at the bank, say).
        raise StripeFailure("Stripe could not refund", retryable=False, code="charge_disputed")

    monkeypatch.setattr(app.state.stripe_gateway, "refund", refused)
    intent_id = await db.fetchval(
        "SELECT stripe_payment_intent_id FROM payments WHERE escrow_id = $1", gig.escrow_id
    )
    before = await row_counts(db)

    response = await put_status(client, gig.client, gig.project_id, "cancelled")

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "REFUND_REFUSED"
    assert await project_status(db, gig.project_id) == "in_progress"
    hold = await db.fetchval("SELECT status FROM escrow_holds WHERE id = $1", gig.escrow_id)
    assert hold == "funded"
    assert await row_counts(db) == before
    claim = await db.fetchrow(
        "SELECT status, last_error FROM refund_claims WHERE escrow_id = $1", gig.escrow_id
    )
    assert (claim["status"], claim["last_error"]) == ("refused", "charge_disputed")

    # Stripe takes the refund now: the same request cancels, with a refund made under a new key
    # (Stripe would replay its refusal under the old one).
    monkeypatch.undo()
    again = await put_status(client, gig.client, gig.project_id, "cancelled")
    assert again.status_code == 200, again.text
    assert await project_status(db, gig.project_id) == "cancelled"
    assert await refunds_at_stripe(stripe_api, intent_id) == [gig.amount_cents]
    key = await db.fetchval(
        "SELECT idempotency_key FROM refund_claims WHERE escrow_id = $1", gig.escrow_id
    )
    assert key == f"refund-{gig.escrow_id}-2"


async def test_concurrent_moves_serialise_on_the_project_lock(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    await move(client, gig, gig.worker, "in_progress")
    deliver, cancel = await asyncio.gather(
        put_status(client, gig.worker, gig.project_id, "delivered"),
        put_status(client, gig.client, gig.project_id, "cancelled"),
    )
    codes = sorted([deliver.status_code, cancel.status_code])
    final = await project_status(db, gig.project_id)
    hold = await db.fetchval("SELECT status FROM escrow_holds WHERE id = $1", gig.escrow_id)
    # Whichever ran first won; the other saw its result. Never both.
    if deliver.status_code == 200:
        assert (codes, final, hold) == ([200, 409], "delivered", "funded")
    else:
        assert (codes, final, hold) == ([200, 409], "cancelled", "refunded")
