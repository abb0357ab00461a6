"""GET/PUT/PATCH /api/users/me/profile: merge updates, validation, roles, `profile.updated`."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.conftest import Account, error_fields, outbox_events, register

PROFILE = "/api/users/me/profile"


async def _update(client: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> Any:
    response = await client.put(PROFILE, json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_a_new_workers_profile_is_empty_with_sane_defaults(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client, role="worker", name="Wes")
    response = await client.get(PROFILE, headers=account.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["userId"] == str(account.id)
    assert data["role"] == "worker"
    assert data["name"] == "Wes"
    assert data["skills"] == []
    assert data["currency"] == "USD"
    assert data["availability"] == "available"
    assert data["hourlyRateCents"] is None
    assert data["ratingCount"] == 0
    assert "companyName" not in data


async def test_a_new_clients_profile_has_the_client_fields_only(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client, role="client")
    data = (await client.get(PROFILE, headers=account.headers)).json()["data"]
    assert data["role"] == "client"
    assert data["companyName"] == ""
    assert data["website"] is None
    assert "headline" not in data


async def test_a_worker_fills_in_the_whole_profile(client: httpx.AsyncClient) -> None:
    account = await register(client, role="worker")
    body = {
        "bio": "  I build backends.  ",
        "skills": [" Python ", "python", "Kafka", "PYTHON", "SQL"],
        "experience": [
            {
                "title": "Engineer",
                "company": "Acme",
                "from": "2019-03-01",
                "to": "2023-06-30",
                "description": "Streams.",
            },
            {"title": "Lead", "from": "2023-07-01"},
        ],
        "location": "Lisbon",
        "avatarUrl": "https://cdn.example.com/me.png",
        "portfolio": [{"title": "Tulifo", "url": "https://example.com/tulifo"}],
        "socialLinks": {"github": "https://github.com/wes"},
        "headline": "Python & Kafka",
        "hourlyRateCents": 9_500,
        "currency": "eur",
        "availability": "busy",
    }
    data = await _update(client, account, body)
    assert data["bio"] == "I build backends."
    # Stripped, de-duplicated regardless of case, first spelling and order kept.
    assert data["skills"] == ["Python", "Kafka", "SQL"]
    assert data["experience"][0]["from"] == "2019-03-01"
    assert data["experience"][1]["to"] is None
    assert data["currency"] == "EUR"
    assert data["hourlyRateCents"] == 9_500
    assert data["socialLinks"] == {"github": "https://github.com/wes"}
    again = (await client.get(PROFILE, headers=account.headers)).json()["data"]
    assert again == data


async def test_a_client_sets_company_and_website(client: httpx.AsyncClient) -> None:
    account = await register(client, role="client")
    data = await _update(
        client, account, {"companyName": "Acme Ltd", "website": "https://acme.example"}
    )
    assert data["companyName"] == "Acme Ltd"
    assert data["website"].startswith("https://acme.example")
    # The answer is built from the locked row and the changes: it must read back the same.
    again = (await client.get(PROFILE, headers=account.headers)).json()["data"]
    assert again == data


async def test_fields_left_out_keep_their_value_and_null_clears_a_nullable_one(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client, role="worker")
    await _update(client, account, {"bio": "Kept", "avatarUrl": "https://x.example/a.png"})
    response = await client.patch(
        PROFILE, json={"location": "Oslo", "avatarUrl": None}, headers=account.headers
    )
    data = response.json()["data"]
    assert (data["bio"], data["location"], data["avatarUrl"]) == ("Kept", "Oslo", None)


async def test_an_update_writes_profile_updated_with_only_what_changed(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="worker")
    await _update(client, account, {"bio": "Same", "skills": ["Go"]})
    await _update(client, account, {"bio": "Same", "skills": ["Go", "Rust"], "hourlyRateCents": 1})

    first, second = await outbox_events(db, event_type="profile.updated", key=account.id)
    assert first["data"]["changed"] == ["bio", "skills"]
    assert second["data"] == {
        "user_id": str(account.id),
        "role": "worker",
        "changed": ["skills", "hourly_rate_cents"],
        "profile": {"skills": ["Go", "Rust"], "hourly_rate_cents": 1},
    }


async def test_an_update_that_changes_nothing_writes_no_event(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="worker")
    body: dict[str, Any] = {
        "skills": ["Go"],
        "experience": [{"title": "Dev", "from": "2020-01-01"}],
        "socialLinks": {"x": "https://x.com/dev", "github": "https://github.com/dev"},
    }
    await _update(client, account, body)
    await _update(client, account, body)
    # Equal once normalised: the same skill spelled twice, the same links in another order.
    await _update(
        client,
        account,
        {
            "skills": [" Go ", "go"],
            "socialLinks": {"github": "https://github.com/dev", "x": "https://x.com/dev"},
        },
    )
    events = await outbox_events(db, event_type="profile.updated", key=account.id)
    assert [e["data"]["changed"] for e in events] == [["skills", "experience", "social_links"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bio": "b" * 5001}, "bio"),
        ({"bio": None}, "bio"),
        ({"skills": [f"s{i}" for i in range(51)]}, "skills"),
        ({"skills": ["x" * 51]}, "skills.0"),
        ({"skills": ["  "]}, "skills.0"),
        ({"avatarUrl": "javascript:alert(1)"}, "avatarUrl"),
        ({"avatarUrl": "ftp://files.example/a.png"}, "avatarUrl"),
        ({"hourlyRateCents": -1}, "hourlyRateCents"),
        ({"hourlyRateCents": 1_000_001}, "hourlyRateCents"),
        ({"hourlyRateCents": 12.5}, "hourlyRateCents"),
        ({"currency": "US"}, "currency"),
        ({"currency": "US$"}, "currency"),
        ({"availability": "sometimes"}, "availability"),
        ({"socialLinks": {"myspace": "https://myspace.com/me"}}, "socialLinks.myspace.[key]"),
        ({"socialLinks": {"github": "not a url"}}, "socialLinks.github"),
        (
            {"experience": [{"title": "Dev", "from": "2020-01-01", "to": "2019-01-01"}]},
            "experience.0",
        ),
        ({"experience": [{"title": "Dev"}]}, "experience.0.from"),
        ({"portfolio": [{"title": "P", "url": "https://e.x", "extra": 1}]}, "portfolio.0.extra"),
        ({"role": "admin"}, "role"),
        ({"email": "me@example.com"}, "email"),
    ],
)
async def test_invalid_profile_updates_name_the_field_at_fault(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    account = await register(client, role="worker")
    response = await client.put(PROFILE, json=body, headers=account.headers)
    assert response.status_code == 422
    assert error_fields(response) == [field]


async def test_a_client_cannot_set_worker_fields(client: httpx.AsyncClient) -> None:
    account = await register(client, role="client")
    response = await client.put(
        PROFILE, json={"headline": "Hire me", "bio": "x"}, headers=account.headers
    )
    assert response.status_code == 422
    assert error_fields(response) == ["headline"]
    assert (await client.get(PROFILE, headers=account.headers)).json()["data"]["bio"] == ""


async def test_a_worker_cannot_set_client_fields(client: httpx.AsyncClient) -> None:
    account = await register(client, role="worker")
    response = await client.put(PROFILE, json={"companyName": "Acme"}, headers=account.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["companyName"]


async def test_the_profile_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    assert (await client.get(PROFILE)).status_code == 401
    assert (await client.put(PROFILE, json={"bio": "x"})).status_code == 401


async def test_no_route_lets_a_user_write_someone_elses_profile(
    client: httpx.AsyncClient,
) -> None:
    victim = await register(client, role="worker")
    attacker = await register(client, role="worker")
    attempts = [
        await client.put(
            f"/api/users/{victim.id}/profile", json={"bio": "pwned"}, headers=attacker.headers
        ),
        await client.put(
            f"/api/users/{victim.id}", json={"bio": "pwned"}, headers=attacker.headers
        ),
        await client.patch(
            f"/api/users/{victim.id}", json={"bio": "pwned"}, headers=attacker.headers
        ),
    ]
    assert [r.status_code for r in attempts] == [404, 405, 405]
    # "me" is the token's user, whatever the body says.
    smuggled = await client.put(
        PROFILE, json={"userId": str(victim.id), "bio": "pwned"}, headers=attacker.headers
    )
    assert smuggled.status_code == 422
    victims_profile = (await client.get(PROFILE, headers=victim.headers)).json()["data"]
    assert victims_profile["bio"] == ""


async def test_a_user_renames_themselves_and_the_display_name_follows(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="client", name="Ann Example")
    renamed = await _update(client, account, {"lastName": "Lee Smith"})
    assert (renamed["firstName"], renamed["lastName"], renamed["name"]) == (
        "Ann",
        "Lee Smith",
        "Ann Lee Smith",
    )
    me = (await client.get("/api/auth/me", headers=account.headers)).json()["data"]
    assert (me["name"], me["lastName"]) == ("Ann Lee Smith", "Lee Smith")
    assert (await client.get(PROFILE, headers=account.headers)).json()["data"] == renamed
    [event] = await outbox_events(db, event_type="profile.updated", key=account.id)
    assert event["data"]["profile"] == {"last_name": "Lee Smith", "name": "Ann Lee Smith"}

    refused = await client.put(PROFILE, json={"firstName": " "}, headers=account.headers)
    assert refused.status_code == 422
    assert error_fields(refused) == ["firstName"]


async def test_concurrent_writes_record_exactly_the_changes_in_the_order_they_were_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="worker")
    # Writers racing on one column, half of them writing what another just wrote: a write that
    # changes nothing must record nothing, which only holds if each compares with what it
    # replaces, not with a read gone stale meanwhile.
    bios = ["A", "B"] * 8

    await asyncio.gather(*(_update(client, account, {"bio": bio}) for bio in bios))

    events = await outbox_events(db, event_type="profile.updated", key=account.id)
    written = [event["data"]["profile"]["bio"] for event in events]
    sequences = [event["sequence"] for event in events]
    # Numbered without a gap, after the account's own earlier events.
    assert sequences == list(range(sequences[0], sequences[0] + len(events)))
    assert all(event["data"]["changed"] == ["bio"] for event in events)
    # Each event changed the value the one before it left.
    assert all(earlier != later for earlier, later in zip(["", *written], written, strict=False))
    stored = await db.fetchval("SELECT bio FROM user_profiles WHERE user_id = $1", account.id)
    assert written[-1] == stored
