"""Factories for the gig lifecycle: projects, bids, bookings, and a whole gig driven to any
project status through the API (only funding and disputes, owned by the payments and disputes
domains, are stood in for by SQL).

Other domains' tests may build on these: `booked_gig` gives an awarded, booked project with its
unfunded escrow hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from api.auth.admin import create_admin
from tests.api.conftest import PASSWORD, Account, bearer, login, register, unique_email

# Tables the gig lifecycle writes, and the outbox: `row_counts` before and after a refused
# request proves nothing was half-written.
GIG_TABLES = ("projects", "bids", "bookings", "escrow_holds", "reviews", "outbox")

STATUSES = ("open", "awarded", "in_progress", "delivered", "completed", "cancelled", "disputed")


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


async def create_project(
    client: httpx.AsyncClient, owner: Account, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/projects", json=project_body(**overrides), headers=owner.headers
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def submit_bid(
    client: httpx.AsyncClient, worker: Account, project_id: str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/projects/{project_id}/bids", json=bid_body(**overrides), headers=worker.headers
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def accept_bid(
    client: httpx.AsyncClient, owner: Account, project_id: str, bid_id: str
) -> httpx.Response:
    return await client.post(
        f"/api/projects/{project_id}/bids/{bid_id}/accept", headers=owner.headers
    )


async def put_status(
    client: httpx.AsyncClient, account: Account | None, project_id: str, status: str
) -> httpx.Response:
    return await client.put(
        f"/api/projects/{project_id}/status",
        json={"status": status},
        headers=account.headers if account else {},
    )


async def book(
    client: httpx.AsyncClient, owner: Account, project_id: str, worker_id: uuid.UUID, amount: int
) -> httpx.Response:
    return await client.post(
        "/api/bookings",
        json={"projectId": project_id, "workerId": str(worker_id), "agreedAmountCents": amount},
        headers=owner.headers,
    )


async def fund_escrow(db: asyncpg.Connection, project_id: str) -> None:
    """Stand-in for the payment webhook: the project's hold becomes funded."""
    updated = await db.execute(
        """UPDATE escrow_holds SET status = 'funded', funded_at = now(), updated_at = now()
            WHERE project_id = $1 AND status = 'unfunded'""",
        uuid.UUID(project_id),
    )
    assert updated == "UPDATE 1", updated


async def admin_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    email = unique_email("admin")
    user_id = await create_admin(
        pool=app.state.tulifo.pool, email=email, password=PASSWORD, name="Ada Admin", rounds=4
    )
    data = (await login(client, email, PASSWORD)).json()["data"]
    return Account(
        id=user_id,
        email=email,
        password=PASSWORD,
        role="admin",
        access_token=data["accessToken"],
        refresh_token=data["refreshToken"],
    )


@dataclass
class Gig:
    """A project with its people: the client who owns it, the worker whose bid is (or will be)
    accepted, and a second bidder who loses (or is still pending while the project is open)."""

    owner: Account
    worker: Account
    rival: Account
    project: dict[str, Any]
    bid: dict[str, Any]
    rival_bid: dict[str, Any]
    booking: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def project_id(self) -> str:
        return str(self.project["id"])

    @property
    def booking_id(self) -> str:
        assert self.booking is not None, "this gig has no booking"
        return str(self.booking["id"])

    @property
    def url(self) -> str:
        return f"/api/projects/{self.project_id}"


async def open_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    """An open project with two pending bids; a new client owns it unless `owner` is given."""
    owner = owner or await register(client, role="client", name="Cleo Client")
    worker = await register(client, role="worker", name="Wanda Worker")
    rival = await register(client, role="worker", name="Rex Rival")
    project = await create_project(client, owner)
    bid = await submit_bid(client, worker, project["id"], amountCents=amount_cents)
    rival_bid = await submit_bid(client, rival, project["id"], amountCents=110_000)
    return Gig(owner, worker, rival, project, bid, rival_bid)


async def awarded_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    gig = await open_gig(client, amount_cents=amount_cents, owner=owner)
    response = await accept_bid(client, gig.owner, gig.project_id, gig.bid["id"])
    assert response.status_code == 200, response.text
    return gig


async def booked_gig(
    client: httpx.AsyncClient, *, amount_cents: int = 120_000, owner: Account | None = None
) -> Gig:
    """Awarded and booked: the escrow hold exists, unfunded."""
    gig = await awarded_gig(client, amount_cents=amount_cents, owner=owner)
    response = await book(client, gig.owner, gig.project_id, gig.worker.id, amount_cents)
    assert response.status_code == 201, response.text
    gig.booking = response.json()["data"]
    return gig


async def gig_in_status(
    client: httpx.AsyncClient, db: asyncpg.Connection, status: str, *, owner: Account | None = None
) -> Gig:
    """A gig whose project is in `status`, reached by the API's own moves where we own them."""
    if status == "open":
        return await open_gig(client, owner=owner)
    if status == "cancelled":
        gig = await open_gig(client, owner=owner)
        await _move(client, gig.owner, gig, "cancelled")
        return gig
    gig = await booked_gig(client, owner=owner)
    if status == "awarded":
        return gig
    if status == "disputed":
        # Stand-in for POST /api/disputes (the disputes domain's move).
        await db.execute(
            "UPDATE projects SET status = 'disputed' WHERE id = $1", uuid.UUID(gig.project_id)
        )
        return gig
    await fund_escrow(db, gig.project_id)
    await _move(client, gig.worker, gig, "in_progress")
    if status == "in_progress":
        return gig
    await _move(client, gig.worker, gig, "delivered")
    if status == "delivered":
        return gig
    assert status == "completed", status
    await _move(client, gig.owner, gig, "completed")
    return gig


async def _move(client: httpx.AsyncClient, account: Account, gig: Gig, status: str) -> None:
    response = await put_status(client, account, gig.project_id, status)
    assert response.status_code == 200, response.text
    gig.project = response.json()["data"]


async def project_status(db: asyncpg.Connection, project_id: str) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM projects WHERE id = $1", uuid.UUID(project_id)
    )
    return status


async def row_counts(db: asyncpg.Connection) -> dict[str, int]:
    """Rows per gig table (and outbox). The database is shared by the session's tests, so
    compare before and after within one test only; tests run one at a time."""
    return {table: await db.fetchval(f"SELECT count(*) FROM {table}") for table in GIG_TABLES}


def auth(account: Account | None) -> dict[str, str]:
    """Headers of `account`, or none for the public."""
    return bearer(account.access_token) if account else {}
