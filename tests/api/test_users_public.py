"""GET /api/users/{id}: workers' public profiles, and everything that must stay hidden."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.api.conftest import Account, register


async def _public(client: httpx.AsyncClient, user_id: uuid.UUID | str) -> httpx.Response:
    return await client.get(f"/api/users/{user_id}")


async def _set_privacy(client: httpx.AsyncClient, account: Account, **privacy: object) -> None:
    response = await client.put(
        "/api/users/me/settings", json={"privacy": privacy}, headers=account.headers
    )
    assert response.status_code == 200


async def test_anyone_can_read_a_public_worker_profile_without_the_email(
    client: httpx.AsyncClient,
) -> None:
    worker = await register(client, role="worker", name="Pat Public")
    await client.put(
        "/api/users/me/profile",
        json={"headline": "Data engineer", "skills": ["SQL"], "hourlyRateCents": 8000},
        headers=worker.headers,
    )
    response = await _public(client, worker.id)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["userId"] == str(worker.id)
    assert data["name"] == "Pat Public"
    assert data["headline"] == "Data engineer"
    assert data["skills"] == ["SQL"]
    assert data["hourlyRateCents"] == 8000
    assert "memberSince" in data
    assert data["email"] is None
    assert worker.email not in response.text


async def test_the_email_shows_only_when_the_worker_chose_so(client: httpx.AsyncClient) -> None:
    worker = await register(client, role="worker")
    await _set_privacy(client, worker, showEmail=True)
    assert (await _public(client, worker.id)).json()["data"]["email"] == worker.email


async def test_a_private_profile_answers_like_a_missing_one(client: httpx.AsyncClient) -> None:
    worker = await register(client, role="worker")
    await _set_privacy(client, worker, profileVisibility="private", showEmail=True)
    private = await _public(client, worker.id)
    missing = await _public(client, uuid.uuid4())
    assert private.status_code == missing.status_code == 404
    assert private.json() == missing.json()
    # Its owner still sees it.
    own = await client.get("/api/users/me/profile", headers=worker.headers)
    assert own.status_code == 200


async def test_a_private_profile_stays_hidden_from_other_signed_in_users(
    client: httpx.AsyncClient,
) -> None:
    worker = await register(client, role="worker")
    other = await register(client, role="client")
    await _set_privacy(client, worker, profileVisibility="private")
    response = await client.get(f"/api/users/{worker.id}", headers=other.headers)
    assert response.status_code == 404


async def test_clients_have_no_public_profile(client: httpx.AsyncClient) -> None:
    account = await register(client, role="client")
    assert (await _public(client, account.id)).status_code == 404


async def test_a_deactivated_worker_has_no_public_profile(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    worker = await register(client, role="worker")
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", worker.id)
    assert (await _public(client, worker.id)).status_code == 404


async def test_a_malformed_id_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await _public(client, "not-a-uuid")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "path.user_id"
