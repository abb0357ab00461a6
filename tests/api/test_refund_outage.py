"""A Stripe that hangs during a refund stalls only the request that refunds.

The API is funded against the shared localstripe, then its gateway is pointed at a listener that
accepts connections and never reads them (what a stopped Stripe looks like to a client). Unlike
stopping localstripe itself, nothing the hung requests sent is ever acted on later: localstripe
ignores idempotency keys, so requests it picked up after a resume would refund again and hide
whether the API did. While the refund waits, no pooled connection or transaction is held and
other endpoints answer; the request ends in a 503 with Retry-After and leaves the refund pinned;
with Stripe back, repeating the request makes exactly one refund.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import stripe
from fastapi import FastAPI

from api.escrow.refunds import retry_pending_refunds
from bridges.stripe import StripeGateway
from infrastructure.settings import Settings
from tests.api.conftest import api_of_its_own, client_from, outbox_events, unique_ip
from tests.api.gigs import Gig, book_gig, create_intent, funded_gig, make_admin, move
from tests.api.stripe_support import (
    OUTAGE_RETRY_AFTER,
    confirm_card,
    connections_in_use,
    outage_settings,
    refunds_at_stripe,
    send_webhook,
    stripe_event,
)
from tests.conftest import wait_until

RETRY_AFTER = OUTAGE_RETRY_AFTER


@dataclass(frozen=True)
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    stripe: StripeGateway  # the working gateway, to the shared localstripe
    hanging: StripeGateway  # one to a Stripe that never answers


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A server that accepts connections (the kernel does, into the backlog) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.fixture
async def api(settings: Settings, silent_listener: str) -> AsyncIterator[Api]:
    # Short timeouts keep the test quick; the checks below run while the refund still waits.
    own = outage_settings(settings)
    hanging = StripeGateway.from_settings(
        own.model_copy(update={"stripe_api_base": silent_listener})
    )
    try:
        async with api_of_its_own(own) as app, client_from(app, ip=unique_ip()) as http:
            yield Api(app, http, app.state.stripe_gateway, hanging)
    finally:
        await hanging.aclose()


def _connections_in_use(api: Api) -> int:
    return connections_in_use(api.app)


async def _claim(db: asyncpg.Connection, gig: Gig) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM refund_claims WHERE escrow_id = $1", gig.escrow_id
    )
    return record


async def _hold_status(db: asyncpg.Connection, gig: Gig) -> str:
    status: str = await db.fetchval("SELECT status FROM escrow_holds WHERE id = $1", gig.escrow_id)
    return status


async def _stalls_only_itself(
    api: Api, db: asyncpg.Connection, gig: Gig, request: asyncio.Task[httpx.Response]
) -> httpx.Response:
    """While `request` waits on the hanging Stripe: no connection or transaction held, the board
    answers; then the request's own answer."""
    try:
        # The claim is committed just before the Stripe call: from here on the request is at
        # Stripe, and the pool must have every connection back.
        async def pinned() -> bool:
            return await _hold_status(db, gig) == "refunding"

        await wait_until(pinned, timeout=10, what="the pinned refund")
        await wait_until(lambda: _connections_in_use(api) == 0, timeout=5, what="an idle pool")
        async with asyncio.timeout(10):
            board = await asyncio.gather(*(api.http.get("/api/projects") for _ in range(8)))
        view = await api.http.get(f"/api/escrow/{gig.escrow_id}", headers=gig.client.headers)
        waiting = not request.done()
        in_use = _connections_in_use(api)
        open_transactions = await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND state LIKE 'idle in transaction%'"""
        )
    finally:
        async with asyncio.timeout(api.hanging.deadline_seconds + 10):
            response = await request
    assert [r.status_code for r in board] == [200] * len(board)
    assert view.status_code == 200 and view.json()["data"]["status"] == "refunding"
    assert waiting, "the other requests answered only after the refund gave up"
    assert (in_use, open_transactions) == (0, 0)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.json()["error"]["code"] == "PAYMENT_PROVIDER_UNAVAILABLE"
    return response


async def _intent_of(db: asyncpg.Connection, gig: Gig) -> str:
    intent: str = await db.fetchval(
        "SELECT stripe_payment_intent_id FROM payments WHERE escrow_id = $1", gig.escrow_id
    )
    return intent


async def test_a_dispute_refund_waits_on_stripe_holding_nothing_and_the_retry_refunds_once(
    api: Api, stripe_api: stripe.StripeClient, webhook_secret: str, db: asyncpg.Connection
) -> None:
    gig = await funded_gig(api.http, stripe_api, secret=webhook_secret, amount_cents=10_000)
    opened = await api.http.post(
        "/api/disputes",
        json={"projectId": str(gig.project_id), "reason": "The work was never delivered."},
        headers=gig.client.headers,
    )
    assert opened.status_code == 201, opened.text
    dispute_id = opened.json()["data"]["id"]
    admin = await make_admin(api.app, api.http)
    split = {"resolution": "split", "workerAmountCents": 4_000, "clientAmountCents": 6_000}

    def resolve(body: dict[str, object]) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(
            api.http.post(f"/api/disputes/{dispute_id}/resolve", json=body, headers=admin.headers)
        )

    api.app.state.stripe_gateway = api.hanging
    await _stalls_only_itself(api, db, gig, resolve(split))

    # Pinned: the decision and its key are kept, nothing is settled or announced yet.
    claim = await _claim(db, gig)
    assert claim is not None
    assert (claim["status"], claim["amount_cents"], claim["idempotency_key"]) == (
        "pending",
        6_000,
        f"refund-{gig.escrow_id}",
    )
    assert await _hold_status(db, gig) == "refunding"
    dispute = await db.fetchrow("SELECT status FROM disputes WHERE id = $1", claim["dispute_id"])
    assert dispute["status"] == "open"
    assert (
        await db.fetchval("SELECT count(*) FROM refunds WHERE escrow_id = $1", gig.escrow_id) == 0
    )
    assert await outbox_events(db, event_type="dispute.resolved", key=gig.project_id) == []
    # Another decision cannot slip in while the refund is under way.
    other = await resolve({"resolution": "release"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "REFUND_IN_PROGRESS"

    api.app.state.stripe_gateway = api.stripe
    again = await resolve(split)
    assert again.status_code == 200, again.text
    assert (again.json()["data"]["status"], again.json()["data"]["escrowStatus"]) == (
        "resolved",
        "split",
    )
    assert await refunds_at_stripe(stripe_api, await _intent_of(db, gig)) == [6_000]
    rows = await db.fetch(
        "SELECT amount_cents, reason FROM refunds WHERE escrow_id = $1", gig.escrow_id
    )
    assert [tuple(r) for r in rows] == [(6_000, "dispute")]
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert (refunded["data"]["amount_cents"], refunded["data"]["dispute_id"]) == (6_000, dispute_id)
    (released,) = await outbox_events(db, event_type="escrow.released", key=gig.project_id)
    assert released["data"]["amount_cents"] == 4_000
    (resolved,) = await outbox_events(db, event_type="dispute.resolved", key=gig.project_id)
    assert resolved["data"]["project_status"] == "completed"
    # A third call finds it resolved; no money moves again.
    third = await resolve(split)
    assert third.json()["error"]["code"] == "DISPUTE_RESOLVED"
    assert await refunds_at_stripe(stripe_api, await _intent_of(db, gig)) == [6_000]


async def test_a_funded_cancellation_waits_on_stripe_holding_nothing_and_the_retry_refunds_once(
    api: Api, stripe_api: stripe.StripeClient, webhook_secret: str, db: asyncpg.Connection
) -> None:
    gig = await funded_gig(api.http, stripe_api, secret=webhook_secret, amount_cents=2_500)
    await move(api.http, gig, gig.worker, "in_progress")

    def cancel() -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(
            api.http.put(
                f"/api/projects/{gig.project_id}/status",
                json={"status": "cancelled"},
                headers=gig.client.headers,
            )
        )

    api.app.state.stripe_gateway = api.hanging
    await _stalls_only_itself(api, db, gig, cancel())

    claim = await _claim(db, gig)
    assert claim is not None
    assert (claim["status"], claim["purpose"], claim["amount_cents"]) == (
        "pending",
        "cancel_project",
        2_500,
    )
    project = await db.fetchval("SELECT status FROM projects WHERE id = $1", gig.project_id)
    assert project == "in_progress"  # never cancelled with its money still held
    # The worker cannot deliver work the client is cancelling.
    deliver = await api.http.put(
        f"/api/projects/{gig.project_id}/status",
        json={"status": "delivered"},
        headers=gig.worker.headers,
    )
    assert deliver.status_code == 409
    assert deliver.json()["error"]["code"] == "REFUND_IN_PROGRESS"
    assert await outbox_events(db, event_type="escrow.refunded", key=gig.project_id) == []

    api.app.state.stripe_gateway = api.stripe
    again = await cancel()
    assert again.status_code == 200, again.text
    assert again.json()["data"]["status"] == "cancelled"
    assert await _hold_status(db, gig) == "refunded"
    assert await refunds_at_stripe(stripe_api, await _intent_of(db, gig)) == [2_500]
    rows = await db.fetch(
        "SELECT amount_cents, reason, created_by FROM refunds WHERE escrow_id = $1", gig.escrow_id
    )
    assert [tuple(r) for r in rows] == [(2_500, "cancellation", gig.client.id)]
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert refunded["data"]["reason"] == "cancellation"
    changed = await outbox_events(db, event_type="project.status_changed", key=gig.project_id)
    assert [(e["data"]["from_status"], e["data"]["to_status"]) for e in changed][-1] == (
        "in_progress",
        "cancelled",
    )
    assert sum(e["data"]["to_status"] == "cancelled" for e in changed) == 1


async def test_the_webhook_refund_of_a_cancelled_project_is_finished_by_the_redelivery(
    api: Api, stripe_api: stripe.StripeClient, webhook_secret: str, db: asyncpg.Connection
) -> None:
    gig = await book_gig(api.http, amount_cents=1_005)
    intent = await create_intent(api.http, gig)
    paid = await confirm_card(stripe_api, intent["paymentIntentId"])
    await move(api.http, gig, gig.client, "cancelled")
    event = stripe_event("payment_intent.succeeded", paid)

    api.app.state.stripe_gateway = api.hanging
    delivery = asyncio.create_task(send_webhook(api.http, event, secret=webhook_secret))
    first = await _stalls_only_itself(api, db, gig, delivery)
    assert first.status_code == 503  # so Stripe delivers the event again

    # The payment and its funding are recorded; the refund is pinned, not made.
    claim = await _claim(db, gig)
    assert claim is not None
    assert (claim["status"], claim["purpose"], claim["actor_id"]) == (
        "pending",
        "cancelled_payment",
        None,
    )
    assert len(await outbox_events(db, event_type="escrow.funded", key=gig.project_id)) == 1
    assert await outbox_events(db, event_type="escrow.refunded", key=gig.project_id) == []

    api.app.state.stripe_gateway = api.stripe
    again = await send_webhook(api.http, event, secret=webhook_secret)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["outcome"] == "duplicate"
    assert await _hold_status(db, gig) == "refunded"
    assert await refunds_at_stripe(stripe_api, intent["paymentIntentId"]) == [1_005]
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert (refunded["data"]["amount_cents"], refunded["data"]["reason"]) == (1_005, "cancellation")
    assert len(await outbox_events(db, event_type="escrow.funded", key=gig.project_id)) == 1


async def test_retry_pending_refunds_finishes_what_an_outage_left(
    api: Api, stripe_api: stripe.StripeClient, webhook_secret: str, db: asyncpg.Connection
) -> None:
    gig = await funded_gig(api.http, stripe_api, secret=webhook_secret, amount_cents=3_000)
    await move(api.http, gig, gig.worker, "in_progress")

    api.app.state.stripe_gateway = api.hanging
    cancel = asyncio.create_task(
        api.http.put(
            f"/api/projects/{gig.project_id}/status",
            json={"status": "cancelled"},
            headers=gig.client.headers,
        )
    )
    await _stalls_only_itself(api, db, gig, cancel)
    api.app.state.stripe_gateway = api.stripe

    pool: asyncpg.Pool = api.app.state.tulifo.pool
    # Other tests' claims may be pending too: the limit reaches this one whatever they are.
    await retry_pending_refunds(pool=pool, stripe=api.stripe, limit=10_000)

    assert await _hold_status(db, gig) == "refunded"
    assert await db.fetchval("SELECT status FROM projects WHERE id = $1", gig.project_id) == (
        "cancelled"
    )
    assert await refunds_at_stripe(stripe_api, await _intent_of(db, gig)) == [3_000]
    (refunded,) = await outbox_events(db, event_type="escrow.refunded", key=gig.project_id)
    assert refunded["data"]["reason"] == "cancellation"
