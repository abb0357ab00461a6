"""GET/PUT/PATCH /api/users/me/settings: defaults, deep merge, validation."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.conftest import error_fields, outbox_events, register

SETTINGS = "/api/users/me/settings"


async def test_a_new_user_has_the_default_settings(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.get(SETTINGS, headers=account.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["privacy"] == {"profileVisibility": "public", "showEmail": False}
    assert data["preferences"] == {"language": "en", "timezone": "UTC"}
    assert data["notifications"]["messages"] == {"email": True, "push": True, "inApp": True}
    # Marketing is opt-in.
    assert data["notifications"]["marketing"] == {"email": False, "push": False, "inApp": False}


async def test_an_update_merges_into_what_is_stored(client: httpx.AsyncClient) -> None:
    account = await register(client)
    await client.put(
        SETTINGS, json={"preferences": {"timezone": "Europe/Paris"}}, headers=account.headers
    )
    response = await client.patch(
        SETTINGS,
        json={"privacy": {"showEmail": True}, "notifications": {"bids": {"push": False}}},
        headers=account.headers,
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["privacy"] == {"profileVisibility": "public", "showEmail": True}
    assert data["preferences"] == {"language": "en", "timezone": "Europe/Paris"}
    assert data["notifications"]["bids"] == {"email": True, "push": False, "inApp": True}
    assert (await client.get(SETTINGS, headers=account.headers)).json()["data"] == data


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"preferences": {"timezone": "Mars/Olympus_Mons"}}, "preferences.timezone"),
        ({"preferences": {"timezone": "../../etc/passwd"}}, "preferences.timezone"),
        ({"preferences": {"language": "english"}}, "preferences.language"),
        ({"privacy": {"profileVisibility": "friends"}}, "privacy.profileVisibility"),
        ({"privacy": {"showEmail": "sometimes"}}, "privacy.showEmail"),
        ({"privacy": None}, "privacy"),
        ({"notifications": {"sms": {"email": True}}}, "notifications.sms"),
        ({"notifications": {"bids": {"fax": True}}}, "notifications.bids.fax"),
        ({"theme": "dark"}, "theme"),
    ],
)
async def test_invalid_settings_name_the_field_at_fault(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    account = await register(client)
    response = await client.put(SETTINGS, json=body, headers=account.headers)
    assert response.status_code == 422
    assert error_fields(response) == [field]


async def test_going_private_tells_the_stream_side(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="worker")
    private = {"privacy": {"profileVisibility": "private"}}
    await client.put(SETTINGS, json=private, headers=account.headers)
    await client.put(SETTINGS, json=private, headers=account.headers)  # no change, no event
    await client.put(SETTINGS, json={"privacy": {"showEmail": True}}, headers=account.headers)

    (event,) = await outbox_events(db, event_type="profile.updated", key=account.id)
    assert event["data"]["changed"] == ["profile_visibility"]
    assert event["data"]["profile"] == {"profile_visibility": "private"}


async def test_settings_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    assert (await client.get(SETTINGS)).status_code == 401
    assert (await client.put(SETTINGS, json={})).status_code == 401
