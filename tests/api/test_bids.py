"""/api/projects/{id}/bids: bidding, withdrawing, listing, and the atomic accept."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from api.money import MAX_AMOUNT_CENTS
from tests.api.conftest import error_fields, outbox_events, register
from tests.api.gigs import (
    accept_bid,
    awarded_gig,
    bid_body,
    create_project,
    open_gig,
    project_status,
    row_counts,
    submit_bid,
)


async def test_a_worker_bids_on_an_open_project(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    owner = await register(client, role="client")
    worker = await register(client, role="worker")
    project = await create_project(client, owner, currency="GBP")
    response = await client.post(
        f"/api/projects/{project['id']}/bids",
        json=bid_body(amountCents=99_900, currency="gbp", proposal="  I can.  "),
        headers=worker.headers,
    )
    assert response.status_code == 201, response.text
    bid = response.json()["data"]
    assert bid["status"] == "pending"
    assert bid["currency"] == "GBP"
    assert bid["proposal"] == "I can."
    assert bid["workerId"] == str(worker.id)
    (event,) = await outbox_events(db, event_type="bid.submitted", key=project["id"])
    assert event["actor_id"] == str(worker.id)
    assert event["data"] == {
        "bid_id": bid["id"],
        "project_id": project["id"],
        "client_id": str(owner.id),
        "worker_id": str(worker.id),
        "amount_cents": 99_900,
        "currency": "GBP",
        "delivery_days": 14,
    }


async def test_a_bid_without_a_currency_takes_the_projects(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    worker = await register(client, role="worker")
    project = await create_project(client, owner, currency="CAD")
    bid = await submit_bid(client, worker, project["id"])
    assert bid["currency"] == "CAD"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"amountCents": 0}, "amountCents"),
        ({"amountCents": -1}, "amountCents"),
        ({"amountCents": MAX_AMOUNT_CENTS + 1}, "amountCents"),
        ({"amountCents": 99.99}, "amountCents"),
        ({"amountCents": "100"}, "amountCents"),
        ({"currency": "EUR"}, "currency"),
        ({"currency": "ZZZ"}, "currency"),
        ({"deliveryDays": 0}, "deliveryDays"),
        ({"deliveryDays": 366}, "deliveryDays"),
        ({"proposal": ""}, "proposal"),
        ({"proposal": "   "}, "proposal"),
        ({"proposal": "x" * 5001}, "proposal"),
        ({"status": "accepted"}, "status"),
        ({"workerId": str(uuid.uuid4())}, "workerId"),
    ],
)
async def test_bad_bids_are_422s_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, override: dict[str, Any], field: str
) -> None:
    owner = await register(client, role="client")
    worker = await register(client, role="worker")
    project = await create_project(client, owner)
    before = await row_counts(db)
    response = await client.post(
        f"/api/projects/{project['id']}/bids", json=bid_body(**override), headers=worker.headers
    )
    assert response.status_code == 422, response.text
    assert field in error_fields(response)
    assert await row_counts(db) == before


async def test_a_second_live_bid_by_the_same_worker_is_a_409(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    before = await row_counts(db)
    response = await client.post(
        f"{gig.url}/bids", json=bid_body(amountCents=100_000), headers=gig.worker.headers
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "DUPLICATE_BID"
    assert await row_counts(db) == before


async def test_two_bids_sent_at_once_by_one_worker_make_one_bid(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    owner = await register(client, role="client")
    worker = await register(client, role="worker")
    project = await create_project(client, owner)
    url = f"/api/projects/{project['id']}/bids"
    responses = await asyncio.gather(
        *(client.post(url, json=bid_body(), headers=worker.headers) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    count = await db.fetchval(
        "SELECT count(*) FROM bids WHERE project_id = $1", uuid.UUID(project["id"])
    )
    assert count == 1
    assert len(await outbox_events(db, event_type="bid.submitted", key=project["id"])) == 1


async def test_only_workers_bid_and_only_on_open_projects(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await awarded_gig(client)
    other_client = await register(client, role="client")
    newcomer = await register(client, role="worker")
    fresh = await create_project(client, gig.owner)
    before = await row_counts(db)
    for account in (gig.owner, other_client):
        response = await client.post(
            f"/api/projects/{fresh['id']}/bids", json=bid_body(), headers=account.headers
        )
        assert response.status_code == 403
    anonymous = await client.post(f"/api/projects/{fresh['id']}/bids", json=bid_body())
    assert anonymous.status_code == 401
    # The awarded project: a 409 for the bidders who can see it, a 404 for anyone else.
    closed = await client.post(f"{gig.url}/bids", json=bid_body(), headers=gig.rival.headers)
    assert closed.status_code == 409
    assert closed.json()["error"]["details"] == {"currentStatus": "awarded"}
    hidden = await client.post(f"{gig.url}/bids", json=bid_body(), headers=newcomer.headers)
    assert hidden.status_code == 404
    unknown = await client.post(
        f"/api/projects/{uuid.uuid4()}/bids", json=bid_body(), headers=newcomer.headers
    )
    assert unknown.status_code == 404
    assert await row_counts(db) == before


# --- withdrawing


@pytest.mark.parametrize("spelling", ["delete", "post"])
async def test_the_bidder_withdraws_a_pending_bid_and_may_bid_again(
    client: httpx.AsyncClient, db: asyncpg.Connection, spelling: str
) -> None:
    gig = await open_gig(client)
    url = f"{gig.url}/bids/{gig.bid['id']}"
    if spelling == "delete":
        response = await client.delete(url, headers=gig.worker.headers)
    else:
        response = await client.post(f"{url}/withdraw", headers=gig.worker.headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "withdrawn"
    (event,) = await outbox_events(db, event_type="bid.withdrawn", key=gig.project_id)
    assert event["data"] == {
        "bid_id": gig.bid["id"],
        "project_id": str(gig.project_id),
        "client_id": str(gig.owner.id),
        "worker_id": str(gig.worker.id),
    }
    again = await client.post(url + "/withdraw", headers=gig.worker.headers)
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"currentStatus": "withdrawn"}
    # The withdrawn bid no longer holds the worker's one live slot.
    await submit_bid(client, gig.worker, gig.project_id, amountCents=90_000)


async def test_only_the_bidder_withdraws(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    gig = await open_gig(client)
    other = await open_gig(client)
    other_client = await register(client, role="client")
    url = f"{gig.url}/bids/{gig.bid['id']}/withdraw"
    before = await row_counts(db)
    assert (await client.post(url, headers=gig.owner.headers)).status_code == 403
    # Other workers and clients do not even learn the bid exists.
    assert (await client.post(url, headers=gig.rival.headers)).status_code == 404
    assert (await client.post(url, headers=other_client.headers)).status_code == 404
    assert (await client.post(url)).status_code == 401
    # A bid id under another project is not found there.
    elsewhere = await client.post(
        f"{other.url}/bids/{gig.bid['id']}/withdraw", headers=gig.worker.headers
    )
    assert elsewhere.status_code == 404
    assert await row_counts(db) == before


# --- listing


async def test_the_client_sees_every_bid_and_a_worker_only_their_own(
    client: httpx.AsyncClient,
) -> None:
    gig = await open_gig(client)
    other_client = await register(client, role="client")
    onlooker = await register(client, role="worker")
    url = f"{gig.url}/bids"

    owner_view = (await client.get(url, headers=gig.owner.headers)).json()["data"]
    assert [b["id"] for b in owner_view["items"]] == [gig.rival_bid["id"], gig.bid["id"]]
    worker_view = (await client.get(url, headers=gig.worker.headers)).json()["data"]
    assert [b["id"] for b in worker_view["items"]] == [gig.bid["id"]]
    assert worker_view["items"][0]["proposal"] == gig.bid["proposal"]
    onlooker_view = (await client.get(url, headers=onlooker.headers)).json()["data"]
    assert onlooker_view == {"items": [], "nextCursor": None}
    assert (await client.get(url, headers=other_client.headers)).status_code == 403
    assert (await client.get(url)).status_code == 401


async def test_bids_page_with_a_cursor(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="client")
    project = await create_project(client, owner)
    bids = []
    for _ in range(5):
        worker = await register(client, role="worker")
        bids.append((await submit_bid(client, worker, project["id"]))["id"])
    url = f"/api/projects/{project['id']}/bids"
    first = (await client.get(url, params={"limit": 3}, headers=owner.headers)).json()["data"]
    second = (
        await client.get(
            url, params={"limit": 3, "cursor": first["nextCursor"]}, headers=owner.headers
        )
    ).json()["data"]
    assert [b["id"] for b in first["items"] + second["items"]] == list(reversed(bids))
    assert second["nextCursor"] is None


# --- accepting


async def test_accepting_a_bid_awards_the_project_and_rejects_the_rest_atomically(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    third = await register(client, role="worker")
    third_bid = await submit_bid(client, third, gig.project_id)
    response = await accept_bid(client, gig.owner, gig.project_id, gig.bid["id"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["bid"]["status"] == "accepted"
    assert data["rejectedBidIds"] == [gig.rival_bid["id"], third_bid["id"]]

    project = (await client.get(gig.url, headers=gig.owner.headers)).json()["data"]
    assert project["status"] == "awarded"
    assert project["workerId"] == str(gig.worker.id)
    assert project["acceptedBidId"] == gig.bid["id"]
    rows = await db.fetch("SELECT id, status FROM bids WHERE project_id = $1", gig.project_id)
    assert {str(r["id"]): r["status"] for r in rows} == {
        gig.bid["id"]: "accepted",
        gig.rival_bid["id"]: "rejected",
        third_bid["id"]: "rejected",
    }
    (event,) = await outbox_events(db, event_type="bid.accepted", key=gig.project_id)
    assert event["actor_id"] == str(gig.owner.id)
    assert event["data"] == {
        "bid_id": gig.bid["id"],
        "project_id": str(gig.project_id),
        "client_id": str(gig.owner.id),
        "worker_id": str(gig.worker.id),
        "amount_cents": 120_000,
        "currency": "USD",
        "delivery_days": 14,
        "rejected_bid_ids": [gig.rival_bid["id"], third_bid["id"]],
    }


async def test_two_accepts_at_once_award_the_project_exactly_once(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    first, second = await asyncio.gather(
        accept_bid(client, gig.owner, gig.project_id, gig.bid["id"]),
        accept_bid(client, gig.owner, gig.project_id, gig.rival_bid["id"]),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    loser = first if first.status_code == 409 else second
    assert loser.json()["error"]["details"] == {"currentStatus": "awarded"}
    winner = (first if first.status_code == 200 else second).json()["data"]["bid"]
    accepted = await db.fetch(
        "SELECT id FROM bids WHERE project_id = $1 AND status = 'accepted'",
        gig.project_id,
    )
    assert [str(r["id"]) for r in accepted] == [winner["id"]]
    assert len(await outbox_events(db, event_type="bid.accepted", key=gig.project_id)) == 1
    worker_id = await db.fetchval("SELECT worker_id FROM projects WHERE id = $1", gig.project_id)
    assert str(worker_id) == winner["workerId"]


async def test_accepting_a_bid_racing_its_withdrawal_leaves_one_outcome(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    accept, withdraw = await asyncio.gather(
        accept_bid(client, gig.owner, gig.project_id, gig.bid["id"]),
        client.post(f"{gig.url}/bids/{gig.bid['id']}/withdraw", headers=gig.worker.headers),
    )
    assert sorted([accept.status_code, withdraw.status_code]) == [200, 409]
    bid_status = await db.fetchval(
        "SELECT status FROM bids WHERE id = $1", uuid.UUID(gig.bid["id"])
    )
    expected = ("accepted", "awarded") if accept.status_code == 200 else ("withdrawn", "open")
    assert (bid_status, await project_status(db, gig.project_id)) == expected


async def test_a_bid_racing_the_accept_never_stays_pending_on_an_awarded_project(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    latecomer = await register(client, role="worker")
    accept, late = await asyncio.gather(
        accept_bid(client, gig.owner, gig.project_id, gig.bid["id"]),
        client.post(f"{gig.url}/bids", json=bid_body(), headers=latecomer.headers),
    )
    assert accept.status_code == 200, accept.text
    # Either the bid got in first and the accept rejected it, or it came after, when the
    # project had left the public board: the same 404 as for no project at all, to a worker
    # with no bid on it (api/projects/access.py). Only the late bid may answer 404.
    if late.status_code == 201:
        assert late.json()["data"]["id"] in accept.json()["data"]["rejectedBidIds"]
    else:
        error = late.json()["error"]
        assert (late.status_code, error["message"]) == (404, "project not found"), late.text
    pending = await db.fetchval(
        "SELECT count(*) FROM bids WHERE project_id = $1 AND status = 'pending'",
        gig.project_id,
    )
    assert pending == 0


async def test_only_the_owner_accepts_and_only_pending_bids_of_open_projects(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gig = await open_gig(client)
    other = await open_gig(client)
    other_client = await register(client, role="client")
    before = await row_counts(db)
    for account in (other_client, gig.worker, gig.rival):
        response = await accept_bid(client, account, gig.project_id, gig.bid["id"])
        assert response.status_code == 403, account.role
    anonymous = await client.post(f"{gig.url}/bids/{gig.bid['id']}/accept")
    assert anonymous.status_code == 401
    unknown = await accept_bid(client, gig.owner, gig.project_id, str(uuid.uuid4()))
    assert unknown.status_code == 404
    malformed = await client.post(f"{gig.url}/bids/nope/accept", headers=gig.owner.headers)
    assert malformed.status_code == 422
    assert error_fields(malformed) == ["path.bid_id"]
    foreign = await accept_bid(client, gig.owner, gig.project_id, other.bid["id"])
    assert foreign.status_code == 404
    assert await row_counts(db) == before

    await client.post(f"{gig.url}/bids/{gig.rival_bid['id']}/withdraw", headers=gig.rival.headers)
    withdrawn = await accept_bid(client, gig.owner, gig.project_id, gig.rival_bid["id"])
    assert withdrawn.status_code == 409
    assert withdrawn.json()["error"]["details"] == {"currentStatus": "withdrawn"}
    assert await project_status(db, gig.project_id) == "open"
