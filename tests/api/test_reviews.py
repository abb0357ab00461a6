"""/api/reviews: each party of a completed project reviews the other, once; anyone reads them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.conftest import Account, error_fields, outbox_events, register
from tests.api.gigs import gig_in_status, row_counts


async def _review(
    client: httpx.AsyncClient, account: Account | None, project_id: uuid.UUID | str, **body: Any
) -> httpx.Response:
    payload = {"projectId": str(project_id), "rating": 5, "comment": "Great work.", **body}
    return await client.post(
        "/api/reviews", json=payload, headers=account.headers if account else {}
    )


async def test_both_parties_review_each_other_after_completion(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "completed")
    by_client = await _review(client, gig.owner, gig.project_id, rating=5, comment="  Superb. ")
    by_worker = await _review(client, gig.worker, gig.project_id, rating=3, comment="")
    assert by_client.status_code == by_worker.status_code == 201, by_client.text
    review = by_client.json()["data"]
    assert review["reviewerId"] == str(gig.owner.id)
    assert review["reviewerName"] == "Cleo Client"
    assert review["revieweeId"] == str(gig.worker.id)
    assert review["revieweeRole"] == "worker"
    assert review["comment"] == "Superb."
    assert by_worker.json()["data"]["revieweeId"] == str(gig.owner.id)

    (about_worker,) = await outbox_events(db, event_type="review.created", key=gig.worker.id)
    assert about_worker["actor_id"] == str(gig.owner.id)
    assert about_worker["data"] == {
        "review_id": review["id"],
        "project_id": str(gig.project_id),
        "reviewer_id": str(gig.owner.id),
        "reviewee_id": str(gig.worker.id),
        "reviewee_role": "worker",
        "rating": 5,
    }
    (about_client,) = await outbox_events(db, event_type="review.created", key=gig.owner.id)
    assert about_client["data"]["reviewee_role"] == "client"
    assert about_client["data"]["rating"] == 3


async def test_one_review_per_reviewer_per_project(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "completed")
    assert (await _review(client, gig.owner, gig.project_id)).status_code == 201
    before = await row_counts(db)
    again = await _review(client, gig.owner, gig.project_id, rating=1)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ALREADY_REVIEWED"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    "status", ["open", "awarded", "in_progress", "delivered", "cancelled", "disputed"]
)
async def test_only_completed_projects_are_reviewed(
    client: httpx.AsyncClient, db: asyncpg.Connection, status: str
) -> None:
    gig = await gig_in_status(client, db, status)
    before = await row_counts(db)
    response = await _review(client, gig.owner, gig.project_id)
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"currentStatus": status}
    assert await row_counts(db) == before


async def test_only_the_parties_review(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    gig = await gig_in_status(client, db, "completed")
    outsider = await register(client, role="worker")
    before = await row_counts(db)
    # The losing bidder can see the project but was not part of the work.
    assert (await _review(client, gig.rival, gig.project_id)).status_code == 403
    assert (await _review(client, outsider, gig.project_id)).status_code == 404
    assert (await _review(client, None, gig.project_id)).status_code == 401
    assert (await _review(client, gig.owner, str(uuid.uuid4()))).status_code == 404
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"rating": None}, "rating"),
        ({"comment": "x" * 2001}, "comment"),
        ({"comment": "bad\u0000"}, "comment"),
        ({"projectId": "42"}, "projectId"),
        ({"revieweeId": str(uuid.uuid4())}, "revieweeId"),
    ],
)
async def test_bad_reviews_are_422s_naming_the_field(
    client: httpx.AsyncClient, db: asyncpg.Connection, override: dict[str, Any], field: str
) -> None:
    gig = await gig_in_status(client, db, "completed")
    before = await row_counts(db)
    response = await _review(client, gig.owner, gig.project_id, **override)
    assert response.status_code == 422, response.text
    assert field in error_fields(response)
    assert await row_counts(db) == before


async def test_anyone_pages_through_a_users_reviews(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    # One client, three completed gigs with three workers: three reviews about the client.
    first = await gig_in_status(client, db, "completed")
    owner = first.owner
    ids = []
    for gig in [first] + [await gig_in_status(client, db, "completed", owner=owner) for _ in "ab"]:
        response = await _review(client, gig.worker, gig.project_id, rating=4)
        ids.append(response.json()["data"]["id"])
        # The client's own review is about the worker: not in the client's list.
        await _review(client, owner, gig.project_id, rating=5)

    url = f"/api/users/{owner.id}/reviews"
    page_one = (await client.get(url, params={"limit": 2})).json()["data"]
    page_two = (
        await client.get(url, params={"limit": 2, "cursor": page_one["nextCursor"]})
    ).json()["data"]
    assert [r["id"] for r in page_one["items"] + page_two["items"]] == list(reversed(ids))
    assert page_two["nextCursor"] is None
    assert {r["revieweeRole"] for r in page_one["items"]} == {"client"}
    same = await client.get("/api/reviews", params={"userId": str(owner.id), "limit": 2})
    assert same.json()["data"] == page_one

    assert (await client.get(f"/api/users/{uuid.uuid4()}/reviews")).status_code == 404
    missing_user = await client.get("/api/reviews")
    assert missing_user.status_code == 422
    assert error_fields(missing_user) == ["query.userId"]


async def test_a_private_workers_reviews_are_hidden_with_their_profile(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await gig_in_status(client, db, "completed")
    assert (await _review(client, gig.owner, gig.project_id)).status_code == 201
    url = f"/api/users/{gig.worker.id}/reviews"
    assert len((await client.get(url)).json()["data"]["items"]) == 1
    hidden = await client.put(
        "/api/users/me/settings",
        json={"privacy": {"profileVisibility": "private"}},
        headers=gig.worker.headers,
    )
    assert hidden.status_code == 200
    assert (await client.get(url)).status_code == 404
