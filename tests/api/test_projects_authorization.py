"""Who may do what on each gig endpoint: one row per endpoint, one column per kind of caller.

The callers, for one project: its client (`owner`), another client, the worker whose bid is
accepted (`worker`; still a pending bidder while the project is open), a second bidder who loses
(`rival`), a worker with no bid, an admin, and the public. 404 means "you may not know it
exists": a closed project, a bid or a booking is hidden from everyone without a part in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import Account, register
from tests.api.gigs import Gig, auth, awarded_gig, bid_body, gig_in_status, make_admin, project_body

ACTORS = ("owner", "other_client", "worker", "rival", "other_worker", "admin", "anonymous")


@dataclass
class World:
    gig: Gig
    people: dict[str, Account | None]


Call = Callable[[httpx.AsyncClient, World, dict[str, str]], Awaitable[httpx.Response]]


def _booking_body(w: World) -> dict[str, Any]:
    return {
        "projectId": str(w.gig.project_id),
        "workerId": str(w.gig.worker.id),
        "agreedAmountCents": w.gig.bid["amountCents"],
    }


# name → (project status, request, expected status per actor, in ACTORS order). Every project
# state but "awarded, not booked" comes with its booking (see gig_in_status).
MATRIX: dict[str, tuple[str, Call, tuple[int, ...]]] = {
    "post a project": (
        "open",
        lambda c, w, h: c.post("/api/projects", json=project_body(), headers=h),
        (201, 201, 403, 403, 403, 403, 401),
    ),
    "read an open project": (
        "open",
        lambda c, w, h: c.get(w.gig.url, headers=h),
        (200, 200, 200, 200, 200, 200, 200),
    ),
    "read an awarded project": (
        "awarded",
        lambda c, w, h: c.get(w.gig.url, headers=h),
        (200, 404, 200, 200, 404, 200, 404),
    ),
    "edit an open project": (
        "open",
        lambda c, w, h: c.patch(w.gig.url, json={"title": "New title"}, headers=h),
        (200, 403, 403, 403, 403, 403, 401),
    ),
    "cancel an awarded project": (
        "awarded",
        lambda c, w, h: c.put(f"{w.gig.url}/status", json={"status": "cancelled"}, headers=h),
        (200, 404, 403, 403, 404, 403, 401),
    ),
    "deliver the work": (
        "in_progress",
        lambda c, w, h: c.put(f"{w.gig.url}/status", json={"status": "delivered"}, headers=h),
        (403, 404, 200, 403, 404, 403, 401),
    ),
    "accept the delivery": (
        "delivered",
        lambda c, w, h: c.put(f"{w.gig.url}/status", json={"status": "completed"}, headers=h),
        (200, 404, 403, 403, 404, 403, 401),
    ),
    # The worker and the rival already bid: a second live bid is a 409, not a permission issue.
    "bid on an open project": (
        "open",
        lambda c, w, h: c.post(f"{w.gig.url}/bids", json=bid_body(), headers=h),
        (403, 403, 409, 409, 201, 403, 401),
    ),
    "list the bids": (
        "open",
        lambda c, w, h: c.get(f"{w.gig.url}/bids", headers=h),
        (200, 403, 200, 200, 200, 200, 401),
    ),
    "accept a bid": (
        "open",
        lambda c, w, h: c.post(f"{w.gig.url}/bids/{w.gig.bid['id']}/accept", headers=h),
        (200, 403, 403, 403, 403, 403, 401),
    ),
    "withdraw a bid": (
        "open",
        lambda c, w, h: c.post(f"{w.gig.url}/bids/{w.gig.bid['id']}/withdraw", headers=h),
        (403, 404, 200, 404, 404, 403, 401),
    ),
    "book the worker": (
        "awarded, not booked",
        lambda c, w, h: c.post("/api/bookings", json=_booking_body(w), headers=h),
        (201, 404, 403, 403, 404, 403, 401),
    ),
    "read the booking": (
        "awarded",
        lambda c, w, h: c.get(f"/api/bookings/{w.gig.booking_id}", headers=h),
        (200, 404, 200, 404, 404, 200, 401),
    ),
    "review the project": (
        "completed",
        lambda c, w, h: c.post(
            "/api/reviews", json={"projectId": str(w.gig.project_id), "rating": 4}, headers=h
        ),
        (201, 404, 201, 403, 404, 403, 401),
    ),
    "read a worker's reviews": (
        "completed",
        lambda c, w, h: c.get(f"/api/users/{w.gig.worker.id}/reviews", headers=h),
        (200, 200, 200, 200, 200, 200, 200),
    ),
}

CASES = [
    pytest.param(name, actor, expected[i], id=f"{name} as {actor}")
    for name, (_, _, expected) in MATRIX.items()
    for i, actor in enumerate(ACTORS)
]


@pytest.mark.parametrize(("endpoint", "actor", "expected"), CASES)
async def test_authorization_matrix(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    endpoint: str,
    actor: str,
    expected: int,
) -> None:
    status, call, _ = MATRIX[endpoint]
    if status == "awarded, not booked":
        gig = await awarded_gig(client)
    else:
        gig = await gig_in_status(client, db, status)
    people: dict[str, Account | None] = {
        "owner": gig.owner,
        "other_client": await register(client, role="client"),
        "worker": gig.worker,
        "rival": gig.rival,
        "other_worker": await register(client, role="worker"),
        "admin": await make_admin(app, client),
        "anonymous": None,
    }
    response = await call(client, World(gig, people), auth(people[actor]))
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["success"] is False
