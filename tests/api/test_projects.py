"""POST/GET/PATCH /api/projects: posting, validation, visibility, edits while open."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.money import MAX_AMOUNT_CENTS
from tests.api.conftest import error_fields, outbox_events, register
from tests.api.gigs import (
    awarded_gig,
    create_project,
    open_gig,
    project_body,
    row_counts,
    submit_bid,
)


def _in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_a_client_posts_a_project_and_its_event(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    owner = await register(client, role="client")
    deadline = _in(30)
    response = await client.post(
        "/api/projects",
        json=project_body(
            title="  Build a data pipeline  ",
            currency="eur",
            requiredSkills=[" Python ", "python", "Kafka", "KAFKA", "SQL"],
            deadline=deadline,
        ),
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["title"] == "Build a data pipeline"
    assert data["currency"] == "EUR"
    assert data["requiredSkills"] == ["Python", "Kafka", "SQL"]
    assert data["status"] == "open"
    assert data["clientId"] == str(owner.id)
    assert data["workerId"] is data["acceptedBidId"] is data["bookingId"] is None
    assert datetime.fromisoformat(data["deadline"]) == datetime.fromisoformat(deadline)

    (event,) = await outbox_events(db, event_type="project.created", key=data["id"])
    assert event["actor_id"] == str(owner.id)
    assert event["data"] == {
        "project_id": data["id"],
        "client_id": str(owner.id),
        "title": "Build a data pipeline",
        "description": "Kafka in, PostgreSQL out.",
        "budget_cents": 150_000,
        "currency": "EUR",
        "required_skills": ["Python", "Kafka", "SQL"],
        "deadline": event["data"]["deadline"],
        "status": "open",
    }
    assert datetime.fromisoformat(event["data"]["deadline"]) == datetime.fromisoformat(deadline)


async def test_only_clients_post_projects(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    worker = await register(client, role="worker")
    before = await row_counts(db)
    as_worker = await client.post("/api/projects", json=project_body(), headers=worker.headers)
    anonymous = await client.post("/api/projects", json=project_body())
    assert as_worker.status_code == 403
    assert anonymous.status_code == 401
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"budgetCents": 0}, "budgetCents"),
        ({"budgetCents": -100}, "budgetCents"),
        ({"budgetCents": 49}, "budgetCents"),
        ({"budgetCents": MAX_AMOUNT_CENTS + 1}, "budgetCents"),
        ({"budgetCents": 10**30}, "budgetCents"),
        ({"budgetCents": 1500.5}, "budgetCents"),
        ({"budgetCents": "150000"}, "budgetCents"),
        ({"budgetCents": True}, "budgetCents"),
        ({"budgetCents": None}, "budgetCents"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "US$"}, "currency"),
        ({"title": "ab"}, "title"),
        ({"title": "   ab   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "nul\u0000byte"}, "title"),
        ({"description": "x" * 20_001}, "description"),
        ({"requiredSkills": [f"skill{i}" for i in range(31)]}, "requiredSkills"),
        ({"requiredSkills": ["x" * 51]}, "requiredSkills.0"),
        ({"requiredSkills": ["  "]}, "requiredSkills.0"),
        ({"deadline": "2020-01-01T00:00:00Z"}, "deadline"),
        ({"deadline": "2099-01-01T00:00:00Z"}, "deadline"),
        ({"deadline": (datetime.now() + timedelta(days=3)).isoformat()}, "deadline"),
        ({"deadline": "tomorrow"}, "deadline"),
        ({"ownerId": str(uuid.uuid4())}, "ownerId"),
        ({"status": "completed"}, "status"),
    ],
)
async def test_bad_project_input_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, override: dict[str, Any], field: str
) -> None:
    owner = await register(client, role="client")
    before = await row_counts(db)
    response = await client.post(
        "/api/projects", json=project_body(**override), headers=owner.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in error_fields(response)
    assert await row_counts(db) == before


async def test_missing_required_fields_are_each_named(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    response = await client.post("/api/projects", json={}, headers=owner.headers)
    assert response.status_code == 422
    # The currency defaults to USD, as the seed's projects (which had none) were.
    assert set(error_fields(response)) == {"title", "budgetCents"}


async def test_anyone_reads_an_open_project(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    stranger = await register(client, role="worker")
    project = await create_project(client, owner)
    anonymous = await client.get(f"/api/projects/{project['id']}")
    signed_in = await client.get(f"/api/projects/{project['id']}", headers=stranger.headers)
    assert anonymous.status_code == signed_in.status_code == 200
    assert anonymous.json()["data"] == project


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    unknown = await client.get(f"/api/projects/{uuid.uuid4()}")
    malformed = await client.get("/api/projects/not-a-uuid")
    assert unknown.status_code == 404
    assert malformed.status_code == 422
    assert error_fields(malformed) == ["path.project_id"]


async def test_a_bad_bearer_token_is_refused_even_where_the_public_may_read(
    client: httpx.AsyncClient,
) -> None:
    owner = await register(client, role="client")
    project = await create_project(client, owner)
    response = await client.get(
        f"/api/projects/{project['id']}", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401


async def test_an_awarded_project_leaves_the_public_board(
    client: httpx.AsyncClient,
) -> None:
    gig = await awarded_gig(client)
    outsider = await register(client, role="worker")
    other_client = await register(client, role="client")
    for account in (gig.owner, gig.worker, gig.rival):
        response = await client.get(gig.url, headers=account.headers)
        assert response.status_code == 200, account.role
        assert response.json()["data"]["status"] == "awarded"
    missing = await client.get(f"/api/projects/{uuid.uuid4()}")
    for headers in (outsider.headers, other_client.headers, {}):
        response = await client.get(gig.url, headers=headers)
        assert response.status_code == 404
        assert response.json() == missing.json()


# --- the board


async def _list(client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any):  # type: ignore[no-untyped-def]
    response = await client.get("/api/projects", params=params, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_the_board_filters_by_skills_any_or_all_ignoring_case(
    client: httpx.AsyncClient,
) -> None:
    owner = await register(client, role="client")
    tag = uuid.uuid4().hex[:8]
    both = await create_project(client, owner, requiredSkills=[f"Rust-{tag}", f"Go-{tag}"])
    rust = await create_project(client, owner, requiredSkills=[f"rust-{tag}"])
    await create_project(client, owner, requiredSkills=[f"Elm-{tag}"])

    any_page = await _list(client, skills=f"RUST-{tag},go-{tag}")
    assert [p["id"] for p in any_page["items"]] == [rust["id"], both["id"]]
    all_page = await _list(client, skills=[f"rust-{tag}", f"GO-{tag}"], skillsMatch="all")
    assert [p["id"] for p in all_page["items"]] == [both["id"]]


async def test_the_board_filters_by_budget_currency_and_status(
    client: httpx.AsyncClient,
) -> None:
    owner = await register(client, role="client")
    tag = f"budget-{uuid.uuid4().hex[:8]}"
    small = await create_project(client, owner, budgetCents=10_000, requiredSkills=[tag])
    big = await create_project(client, owner, budgetCents=900_000, requiredSkills=[tag])
    euro = await create_project(
        client, owner, budgetCents=50_000, currency="EUR", requiredSkills=[tag]
    )
    page = await _list(client, skills=tag, minBudget=20_000, maxBudget=900_000)
    assert [p["id"] for p in page["items"]] == [euro["id"], big["id"]]
    page = await _list(client, skills=tag, currency="usd")
    assert [p["id"] for p in page["items"]] == [big["id"], small["id"]]
    page = await _list(client, skills=tag, status=["awarded", "completed"])
    assert page["items"] == []

    bad = await client.get("/api/projects", params={"minBudget": 10, "maxBudget": 5})
    assert bad.status_code == 422
    assert error_fields(bad) == ["minBudget"]
    bad = await client.get("/api/projects", params={"status": "sleeping"})
    assert bad.status_code == 422
    assert error_fields(bad) == ["query.status.0"]


async def test_the_public_board_shows_only_open_projects(client: httpx.AsyncClient) -> None:
    gig = await awarded_gig(client)
    tag = gig.project["requiredSkills"][0]
    open_ids = {p["id"] for p in (await _list(client, limit=100))["items"]}
    assert str(gig.project_id) not in open_ids
    # Its parties see it on the board, filtered like any other.
    mine = await _list(client, gig.owner.headers, status="awarded", skills=tag, limit=100)
    assert str(gig.project_id) in {p["id"] for p in mine["items"]}


async def test_mine_lists_a_clients_projects_and_a_workers_bids_and_gigs(
    client: httpx.AsyncClient,
) -> None:
    gig = await awarded_gig(client)
    second = await create_project(client, gig.owner)
    other = await open_gig(client)
    await submit_bid(client, gig.rival, other.project_id)

    owners = await _list(client, gig.owner.headers, mine="true")
    assert [p["id"] for p in owners["items"]] == [second["id"], str(gig.project_id)]
    workers = await _list(client, gig.worker.headers, mine="true")
    assert [p["id"] for p in workers["items"]] == [str(gig.project_id)]
    # The losing bidder still finds the project it bid on, and its newer bid.
    rivals = await _list(client, gig.rival.headers, mine="true")
    assert [p["id"] for p in rivals["items"]] == [str(other.project_id), str(gig.project_id)]

    anonymous = await client.get("/api/projects", params={"mine": "true"})
    assert anonymous.status_code == 401


async def test_keyset_pages_cover_every_project_once(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    tag = f"page-{uuid.uuid4().hex[:8]}"
    created = [(await create_project(client, owner, requiredSkills=[tag]))["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"skills": tag, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await _list(client, **params)
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),
        ({"cursor": "x" * 500}, "query.cursor"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 101}, "query.limit"),
        ({"minBudget": -1}, "query.minBudget"),
        ({"skillsMatch": "most"}, "query.skillsMatch"),
        ({"skills": "python,\u0000"}, "skills"),
        ({"skills": "x" * 51}, "skills"),
        ({"skills": ",".join(f"s{i}" for i in range(31))}, "skills"),
        ({"currency": "\u0000US"}, "query.currency"),
    ],
)
async def test_bad_board_queries_are_422s(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/projects", params=params)
    assert response.status_code == 422, response.text
    assert error_fields(response) == [field]


# --- edits


async def test_the_client_edits_an_open_project_and_only_changes_are_emitted(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    owner = await register(client, role="client")
    project = await create_project(client, owner, deadline=_in(10))
    url = f"/api/projects/{project['id']}"
    response = await client.patch(
        url,
        json={"budgetCents": 200_000, "title": project["title"], "deadline": None},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["budgetCents"] == 200_000
    assert data["deadline"] is None
    (event,) = await outbox_events(db, event_type="project.updated", key=project["id"])
    assert event["data"] == {
        "project_id": project["id"],
        "client_id": str(owner.id),
        "changed": ["budget_cents", "deadline"],
        "project": {"budget_cents": 200_000, "currency": "USD", "deadline": None},
    }
    # Nothing changed, nothing emitted.
    again = await client.patch(url, json={"budgetCents": 200_000}, headers=owner.headers)
    assert again.status_code == 200
    assert len(await outbox_events(db, event_type="project.updated", key=project["id"])) == 1


async def test_an_edit_takes_the_seeds_budget_and_skills_in_the_projects_currency(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    owner = await register(client, role="client")
    project = await create_project(client, owner)
    url = f"/api/projects/{project['id']}"
    response = await client.patch(
        url, json={"budget": "1250.50", "skills": ["Rust"]}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["budgetCents"], data["requiredSkills"]) == (125_050, ["Rust"])

    for body, field in (
        ({"budget": 12.345}, "budget"),  # more decimals than USD has
        ({"budget": "12.00", "budgetCents": 1_300}, "budget"),  # the two forms disagree
        ({"skills": ["Go"], "requiredSkills": ["Rust"]}, "skills"),
    ):
        refused = await client.patch(url, json=body, headers=owner.headers)
        assert refused.status_code == 422, (body, refused.text)
        assert error_fields(refused) == [field], body
    stored = await db.fetchval(
        "SELECT budget_cents FROM projects WHERE id = $1", uuid.UUID(project["id"])
    )
    assert stored == 125_050


async def test_edits_are_the_clients_alone_and_only_while_open(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    other_client = await register(client, role="client")
    before = await row_counts(db)
    for account in (other_client, gig.worker):
        response = await client.patch(gig.url, json={"title": "Mine now"}, headers=account.headers)
        assert response.status_code == 403
    assert (await client.patch(gig.url, json={"title": "Mine now"})).status_code == 401
    # The currency is fixed once bids are in: they are all in it.
    response = await client.patch(gig.url, json={"currency": "EUR"}, headers=gig.owner.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PROJECT_HAS_BIDS"
    assert await row_counts(db) == before

    accepted = await client.post(
        f"{gig.url}/bids/{gig.bid['id']}/accept", headers=gig.owner.headers
    )
    assert accepted.status_code == 200
    response = await client.patch(gig.url, json={"title": "Too late"}, headers=gig.owner.headers)
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"currentStatus": "awarded"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"budgetCents": None}, "budgetCents"),
        ({"budgetCents": 0}, "budgetCents"),
        ({"currency": "JPY"}, "currency"),
        ({"requiredSkills": None}, "requiredSkills"),
        ({"deadline": "2001-01-01T00:00:00+00:00"}, "deadline"),
        ({"clientId": str(uuid.uuid4())}, "clientId"),
    ],
)
async def test_bad_edits_are_422s_that_change_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    owner = await register(client, role="client")
    project = await create_project(client, owner)
    before = await row_counts(db)
    response = await client.patch(
        f"/api/projects/{project['id']}", json=body, headers=owner.headers
    )
    assert response.status_code == 422, response.text
    assert field in error_fields(response)
    assert await row_counts(db) == before
    unchanged = await client.get(f"/api/projects/{project['id']}")
    assert unchanged.json()["data"] == project
