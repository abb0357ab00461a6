"""POST /api/auth/register: accounts, their rows and event, and every way to get it wrong."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.auth import passwords
from infrastructure.settings import Settings
from tests.api.bcrypt_support import stalled_bcrypt_checks
from tests.api.conftest import (
    PASSWORD,
    api_of_its_own,
    client_from,
    error_fields,
    login,
    outbox_events,
    register,
    unique_email,
    unique_ip,
)


async def test_registering_returns_the_user_and_a_token_pair(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.post(
        "/api/auth/register",
        json={"email": email, "password": PASSWORD, "name": "Ann", "role": "worker"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["user"]["email"] == email
    assert data["user"]["role"] == "worker"
    assert {"id", "name", "createdAt"} <= set(data["user"])
    assert data["tokenType"] == "Bearer"
    assert data["expiresIn"] == 900
    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {data['accessToken']}"}
    )
    assert me.json()["data"]["email"] == email


@pytest.mark.parametrize(
    ("role", "role_table"), [("worker", "worker_profiles"), ("client", "client_profiles")]
)
async def test_registration_creates_profile_settings_and_the_roles_own_row(
    client: httpx.AsyncClient, db: asyncpg.Connection, role: str, role_table: str
) -> None:
    account = await register(client, role=role)
    for table in ("user_profiles", "user_settings", role_table):
        count = await db.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", account.id)
        assert count == 1, table
    other = "client_profiles" if role == "worker" else "worker_profiles"
    assert await db.fetchval(f"SELECT count(*) FROM {other} WHERE user_id = $1", account.id) == 0


async def test_registration_writes_user_registered_to_the_outbox(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="client", name="Bo Client")
    (event,) = await outbox_events(db, event_type="user.registered", key=account.id)
    assert event["type"] == "user.registered"
    assert event["data"] == {
        "user_id": str(account.id),
        "email": account.email,
        "name": "Bo Client",
        "role": "client",
    }


async def test_the_password_is_stored_as_a_bcrypt_hash_at_the_configured_cost(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client)
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", account.id)
    assert stored.startswith("$2b$04$")  # the test settings' cost
    assert PASSWORD not in stored


async def test_the_name_is_stripped_and_the_email_kept_as_typed(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    email = unique_email("Mixed.Case")
    account = await register(client, email=email, name="  Ann Example  ")
    row = await db.fetchrow("SELECT email, name FROM users WHERE id = $1", account.id)
    assert row["email"] == email
    assert row["name"] == "Ann Example"


async def test_the_admin_role_cannot_be_chosen_at_registration(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": unique_email(), "password": PASSWORD, "name": "Eve", "role": "admin"},
    )
    assert response.status_code == 422
    assert error_fields(response) == ["role"]


async def test_an_email_taken_in_any_case_is_a_conflict(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    for variant in (email, email.upper()):
        response = await client.post(
            "/api/auth/register",
            json={"email": variant, "password": PASSWORD, "name": "Again", "role": "client"},
        )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "CONFLICT"


async def test_two_concurrent_registrations_of_one_email_make_one_account(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    email = unique_email()
    bodies = [
        {"email": variant, "password": PASSWORD, "name": "Racer", "role": "worker"}
        for variant in (email, email.upper())
    ]
    responses = await asyncio.gather(
        *(client.post("/api/auth/register", json=body) for body in bodies)
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    count = await db.fetchval("SELECT count(*) FROM users WHERE lower(email) = lower($1)", email)
    assert count == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        # 40 characters, 80 bytes: inside the character rule, past bcrypt's 72 bytes.
        ({"password": "é" * 40}, "password"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"role": "owner"}, "role"),
        ({"isAdmin": True}, "isAdmin"),
    ],
)
async def test_invalid_registrations_name_the_field_at_fault(
    client: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "name": "Ann", "role": "worker"}
    response = await client.post("/api/auth/register", json={**body, **change})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert error_fields(response) == [field]


async def test_a_password_over_bcrypts_72_bytes_is_refused_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    body = {"email": unique_email(), "password": "é" * 40, "name": "Ann", "role": "worker"}
    response = await client.post("/api/auth/register", json=body)
    assert "72 bytes" in response.json()["error"]["message"]


async def test_a_password_of_exactly_72_bytes_is_accepted(client: httpx.AsyncClient) -> None:
    account = await register(client, password="é" * 36)
    assert account.role == "worker"


async def test_missing_fields_are_each_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/register", json={})
    assert response.status_code == 422
    # A name is asked for as the seed does, in its first part (or the one-field `name`).
    assert sorted(error_fields(response)) == ["email", "firstName", "password", "role"]


async def test_a_nul_character_is_refused_naming_the_field_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/register",
        json={
            "email": unique_email(),
            "password": "correct horse battery",
            "name": "A\x00n",
            "role": "worker",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "name"


async def test_registrations_are_limited_per_client_ip_with_retry_after(
    settings: Settings, app: FastAPI
) -> None:
    strict = settings.model_copy(update={"register_max_per_ip": 2})
    async with (
        api_of_its_own(strict) as limited,
        client_from(limited, ip=unique_ip()) as client,
    ):
        for _ in range(2):
            await register(client, role="worker")
        refused = await client.post(
            "/api/auth/register",
            json={"email": unique_email(), "password": PASSWORD, "name": "Cy", "role": "worker"},
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert 0 < int(refused.headers["retry-after"]) <= strict.register_window_seconds

        async with client_from(limited, ip=unique_ip()) as elsewhere:
            await register(elsewhere, role="worker")


async def test_a_registration_past_the_bcrypt_queue_gets_503_and_is_not_counted(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for the accounts that hold the bcrypt threads, and one more registration.
    strict = settings.model_copy(
        update={"bcrypt_queue_per_thread": 0, "register_max_per_ip": passwords.WORKERS + 1}
    )
    body = {"email": unique_email(), "password": PASSWORD, "name": "Cy", "role": "worker"}
    async with api_of_its_own(strict) as app, client_from(app, ip=unique_ip()) as client:
        holders = [await register(client) for _ in range(passwords.WORKERS)]
        with stalled_bcrypt_checks(monkeypatch) as stalled:
            in_flight = [
                asyncio.create_task(login(client, holder.email, holder.password))
                for holder in holders
            ]
            await stalled.wait_until_running(passwords.WORKERS)

            refused = await client.post("/api/auth/register", json=body)

            stalled.release.set()
            await asyncio.gather(*in_flight)

        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        # The last registration the address has left: the refused one did not use it up.
        assert (await client.post("/api/auth/register", json=body)).status_code == 201
