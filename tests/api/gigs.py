"""The gig of the API tests: one `Gig`, and the factories that build it through the HTTP API a step
at a time, as its client and worker would:

    open_gig (a project with its bids) → awarded_gig → booked_gig / book_gig → funded_gig
    (paid at localstripe, confirmed by Stripe's webhook) → delivered → release; or cancelled.

`gig_in_status` reaches any project status without Stripe: there, and only there, funding and a
dispute (owned by the payments and disputes domains) are stood in for by SQL.

Two presets of the same steps: `open_gig`/`awarded_gig`/`booked_gig` post the projects domain's
project (a data pipeline, two bidders); `book_gig`/`funded_gig` post the payments domain's (a
payment flow whose budget, bid and booking are one amount, one bidder).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import stripe
from fastapi import FastAPI

from api.auth.admin import create_admin
from tests.api.conftest import PASSWORD, Account, bearer, login, register, unique_email
from tests.api.stripe_support import confirm_card, send_webhook, stripe_event

# Tables the gig lifecycle writes, and the outbox: `row_counts` before and after a refused
# request proves nothing was half-written.
GIG_TABLES = ("projects", "bids", "bookings", "escrow_holds", "reviews", "outbox")

STATUSES = ("open", "awarded", "in_progress", "delivered", "completed", "cancelled", "disputed")


@dataclass(eq=False)
class Gig:
    """A project with its people, as the API answered each step: the client who owns it, the
    worker whose bid is (or will be) accepted, and maybe a second bidder (`rival`) who loses (or
    is still pending while the project is open). `booking` is set once the gig is booked."""

    client: Account
    worker: Account
    project: dict[str, Any]
    bid: dict[str, Any]
    runner_up: tuple[Account, dict[str, Any]] | None = None
    booking: dict[str, Any] | None = None

    @property
    def owner(self) -> Account:
        return self.client

    @property
    def rival(self) -> Account:
        assert self.runner_up is not None, "this gig has a single bidder"
        return self.runner_up[0]

    @property
    def rival_bid(self) -> dict[str, Any]:
        assert self.runner_up is not None, "this gig has a single bidder"
        return self.runner_up[1]

    @property
    def project_id(self) -> uuid.UUID:
        return uuid.UUID(self.project["id"])

    @property
    def booking_id(self) -> uuid.UUID:
        assert self.booking is not None, "this gig has no booking"
        return uuid.UUID(self.booking["id"])

    @property
    def escrow_id(self) -> uuid.UUID:
        assert self.booking is not None, "this gig has no booking"
        return uuid.UUID(self.booking["escrow"]["id"])

    @property
    def amount_cents(self) -> int:
        """The accepted bid's amount: what the booking agrees and the client pays."""
        amount: int = self.bid["amountCents"]
        return amount

    @property
    def currency(self) -> str:
        currency: str = self.project["currency"]
        return currency

    @property
    def url(self) -> str:
        return f"/api/projects/{self.project_id}"


# --- request bodies -------------------------------------------------------------------------------


def project_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Build a data pipeline",
        "description": "Kafka in, PostgreSQL out.",
        "budgetCents": 150_000,
        "currency": "USD",
        "requiredSkills": ["Python", "Kafka"],
    }
    body.update(overrides)
    return body


def bid_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amountCents": 120_000,
        "deliveryDays": 14,
        "proposal": "Done this three times before.",
    }
    body.update(overrides)
    return body


# --- one request each -----------------------------------------------------------------------------


