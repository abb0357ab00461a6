"""/api/disputes: a participant freezes the hold; only an admin resolves it, to the cent."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import stripe
from fastapi import FastAPI

from tests.api.conftest import Account, error_fields, outbox_events, register
from tests.api.gigs import Gig, book_gig, funded_gig, make_admin, pay
from tests.api.stripe_support import refunds_at_stripe

REASON = "The delivered work does not match the brief."


async def _open(client: httpx.AsyncClient, gig: Gig, who: Account, **body: Any) -> httpx.Response:
    payload = {"projectId": str(gig.project_id), "reason": REASON, **body}
    return await client.post("/api/disputes", json=payload, headers=who.headers)


async def _opened(client: httpx.AsyncClient, gig: Gig, who: Account) -> str:
    response = await _open(client, gig, who)
    assert response.status_code == 201, response.text
    dispute_id: str = response.json()["data"]["id"]
    return dispute_id


async def _resolve(
    client: httpx.AsyncClient, dispute_id: str, who: Account, **body: Any
) -> httpx.Response:
    return await client.post(f"/api/disputes/{dispute_id}/resolve", json=body, headers=who.headers)


async def _state(db: asyncpg.Connection, gig: Gig) -> tuple[str, str]:
    row = await db.fetchrow(
        """SELECT e.status, p.status AS project_status
             FROM escrow_holds e JOIN projects p ON p.id = e.project_id WHERE e.id = $1""",
        gig.escrow_id,
    )
    return row["status"], row["project_status"]


async def _intent_id(db: asyncpg.Connection, gig: Gig) -> str:
    intent_id: str = await db.fetchval(
        "SELECT stripe_payment_intent_id FROM payments WHERE escrow_id = $1", gig.escrow_id
    )
    return intent_id


@pytest.fixture
async def disputed(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> tuple[Gig, str]:
    """A funded, delivered gig of 1005 cents (fee 101) whose worker opened a dispute."""
    gig = await funded_gig(
        client, stripe_api, secret=webhook_secret, amount_cents=1005, delivered=True
    )
    return gig, await _opened(client, gig, gig.worker)


async def test_opening_a_dispute_freezes_the_hold_and_remembers_the_project_status(
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret, delivered=True)
    evidence = [
        {"description": "The brief", "url": "https://example.com/brief.pdf"},
        {"description": "  Chat log  "},
    ]

    response = await _open(client, gig, gig.client, evidence=evidence)

    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["status"] == "open"
    assert data["previousProjectStatus"] == "delivered"
    assert data["escrowStatus"] == "frozen"
    assert data["openedBy"] == str(gig.client.id)
    assert data["evidence"] == [
        {"description": "The brief", "url": "https://example.com/brief.pdf"},
        {"description": "Chat log", "url": None},
    ]
    assert await _state(db, gig) == ("frozen", "disputed")
    (opened,) = await outbox_events(db, event_type="dispute.opened", key=gig.project_id)
    assert opened["data"]["dispute_id"] == data["id"]
    assert opened["data"]["evidence_count"] == 2
    assert (opened["data"]["amount_cents"], opened["data"]["currency"]) == (10_000, "USD")


async def test_one_open_dispute_per_project(
    client: httpx.AsyncClient, disputed: tuple[Gig, str], db: asyncpg.Connection
) -> None:
    gig, _ = disputed
    again = await _open(client, gig, gig.client)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "DISPUTE_OPEN"
    count = await db.fetchval("SELECT count(*) FROM disputes WHERE project_id = $1", gig.project_id)
    assert count == 1


async def test_an_unfunded_project_cannot_be_disputed(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await book_gig(client)
    response = await _open(client, gig, gig.client)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ESCROW_NOT_FUNDED"
    assert await _state(db, gig) == ("unfunded", "awarded")


async def test_only_participants_open_disputes_and_bad_input_is_a_422(
    app: FastAPI,
    client: httpx.AsyncClient,
    stripe_api: stripe.StripeClient,
    webhook_secret: str,
    db: asyncpg.Connection,
) -> None:
    gig = await funded_gig(client, stripe_api, secret=webhook_secret)
    stranger = await register(client, role="client")
    admin = await make_admin(app, client)
    # A stranger learns nothing (404, as for no such project); an admin sees it but is no party.
    assert (await _open(client, gig, stranger)).status_code == 404
    assert (await _open(client, gig, admin)).status_code == 403

    cases: list[tuple[dict[str, Any], str]] = [
        ({"reason": "too short"}, "reason"),
        ({"reason": "x" * 5001}, "reason"),
        ({"evidence": [{"description": "d"}] * 21}, "evidence"),
        ({"evidence": [{"description": "d", "url": "not a url"}]}, "evidence.0.url"),
        ({"evidence": [{"description": ""}]}, "evidence.0.description"),
        ({"projectId": "nope"}, "projectId"),
        ({"amountCents": 5}, "amountCents"),
    ]
    for body, field in cases:
        response = await _open(client, gig, gig.client, **body)
        assert response.status_code == 422, (body, response.text)
        assert error_fields(response) == [field]
    unknown = await client.post(
        "/api/disputes",
        json={"projectId": str(uuid.uuid4()), "reason": REASON},
        headers=gig.client.headers,
    )
    assert unknown.status_code == 404
    assert await _state(db, gig) == ("funded", "awarded")
    assert (
        await db.fetchval("SELECT count(*) FROM disputes WHERE project_id = $1", gig.project_id)
        == 0
    )


async def test_only_admins_resolve(
    client: httpx.AsyncClient, disputed: tuple[Gig, str], db: asyncpg.Connection
) -> None:
    gig, dispute_id = disputed
    for account in (gig.client, gig.worker):
        response = await _resolve(client, dispute_id, account, resolution="release")
        assert response.status_code == 403
    assert await _state(db, gig) == ("frozen", "disputed")


async def test_participants_and_admins_read_a_dispute(
    app: FastAPI, client: httpx.AsyncClient, disputed: tuple[Gig, str]
) -> None:
    gig, dispute_id = disputed
    admin = await make_admin(app, client)
    for account in (gig.client, gig.worker, admin):
        response = await client.get(f"/api/disputes/{dispute_id}", headers=account.headers)
        assert response.status_code == 200
        assert response.json()["data"]["reason"] == REASON
    stranger = await register(client, role="worker")
    hidden = await client.get(f"/api/disputes/{dispute_id}", headers=stranger.headers)
    unknown = await client.get(f"/api/disputes/{uuid.uuid4()}", headers=stranger.headers)
    # One answer for "not yours" and "no such dispute": ids are not confirmed to outsiders.
    assert (hidden.status_code, hidden.json()["error"]) == (
        unknown.status_code,
        unknown.json()["error"],
    )
    assert hidden.status_code == 404
    assert (await client.get("/api/disputes/x", headers=admin.headers)).status_code == 422


async def test_release_pays_the_worker_the_net_and_completes_the_project(
    app: FastAPI,
    client: httpx.AsyncClient,
    disputed: tuple[Gig, str],
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
) -> None:
    gig, dispute_id = disputed
    admin = await make_admin(app, client)

    response = await _resolve(client, dispute_id, admin, resolution="release", note="Delivered.")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["status"], data["resolution"], data["escrowStatus"]) == (
        "resolved",
        "release",
        "released",
    )
    assert (data["workerAmountCents"], data["clientAmountCents"], data["feeCents"]) == (
        1005,
        0,
        101,
    )
    assert data["resolvedBy"] == str(admin.id)
    assert await _state(db, gig) == ("released", "completed")
    payout = await db.fetchrow("SELECT * FROM payouts WHERE escrow_id = $1", gig.escrow_id)
    assert (payout["amount_cents"], payout["fee_cents"]) == (904, 101)
    assert str(payout["dispute_id"]) == dispute_id
    assert await refunds_at_stripe(stripe_api, await _intent_id(db, gig)) == []
    (resolved,) = await outbox_events(db, event_type="dispute.resolved", key=gig.project_id)
    assert resolved["data"]["resolution"] == "release"
    (released,) = await outbox_events(db, event_type="escrow.released", key=gig.project_id)
    assert released["data"]["dispute_id"] == dispute_id
    assert await outbox_events(db, event_type="escrow.refunded", key=gig.project_id) == []


async def test_refund_gives_the_client_everything_back_and_cancels_the_project(
    app: FastAPI,
    client: httpx.AsyncClient,
    disputed: tuple[Gig, str],
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
) -> None:
    gig, dispute_id = disputed
    admin = await make_admin(app, client)

    response = await _resolve(client, dispute_id, admin, resolution="refund")

    assert response.status_code == 200, response.text
    assert await _state(db, gig) == ("refunded", "cancelled")
    assert await refunds_at_stripe(stripe_api, await _intent_id(db, gig)) == [1005]
    assert (
        await db.fetchval("SELECT count(*) FROM payouts WHERE escrow_id = $1", gig.escrow_id) == 0
    )
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert (refunded["data"]["amount_cents"], refunded["data"]["reason"]) == (1005, "dispute")
    assert await outbox_events(db, event_type="escrow.released", key=gig.project_id) == []


@pytest.mark.parametrize(
    ("worker_part", "client_part", "fee", "net"),
    [
        (5, 1000, 1, 4),  # 0.5 cent of fee rounds half up
        (1, 1004, 0, 1),  # 0.1 cent rounds down: no fee
        (605, 400, 61, 544),  # 60.5 rounds up
        (1004, 1, 100, 904),
    ],
)
async def test_split_refunds_the_client_part_and_takes_the_fee_on_the_worker_part_only(
    app: FastAPI,
    client: httpx.AsyncClient,
    disputed: tuple[Gig, str],
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
    worker_part: int,
    client_part: int,
    fee: int,
    net: int,
) -> None:
    gig, dispute_id = disputed
    admin = await make_admin(app, client)

    response = await _resolve(
        client,
        dispute_id,
        admin,
        resolution="split",
        workerAmountCents=worker_part,
        clientAmountCents=client_part,
    )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["feeCents"] == fee
    assert await _state(db, gig) == ("split", "completed")
    payout = await db.fetchrow("SELECT * FROM payouts WHERE escrow_id = $1", gig.escrow_id)
    assert (payout["amount_cents"], payout["fee_cents"]) == (net, fee)
    assert await refunds_at_stripe(stripe_api, await _intent_id(db, gig)) == [client_part]
    (released,) = await outbox_events(db, event_type="escrow.released", key=gig.project_id)
    assert (
        released["data"]["amount_cents"],
        released["data"]["fee_cents"],
        released["data"]["net_cents"],
    ) == (worker_part, fee, net)
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert refunded["data"]["amount_cents"] == client_part
    # Everything held is accounted for, to the cent.
    assert released["data"]["amount_cents"] + refunded["data"]["amount_cents"] == 1005


async def test_a_split_that_does_not_add_up_is_a_422_and_settles_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    disputed: tuple[Gig, str],
    stripe_api: stripe.StripeClient,
    db: asyncpg.Connection,
) -> None:
    gig, dispute_id = disputed
    admin = await make_admin(app, client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"resolution": "split", "workerAmountCents": 600, "clientAmountCents": 404}, "SPLIT"),
        ({"resolution": "split", "workerAmountCents": 600, "clientAmountCents": 406}, "SPLIT"),
        ({"resolution": "split", "workerAmountCents": 1005}, "clientAmountCents"),
        ({"resolution": "split", "workerAmountCents": 0, "clientAmountCents": 1005}, "ZERO"),
        ({"resolution": "split", "workerAmountCents": -5, "clientAmountCents": 1010}, "NEG"),
        (
            {
                "resolution": "split",
                "workerAmountCents": 10**15,
                "clientAmountCents": 1,
            },
            "ABSURD",
        ),
        ({"resolution": "release", "workerAmountCents": 1005}, "workerAmountCents"),
        ({"resolution": "give-it-all-to-me"}, "resolution"),
        ({"resolution": "split", "workerAmountCents": 10.5, "clientAmountCents": 994.5}, "F"),
        ({"resolution": "split", "workerAmountCents": "5", "clientAmountCents": 1000}, "STR"),
    ]
    for body, what in cases:
        response = await _resolve(client, dispute_id, admin, **body)
        assert response.status_code == 422, (what, response.text)
        assert response.json()["error"]["details"], what
    mismatch = await _resolve(
        client,
        dispute_id,
        admin,
        resolution="split",
        workerAmountCents=600,
        clientAmountCents=404,
    )
    assert mismatch.json()["error"]["code"] == "SPLIT_MISMATCH"

    assert await _state(db, gig) == ("frozen", "disputed")
    assert (
        await db.fetchval("SELECT status FROM disputes WHERE id = $1", uuid.UUID(dispute_id))
        == "open"
    )
    assert await refunds_at_stripe(stripe_api, await _intent_id(db, gig)) == []
    assert await outbox_events(db, event_type="dispute.resolved", key=gig.project_id) == []


async def test_a_dispute_is_resolved_once(
    app: FastAPI, client: httpx.AsyncClient, disputed: tuple[Gig, str], db: asyncpg.Connection
) -> None:
    _, dispute_id = disputed
    admin = await make_admin(app, client)
    assert (await _resolve(client, dispute_id, admin, resolution="release")).status_code == 200

    again = await _resolve(client, dispute_id, admin, resolution="refund")

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "DISPUTE_RESOLVED"
    unknown = await _resolve(client, str(uuid.uuid4()), admin, resolution="refund")
    assert unknown.status_code == 404


async def test_a_dispute_that_names_no_project_must_mean_exactly_one(
    client: httpx.AsyncClient, stripe_api: stripe.StripeClient, webhook_secret: str
) -> None:
    """The seed's `{reason, evidence}` names no project: it is the caller's one gig with money
    held, and with none or two of them, projectId is required rather than guessed."""
    first = await funded_gig(client, stripe_api, secret=webhook_secret)
    second = await book_gig(client, owner=first.client)
    await pay(client, stripe_api, second, secret=webhook_secret)
    body = {"reason": REASON}
    for account, why in (
        (first.client, "several projects"),
        (await register(client, role="client"), "no project"),
    ):
        response = await client.post("/api/disputes", json=body, headers=account.headers)
        assert response.status_code == 422, response.text
        assert error_fields(response) == ["projectId"]
        assert why in response.json()["error"]["message"]
    # The worker of the first gig has just that one: it is the one meant.
    meant = await client.post("/api/disputes", json=body, headers=first.worker.headers)
    assert meant.status_code == 201, meant.text
    assert meant.json()["data"]["projectId"] == str(first.project_id)
