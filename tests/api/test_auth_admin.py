"""api.auth.admin.create_admin: the only way to an admin account."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.auth.admin import create_admin
from api.errors import Invalid
from tests.api.conftest import PASSWORD, login, outbox_events, register, unique_email


def _pool(app: FastAPI) -> asyncpg.Pool:
    pool: asyncpg.Pool = app.state.tulifo.pool
    return pool


async def test_create_admin_makes_an_account_that_signs_in_as_admin(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    email = unique_email("admin")
    user_id = await create_admin(
        pool=_pool(app), email=email, password=PASSWORD, name="Ada Admin", rounds=4
    )
    response = await login(client, email, PASSWORD)
    assert response.status_code == 200
    assert response.json()["data"]["user"] == {
        **response.json()["data"]["user"],
        "id": str(user_id),
        "role": "admin",
        "name": "Ada Admin",
    }
    me = await client.get(
        "/api/auth/me",
        headers={"Authorization": f"Bearer {response.json()['data']['accessToken']}"},
    )
    assert me.json()["data"]["role"] == "admin"
    (event,) = await outbox_events(db, event_type="user.registered", key=user_id)
    assert event["data"]["role"] == "admin"
    assert await db.fetchval("SELECT count(*) FROM user_profiles WHERE user_id = $1", user_id) == 1


async def test_create_admin_promotes_an_existing_account_and_keeps_its_password(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client, role="worker")
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", account.id)

    user_id = await create_admin(
        pool=_pool(app),
        email=account.email.upper(),
        password="a different password",
        name="Ignored",
        rounds=4,
    )

    assert user_id == account.id
    row = await db.fetchrow("SELECT role, is_active, name FROM users WHERE id = $1", user_id)
    assert (row["role"], row["is_active"], row["name"]) == ("admin", True, "Ann Example")
    assert (await login(client, account.email, account.password)).status_code == 200


@pytest.mark.parametrize(
    ("email", "password", "name", "field"),
    [
        ("not-an-email", PASSWORD, "Ada", "email"),
        (None, "short", "Ada", "password"),
        (None, PASSWORD, "  ", "name"),
    ],
)
async def test_create_admin_applies_the_registration_rules(
    app: FastAPI, email: str | None, password: str, name: str, field: str
) -> None:
    with pytest.raises(Invalid) as caught:
        await create_admin(
            pool=_pool(app),
            email=email or unique_email("admin"),
            password=password,
            name=name,
            rounds=4,
        )
    assert caught.value.details[0]["field"] == field
