"""Factories for API tests: accounts, tokens, outbox reads, and a client with its own IP."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from infrastructure.settings import Settings
from tests.conftest import APP_LIFESPAN_S

PASSWORD = "correct horse battery"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The root `client`, but speaking from an address of its own: the per-IP login limit is
    shared by the whole session's Redis, and tests must not throttle each other."""
    async with client_from(app, ip=unique_ip()) as c:
        yield c


def client_from(app: FastAPI, *, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def api_of_its_own(settings: Settings) -> AsyncIterator[FastAPI]:
    """A second API, on other settings, started and stopped inside the session's."""
    from api.app import create_app

    application = create_app(settings)
    async with LifespanManager(
        application, startup_timeout=APP_LIFESPAN_S, shutdown_timeout=APP_LIFESPAN_S
    ):
        yield application


def unique_ip() -> str:
    b = uuid.uuid4().bytes
    return f"10.{b[0]}.{b[1]}.{b[2]}"


def unique_email(prefix: str = "user") -> str:
    """The database lives for the whole session: every test makes its own addresses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    password: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def register(
    client: httpx.AsyncClient,
    *,
    role: str = "worker",
    email: str | None = None,
    password: str = PASSWORD,
    name: str = "Ann Example",
) -> Account:
    """Register through the API and return the new account with its tokens."""
    email = email or unique_email(role)
    response = await client.post(
        "/api/auth/register",
        json={"email": email, "password": password, "name": name, "role": role},
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return Account(
        id=uuid.UUID(data["user"]["id"]),
        email=email,
        password=password,
        role=role,
        access_token=data["accessToken"],
        refresh_token=data["refreshToken"],
    )


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def outbox_events(
    db: asyncpg.Connection, *, event_type: str, key: uuid.UUID | str
) -> list[dict[str, Any]]:
    """The envelopes the write side appended for one aggregate, oldest first."""
    rows = await db.fetch(
        "SELECT payload FROM outbox WHERE event_type = $1 AND key = $2 ORDER BY id",
        event_type,
        str(key),
    )
    return [json.loads(row["payload"]) for row in rows]


def error_fields(response: httpx.Response) -> list[str]:
    """The fields named by a 422's details."""
    return [detail["field"] for detail in response.json()["error"]["details"]]


# --- Stripe: localstripe for the whole session ------------------------------------------------


@pytest.fixture(scope="session")
def settings(settings: Settings, localstripe_url: str) -> Settings:
    """The session's settings with Stripe pointed at localstripe: the API's Stripe client
    honours `stripe_api_base`, so no test ever reaches api.stripe.com."""
    return settings.model_copy(update={"stripe_api_base": localstripe_url})


@pytest.fixture(scope="session")
def webhook_secret(settings: Settings) -> str:
    return settings.stripe_webhook_secret.get_secret_value()
