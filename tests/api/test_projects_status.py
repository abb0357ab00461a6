"""PUT /api/projects/{id}/status: each side makes only its own moves, in order, under a lock."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from api.errors import ServiceUnavailable
from tests.api.conftest import Account, error_fields, outbox_events, register
from tests.api.project_factories import (
    STATUSES,
    Gig,
    booked_gig,
    fund_escrow,
    gig_in_status,
    open_gig,
    project_status,
    put_status,
    row_counts,
)

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
    worker_id = await db.fetchval(
        "SELECT worker_id FROM projects WHERE id = $1", uuid.UUID(gig.project_id)
    )
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
        "project_id": gig.project_id,
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
            "projectId": gig.project_id,
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
    statuses = await db.fetch(
        "SELECT status FROM bids WHERE project_id = $1", uuid.UUID(gig.project_id)
    )
    assert {row["status"] for row in statuses} == {"rejected"}
    (event,) = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert event["data"] == {
        "project_id": gig.project_id,
        "client_id": str(gig.owner.id),
        "worker_id": None,
        "from_status": "open",
        "to_status": "cancelled",
        "rejected_bid_ids": [gig.bid["id"], gig.rival_bid["id"]],
    }


async def test_cancelling_an_unfunded_booking_needs_no_refund(
    client: httpx.AsyncClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_refunds(monkeypatch)
    gig = await gig_in_status(client, db, "awarded")
    response = await put_status(client, gig.owner, gig.project_id, "cancelled")
    assert response.status_code == 200
    assert calls == []
    hold = await db.fetchval(
        "SELECT status FROM escrow_holds WHERE project_id = $1", uuid.UUID(gig.project_id)
    )
    assert hold == "unfunded"


async def test_cancelling_funded_work_refunds_in_the_same_transaction(
    client: httpx.AsyncClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_refunds(monkeypatch)
    gig = await gig_in_status(client, db, "in_progress")
    response = await put_status(client, gig.owner, gig.project_id, "cancelled")
    assert response.status_code == 200, response.text
    # Called once, inside the cancelling transaction: it saw the project (locked) still in its
    # old status and the hold it was to refund.
    assert calls == [
        {
            "project_id": uuid.UUID(gig.project_id),
            "actor_id": gig.owner.id,
            "seen": ("in_progress", "funded"),
        }
    ]
    assert response.json()["data"]["status"] == "cancelled"
    events = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert events[-1]["data"]["to_status"] == "cancelled"
    assert events[-1]["data"]["worker_id"] == str(gig.worker.id)


async def test_a_failed_refund_leaves_the_project_uncancelled(
    client: httpx.AsyncClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_refund(conn: asyncpg.Connection, *, project_id: uuid.UUID, **_: Any) -> None:
        # Rolled back with the cancellation.
        await conn.execute(
            "UPDATE escrow_holds SET status = 'refunded' WHERE project_id = $1", project_id
        )
        raise ServiceUnavailable("Stripe is down")

    monkeypatch.setattr("api.escrow.service.refund_for_cancellation", failing_refund)
    gig = await gig_in_status(client, db, "in_progress")
    before = await row_counts(db)
    response = await put_status(client, gig.owner, gig.project_id, "cancelled")
    assert response.status_code == 503
    assert await project_status(db, gig.project_id) == "in_progress"
    hold = await db.fetchval(
        "SELECT status FROM escrow_holds WHERE project_id = $1", uuid.UUID(gig.project_id)
    )
    assert hold == "funded"
    assert await row_counts(db) == before


async def test_concurrent_moves_serialise_on_the_project_lock(
    client: httpx.AsyncClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_refunds(monkeypatch)
    gig = await gig_in_status(client, db, "in_progress")
    deliver, cancel = await asyncio.gather(
        put_status(client, gig.worker, gig.project_id, "delivered"),
        put_status(client, gig.owner, gig.project_id, "cancelled"),
    )
    codes = sorted([deliver.status_code, cancel.status_code])
    final = await project_status(db, gig.project_id)
    # Whichever ran first won; the other saw its result. Never both.
    if deliver.status_code == 200:
        assert (codes, final) == ([200, 409], "delivered")
    else:
        assert (codes, final) == ([200, 409], "cancelled")


def _record_refunds(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the escrow domain's refund with a recorder of what it was called with."""
    calls: list[dict[str, Any]] = []

    async def refund(
        conn: asyncpg.Connection, *, project_id: uuid.UUID, actor_id: uuid.UUID, **_: Any
    ) -> None:
        project = await conn.fetchval("SELECT status FROM projects WHERE id = $1", project_id)
        hold = await conn.fetchval(
            "SELECT status FROM escrow_holds WHERE project_id = $1", project_id
        )
        calls.append({"project_id": project_id, "actor_id": actor_id, "seen": (project, hold)})

    monkeypatch.setattr("api.escrow.service.refund_for_cancellation", refund)
    return calls