def data(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The envelope's `data` of a response that must have `status`."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["data"]
    return body


async def create_project(
    client: httpx.AsyncClient, owner: Account, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/projects", json=project_body(**overrides), headers=owner.headers
    )
    return data(response, 201)


async def submit_bid(
    client: httpx.AsyncClient, worker: Account, project_id: uuid.UUID | str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/projects/{project_id}/bids", json=bid_body(**overrides), headers=worker.headers
    )
    return data(response, 201)


async def accept_bid(
    client: httpx.AsyncClient, owner: Account, project_id: uuid.UUID | str, bid_id: str
) -> httpx.Response:
    return await client.post(
        f"/api/projects/{project_id}/bids/{bid_id}/accept", headers=owner.headers
    )


async def book(
    client: httpx.AsyncClient,
    owner: Account,
    project_id: uuid.UUID | str,
    worker_id: uuid.UUID,
    amount: int,
) -> httpx.Response:
    return await client.post(
        "/api/bookings",
        json={
            "projectId": str(project_id),
            "workerId": str(worker_id),
            "agreedAmountCents": amount,
        },
        headers=owner.headers,
    )


async def put_status(
    client: httpx.AsyncClient, account: Account | None, project_id: uuid.UUID | str, status: str
) -> httpx.Response:
    return await client.put(
        f"/api/projects/{project_id}/status",
        json={"status": status},
        headers=account.headers if account else {},
    )


async def create_intent(http: httpx.AsyncClient, gig: Gig) -> dict[str, Any]:
    response = await http.post(
        "/api/payments/create-intent",
        json={"bookingId": str(gig.booking_id)},
        headers=gig.client.headers,
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()["data"]
    return body


# --- the steps of a gig ---------------------------------------------------------------------------


async def open_gig(
    client: httpx.AsyncClient,
    *,
    amount_cents: int = 120_000,
    owner: Account | None = None,
    worker_name: str = "Wanda Worker",
    project: dict[str, Any] | None = None,
    bid: dict[str, Any] | None = None,
    rival: bool = True,
) -> Gig:
    """An open project (posted with the body `project`, `project_body()` unless given) with the
    worker's pending bid of `amount_cents` (`bid`: the bid body's overrides) and, with `rival`, a
    second bid of 110 000; a new client owns it unless `owner` is given."""
    owner = owner or await register(client, role="client", name="Cleo Client")
    worker = await register(client, role="worker", name=worker_name)
    second = await register(client, role="worker", name="Rex Rival") if rival else None
    posted = data(
        await client.post("/api/projects", json=project or project_body(), headers=owner.headers),
        201,
    )
    offer = await submit_bid(
        client, worker, posted["id"], **{"amountCents": amount_cents, **(bid or {})}
    )
    runner_up = None
    if second is not None:
        runner_up = (second, await submit_bid(client, second, posted["id"], amountCents=110_000))
    return Gig(owner, worker, posted, offer, runner_up)


async def award(client: httpx.AsyncClient, gig: Gig) -> Gig:
    """The client accepts the worker's bid."""
    response = await accept_bid(client, gig.client, gig.project_id, gig.bid["id"])
    assert response.status_code == 200, response.text
    return gig


async def book_worker(client: httpx.AsyncClient, gig: Gig) -> Gig:
    """The client books the awarded worker for the bid's amount: the escrow hold, unfunded."""
    response = await book(client, gig.client, gig.project_id, gig.worker.id, gig.amount_cents)
    gig.booking = data(response, 201)
    return gig


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


async def fund_escrow(db: asyncpg.Connection, project_id: uuid.UUID | str) -> None:
    """Stand-in for the payment webhook: the project's hold becomes funded."""
    updated = await db.execute(
        """UPDATE escrow_holds SET status = 'funded', funded_at = now(), updated_at = now()
            WHERE project_id = $1 AND status = 'unfunded'""",
        uuid.UUID(str(project_id)),
    )
    assert updated == "UPDATE 1", updated


async def move(http: httpx.AsyncClient, gig: Gig, who: Account, status: str) -> None:
    """A project move through the projects API (start, deliver, accept, cancel); the gig keeps
    the project as the API answered."""
    response = await put_status(http, who, gig.project_id, status)
    gig.project = data(response)


async def deliver(http: httpx.AsyncClient, gig: Gig) -> Gig:
    """The worker starts the funded gig and delivers it."""
    await move(http, gig, gig.worker, "in_progress")
    await move(http, gig, gig.worker, "delivered")
    return gig


async def release(http: httpx.AsyncClient, gig: Gig) -> dict[str, Any]:
    """The client releases the escrow to the worker; returns the escrow as answered."""
    response = await http.post(f"/api/escrow/{gig.escrow_id}/release", headers=gig.client.headers)
    return data(response)


# --- gigs at a given point ------------------------------------------------------------------------


async def awarded_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    return await award(client, await open_gig(client, amount_cents=amount_cents, owner=owner))


async def booked_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    """Awarded and booked: the escrow hold exists, unfunded."""
    return await book_worker(
        client, await awarded_gig(client, amount_cents=amount_cents, owner=owner)
    )


async def book_gig(
    http: httpx.AsyncClient,
    *,
    amount_cents: int = 10_000,
    currency: str = "USD",
    owner: Account | None = None,
) -> Gig:
    """The payments preset: a client's project (a new client unless `owner` is given) budgeted
    at `amount_cents`, a new worker's bid of that amount on it, accepted and booked: the hold is
    unfunded."""
    gig = await open_gig(
        http,
        amount_cents=amount_cents,
        owner=owner,
        worker_name="Wim Worker",
        rival=False,
        project={
            "title": "Build a payment flow",
            "description": "Escrow, Stripe, webhooks.",
            "budgetCents": amount_cents,
            "currency": currency,
        },
        bid={"deliveryDays": 7, "proposal": "I can do it."},
    )
    return await book_worker(http, await award(http, gig))


async def funded_gig(
    http: httpx.AsyncClient,
    sc: stripe.StripeClient,
    *,
    secret: str,
    amount_cents: int = 10_000,
    currency: str = "USD",
    delivered: bool = False,
) -> Gig:
    """`book_gig`, paid by card at localstripe; with `delivered`, started and delivered too."""
    gig = await book_gig(http, amount_cents=amount_cents, currency=currency)
    await pay(http, sc, gig, secret=secret)
    if delivered:
        await deliver(http, gig)
    return gig


async def gig_in_status(
    client: httpx.AsyncClient, db: asyncpg.Connection, status: str, *, owner: Account | None = None
) -> Gig:
    """A gig whose project is in `status`, reached by the API's own moves where we own them."""
    if status == "open":
        return await open_gig(client, owner=owner)
    if status == "cancelled":
        gig = await open_gig(client, owner=owner)
        await move(client, gig, gig.client, "cancelled")
        return gig
    gig = await booked_gig(client, owner=owner)
    if status == "awarded":
        return gig
    if status == "disputed":
        # Stand-in for POST /api/disputes (the disputes domain's move).
        await db.execute("UPDATE projects SET status = 'disputed' WHERE id = $1", gig.project_id)
        return gig
    await fund_escrow(db, gig.project_id)
    await move(client, gig, gig.worker, "in_progress")
    if status == "in_progress":
        return gig
    await move(client, gig, gig.worker, "delivered")
    if status == "delivered":
        return gig
    assert status == "completed", status
    await move(client, gig, gig.client, "completed")
    return gig


# --- people and rows ------------------------------------------------------------------------------


async def make_admin(app: FastAPI, http: httpx.AsyncClient) -> Account:
    pool: asyncpg.Pool = app.state.tulifo.pool
    email = unique_email("admin")
    user_id = await create_admin(pool=pool, email=email, password=PASSWORD, name="Ada", rounds=4)
    tokens = data(await login(http, email, PASSWORD))
    return Account(
        id=user_id,
        email=email,
        password=PASSWORD,
        role="admin",
        access_token=tokens["accessToken"],
        refresh_token=tokens["refreshToken"],
    )


async def project_status(db: asyncpg.Connection, project_id: uuid.UUID | str) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM projects WHERE id = $1", uuid.UUID(str(project_id))
    )
    return status


async def row_counts(db: asyncpg.Connection) -> dict[str, int]:
    """Rows per gig table (and outbox). The database is shared by the session's tests, so
    compare before and after within one test only; tests run one at a time."""
    return {table: await db.fetchval(f"SELECT count(*) FROM {table}") for table in GIG_TABLES}


def auth(account: Account | None) -> dict[str, str]:
    """Headers of `account`, or none for the public."""
    return bearer(account.access_token) if account else {}
