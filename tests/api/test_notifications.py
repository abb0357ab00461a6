"""`GET /api/notifications`: the caller's in-app notifications, newest first, and read marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from api.state import AppState
from tables.notifications import add_notification
from tests.api.conftest import register


def _mongo(app: FastAPI) -> AppState:
    state: AppState = app.state.tulifo
    return state


async def _notify(
    app: FastAPI, user_id: str, n: int, *, start: datetime, step: timedelta = timedelta(seconds=1)
) -> list[str]:
    ids = []
    for i in range(n):
        document_id = f"{user_id}-{i}:test"
        await add_notification(
            _mongo(app).mongo,
            {
                "_id": document_id,
                "userId": user_id,
                "type": "test",
                "title": f"note {i}",
                "body": "",
                "read": False,
                "createdAt": start + step * i,
            },
        )
        ids.append(document_id)
    return ids


async def test_a_user_pages_through_their_notifications_newest_first(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client, role="client")
    ids = await _notify(app, str(ann.id), 5, start=datetime.now(UTC))

    first = await client.get("/api/notifications?limit=3", headers=ann.headers)
    assert first.status_code == 200
    page = first.json()["data"]
    assert [item["id"] for item in page["items"]] == ids[::-1][:3]
    assert page["unreadCount"] == 5
    assert page["nextBefore"] is not None

    second = await client.get(
        "/api/notifications", params={"limit": 3, "before": page["nextBefore"]}, headers=ann.headers
    )
    rest = second.json()["data"]
    assert [item["id"] for item in rest["items"]] == ids[::-1][3:]
    assert rest["nextBefore"] is None


async def test_marking_read_changes_only_the_callers_own_notification(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client, role="client")
    bob = await register(client, role="worker")
    (ann_note,) = await _notify(app, str(ann.id), 1, start=datetime.now(UTC))

    stolen = await client.post(f"/api/notifications/{ann_note}/read", headers=bob.headers)
    assert stolen.status_code == 404

    marked = await client.post(f"/api/notifications/{ann_note}/read", headers=ann.headers)
    assert marked.status_code == 200
    unread = await client.get("/api/notifications?unreadOnly=true", headers=ann.headers)
    assert unread.json()["data"] == {
        "items": [],
        "unreadCount": 0,
        "nextCursor": None,
        "nextBefore": None,
    }


async def test_pages_of_one_never_skip_notifications_made_in_the_same_millisecond(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client, role="worker")
    # One event tells many users at one `occurredAt`, and a burst of events shares a millisecond.
    same = datetime.now(UTC).replace(microsecond=123_000)
    ids = await _notify(app, str(ann.id), 4, start=same, step=timedelta(0))

    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 1}
    for _ in range(10):
        page = (await client.get("/api/notifications", params=params, headers=ann.headers)).json()
        seen += [item["id"] for item in page["data"]["items"]]
        if page["data"]["nextCursor"] is None:
            break
        params = {"limit": 1, "cursor": page["data"]["nextCursor"]}

    assert sorted(seen) == sorted(ids)
    assert len(seen) == 4


async def test_the_unread_count_follows_reading_one_and_reading_all(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client, role="client")
    ids = await _notify(app, str(ann.id), 3, start=datetime.now(UTC))

    async def unread() -> int:
        response = await client.get("/api/notifications/unread-count", headers=ann.headers)
        assert response.status_code == 200
        count: int = response.json()["data"]["unreadCount"]
        return count

    assert await unread() == 3
    await client.post(f"/api/notifications/{ids[0]}/read", headers=ann.headers)
    assert await unread() == 2
    marked = await client.post("/api/notifications/read-all", headers=ann.headers)
    assert marked.json()["data"] == {"marked": 2}
    assert await unread() == 0


async def test_a_cursor_we_did_not_issue_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    ann = await register(client, role="client")
    response = await client.get(
        "/api/notifications", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=ann.headers
    )
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["cursor"]


async def test_notifications_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/notifications")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_an_absurd_page_size_is_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    ann = await register(client, role="client")
    response = await client.get("/api/notifications?limit=100000", headers=ann.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "query.limit"


async def test_channel_and_per_kind_choices_are_kept_in_the_users_settings(
    client: httpx.AsyncClient,
) -> None:
    ann = await register(client, role="worker")
    response = await client.patch(
        "/api/users/me/settings",
        json={
            "notifications": {
                "channels": {"push": False},
                "types": {"bid_accepted": {"email": False}},
            }
        },
        headers=ann.headers,
    )
    assert response.status_code == 200, response.text
    notifications = response.json()["data"]["notifications"]
    assert notifications["channels"] == {"email": True, "push": False, "inApp": True}
    assert notifications["types"] == {"bid_accepted": {"email": False, "push": None, "inApp": None}}
    assert notifications["bids"] == {"email": True, "push": True, "inApp": True}

    unknown = await client.patch(
        "/api/users/me/settings",
        json={"notifications": {"types": {"fax_received": {"email": True}}}},
        headers=ann.headers,
    )
    assert unknown.status_code == 422
