"""POST /api/auth/login: credentials, one answer for every failure, and throttling."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import asyncpg
import bcrypt
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from api.auth import passwords
from api.auth.rate_limit import LoginLimits, count_login_attempt
from api.errors import ServiceUnavailable
from infrastructure.settings import Settings
from tests.api.bcrypt_support import stalled_bcrypt_checks
from tests.api.conftest import (
    api_of_its_own,
    client_from,
    error_fields,
    login,
    register,
    unique_email,
    unique_ip,
)


@pytest.fixture
def bcrypt_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Counts bcrypt verifications, to see which answers paid for one."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


async def test_signing_in_returns_the_user_and_a_token_pair(client: httpx.AsyncClient) -> None:
    account = await register(client, role="client")
    response = await login(client, account.email, account.password)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["user"]["id"] == str(account.id)
    assert data["user"]["role"] == "client"
    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {data['accessToken']}"}
    )
    assert me.status_code == 200
    refreshed = await client.post("/api/auth/refresh", json={"refreshToken": data["refreshToken"]})
    assert refreshed.status_code == 200


async def test_the_email_matches_in_any_case(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await login(client, account.email.upper(), account.password)
    assert response.status_code == 200


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    wrong_password = await login(client, account.email, "not the password")
    unknown_email = await login(client, unique_email("nobody"), "not the password")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error"]["code"] == "UNAUTHORIZED"


async def test_an_unknown_email_still_costs_one_bcrypt_check(
    client: httpx.AsyncClient, bcrypt_checks: list[bytes]
) -> None:
    response = await login(client, unique_email("nobody"), "whatever password")
    assert response.status_code == 401
    assert len(bcrypt_checks) == 1


async def test_a_deactivated_account_cannot_sign_in(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client)
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", account.id)
    response = await login(client, account.email, account.password)
    assert response.status_code == 401


async def test_missing_credentials_are_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"email": "a@b.io"})
    assert response.status_code == 422
    assert error_fields(response) == ["password"]


async def test_attempts_past_the_per_email_limit_are_refused_without_checking_the_password(
    client: httpx.AsyncClient, settings: Settings, bcrypt_checks: list[bytes]
) -> None:
    account = await register(client)
    for _ in range(settings.login_max_per_email):
        assert (await login(client, account.email, "wrong password")).status_code == 401
    checks_before = len(bcrypt_checks)

    # Even the right password: once throttled, the password is not looked at.
    response = await login(client, account.email.upper(), account.password)

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_window_seconds
    assert response.json()["error"]["details"]["retryAfter"] == retry_after
    assert len(bcrypt_checks) == checks_before


async def test_the_per_email_limit_follows_the_email_across_addresses(
    client: httpx.AsyncClient, settings: Settings, app: FastAPI
) -> None:
    account = await register(client)
    for _ in range(settings.login_max_per_email):
        await login(client, account.email, "wrong password")
    async with client_from(app, ip=unique_ip()) as elsewhere:
        response = await login(elsewhere, account.email, account.password)
    assert response.status_code == 429


async def test_attempts_past_the_per_ip_limit_are_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    for _ in range(settings.login_max_per_ip):
        response = await login(client, unique_email("spray"), "password guess")
        assert response.status_code == 401
    account = await register(client)

    response = await login(client, account.email, account.password)

    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= settings.login_window_seconds


async def test_a_successful_sign_in_clears_the_emails_failed_attempts(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    for _ in range(settings.login_max_per_email - 1):
        await login(client, account.email, "wrong password")
    assert (await login(client, account.email, account.password)).status_code == 200
    # Without the reset, the next attempt would be past the limit.
    for _ in range(settings.login_max_per_email):
        assert (await login(client, account.email, "wrong password")).status_code == 401


async def test_without_redis_sign_in_fails_closed() -> None:
    # Nothing listens on port 1: the limiter cannot count, so nobody gets to guess.
    unreachable = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    limits = LoginLimits(max_per_email=5, max_per_ip=20, window_seconds=60)
    try:
        with pytest.raises(ServiceUnavailable):
            await count_login_attempt(unreachable, email="a@b.io", ip="10.0.0.1", limits=limits)
    finally:
        await unreachable.aclose()


async def test_a_login_past_the_bcrypt_queue_gets_503_and_uses_none_of_the_accounts_attempts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_waiting = settings.model_copy(update={"bcrypt_queue_per_thread": 0})
    async with api_of_its_own(no_waiting) as app, client_from(app, ip=unique_ip()) as client:
        account = await register(client)
        holders = [await register(client) for _ in range(passwords.WORKERS)]
        async with AsyncExitStack() as others:
            with stalled_bcrypt_checks(monkeypatch) as stalled:
                # Every bcrypt thread busy with someone else's login, each from its own address.
                in_flight = []
                for holder in holders:
                    elsewhere = await others.enter_async_context(client_from(app, ip=unique_ip()))
                    in_flight.append(
                        asyncio.create_task(login(elsewhere, holder.email, holder.password))
                    )
                await stalled.wait_until_running(passwords.WORKERS)

                refused = [
                    await login(client, account.email, account.password)
                    for _ in range(settings.login_max_per_email + 1)
                ]

                stalled.release.set()
                answered = await asyncio.gather(*in_flight)

        assert [r.status_code for r in refused] == [503] * len(refused)
        error = refused[0].json()["error"]
        assert error["code"] == "SERVICE_UNAVAILABLE"
        assert error["details"]["retryAfter"] == int(refused[0].headers["Retry-After"]) >= 1
        assert [r.status_code for r in answered] == [200] * len(holders)
        # More refusals than the per-email limit, yet the account signs in: none was counted.
        assert (await login(client, account.email, account.password)).status_code == 200
