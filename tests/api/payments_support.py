"""Money test support: localstripe, a gig booked through the HTTP API, and paying for it the way
a browser (Stripe.js, played by the stripe library against localstripe) and Stripe's webhook
would. Webhooks are signed with the stripe library's own helper."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import stripe
from fastapi import FastAPI

from api.auth.admin import create_admin
from infrastructure.processes import ManagedProcess, free_port, wait_for_port
from tests.api.conftest import PASSWORD, Account, login, register, unique_email

LOCALSTRIPE = Path(sys.executable).parent / "localstripe"
WEBHOOK = "/api/payments/webhook"


@contextmanager
def start_localstripe(log_dir: Path) -> Iterator[str]:
    port = free_port()
    # --from-scratch: never load the store another run left in /tmp/localstripe.pickle.
    proc = ManagedProcess.spawn(
        "localstripe",
        [str(LOCALSTRIPE), "--port", str(port), "--from-scratch"],
        log_path=log_dir / "localstripe.log",
    )
    try:
        wait_for_port("127.0.0.1", port, deadline_s=30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@asynccontextmanager
async def stripe_client(api_base: str) -> AsyncIterator[stripe.StripeClient]:
    """The stripe library speaking to localstripe, as a browser's Stripe.js or the Stripe
    dashboard would act on payments (confirming, refunding outside our API)."""
    http = stripe.HTTPXClient()
    try:
        yield stripe.StripeClient(
            "sk_test_tulifo_tests",
            base_addresses={"api": api_base},
            http_client=http,
            max_network_retries=0,
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Gig:
    client: Account
    worker: Account
    project_id: uuid.UUID
    booking_id: uuid.UUID
    escrow_id: uuid.UUID
    amount_cents: int
    currency: str


async def book_gig(
    http: httpx.AsyncClient,
    *,
    amount_cents: int = 10_000,
    currency: str = "USD",
    owner: Account | None = None,
) -> Gig:
    """A client's project (a new client unless `owner` is given), a new worker's bid on it,
    accepted and booked: the hold is unfunded."""
    owner = owner or await register(http, role="client", name="Cleo Client")
    worker = await register(http, role="worker", name="Wim Worker")
    project = await _created(
        http.post(
            "/api/projects",
            json={
                "title": "Build a payment flow",
                "description": "Escrow, Stripe, webhooks.",
                "budgetCents": amount_cents,
                "currency": currency,
            },
            headers=owner.headers,
        )
    )
    bid = await _created(
        http.post(
            f"/api/projects/{project['id']}/bids",
            json={"amountCents": amount_cents, "deliveryDays": 7, "proposal": "I can do it."},
            headers=worker.headers,
        )
    )
    accepted = await http.post(
        f"/api/projects/{project['id']}/bids/{bid['id']}/accept", headers=owner.headers
    )
    assert accepted.status_code == 200, accepted.text
    booking = await _created(
        http.post(
            "/api/bookings",
            json={
                "projectId": project["id"],
                "workerId": str(worker.id),
                "agreedAmountCents": amount_cents,
            },
            headers=owner.headers,
        )
    )
    return Gig(
        client=owner,
        worker=worker,
        project_id=uuid.UUID(project["id"]),
        booking_id=uuid.UUID(booking["id"]),
        escrow_id=uuid.UUID(booking["escrow"]["id"]),
        amount_cents=amount_cents,
        currency=currency,
    )


async def create_intent(http: httpx.AsyncClient, gig: Gig) -> dict[str, Any]:
    response = await http.post(
        "/api/payments/create-intent",
        json={"bookingId": str(gig.booking_id)},
        headers=gig.client.headers,
    )
    assert response.status_code in (200, 201), response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def confirm_card(
    sc: stripe.StripeClient, intent_id: str, *, card: str = "pm_card_visa"
) -> dict[str, Any]:
    """What Stripe.js does in the client's browser: attach a card and confirm. A declined card
    leaves the intent requiring another payment method. Returns the intent as Stripe has it."""
    await sc.v1.payment_intents.update_async(intent_id, params={"payment_method": card})
    with suppress(stripe.CardError):
        await sc.v1.payment_intents.confirm_async(intent_id)
    intent = await sc.v1.payment_intents.retrieve_async(intent_id)
    return intent.to_dict()


def stripe_event(
    event_type: str, obj: dict[str, Any], *, event_id: str | None = None
) -> dict[str, Any]:
    """An event as Stripe delivers it to a webhook endpoint."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }


def signed(payload: str, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


async def send_webhook(
    http: httpx.AsyncClient, event: dict[str, Any], *, secret: str
) -> httpx.Response:
    payload = json.dumps(event)
    return await http.post(WEBHOOK, content=payload, headers=signed(payload, secret))


async def pay(
    http: httpx.AsyncClient, sc: stripe.StripeClient, gig: Gig, *, secret: str
) -> dict[str, Any]:
    """Create the intent, confirm it with a good card, deliver Stripe's success webhook."""
    intent = await create_intent(http, gig)
    paid = await confirm_card(sc, intent["paymentIntentId"])
    assert paid["status"] == "succeeded"
    response = await send_webhook(
        http, stripe_event("payment_intent.succeeded", paid), secret=secret
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["outcome"] == "applied"
    return intent


async def funded_gig(
    http: httpx.AsyncClient,
    sc: stripe.StripeClient,
    *,
    secret: str,
    amount_cents: int = 10_000,
    currency: str = "USD",
    delivered: bool = False,
) -> Gig:
    gig = await book_gig(http, amount_cents=amount_cents, currency=currency)
    await pay(http, sc, gig, secret=secret)
    if delivered:
        await move(http, gig, gig.worker, "in_progress")
        await move(http, gig, gig.worker, "delivered")
    return gig


async def move(http: httpx.AsyncClient, gig: Gig, who: Account, status: str) -> None:
    """A project move through the projects API (start, deliver, accept, cancel)."""
    response = await http.put(
        f"/api/projects/{gig.project_id}/status", json={"status": status}, headers=who.headers
    )
    assert response.status_code == 200, response.text


async def make_admin(app: FastAPI, http: httpx.AsyncClient) -> Account:
    pool: asyncpg.Pool = app.state.tulifo.pool
    email = unique_email("admin")
    user_id = await create_admin(pool=pool, email=email, password=PASSWORD, name="Ada", rounds=4)
    data = (await login(http, email, PASSWORD)).json()["data"]
    return Account(
        id=user_id,
        email=email,
        password=PASSWORD,
        role="admin",
        access_token=data["accessToken"],
        refresh_token=data["refreshToken"],
    )


async def refunds_at_stripe(sc: stripe.StripeClient, intent_id: str) -> list[int]:
    """The amounts Stripe refunded on an intent, smallest first."""
    refunds = await sc.v1.refunds.list_async(params={"payment_intent": intent_id, "limit": 100})
    return sorted(r.amount for r in refunds.data)


async def _created(request: Any) -> dict[str, Any]:
    response: httpx.Response = await request
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data
