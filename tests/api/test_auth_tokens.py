"""GET /api/auth/me and every way to present a token that must not work."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from infrastructure.settings import Settings
from tests.api.conftest import Account, bearer, register


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def _claims(account: Account, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": str(account.id),
        "role": account.role,
        "type": "access",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        # A session of its own: each forgery below is refused for its own defect, not this one.
        "sid": str(uuid.uuid4()),
    }
    return {**claims, **overrides}


def _access_secret(settings: Settings) -> str:
    return settings.jwt_access_secret.get_secret_value()


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/auth/me", headers=bearer(token))


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "UNAUTHORIZED"


async def test_me_describes_the_user_with_a_profile_summary(client: httpx.AsyncClient) -> None:
    account = await register(client, role="worker", name="Wanda Worker")
    await client.put(
        "/api/users/me/profile",
        json={"headline": "Rust and Python", "skills": ["rust", "python"]},
        headers=account.headers,
    )
    response = await client.get("/api/auth/me", headers=account.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == str(account.id)
    assert data["email"] == account.email
    assert data["name"] == "Wanda Worker"
    assert data["role"] == "worker"
    assert "createdAt" in data
    assert data["profile"]["headline"] == "Rust and Python"
    assert data["profile"]["skills"] == ["rust", "python"]


async def test_a_request_without_a_token_is_refused(client: httpx.AsyncClient) -> None:
    _assert_refused(await client.get("/api/auth/me"))


async def test_a_non_bearer_scheme_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me", headers={"Authorization": "Basic YTpi"})
    _assert_refused(response)


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "Bearer", "e30.e30.e30"])
async def test_a_garbled_token_is_refused(client: httpx.AsyncClient, garbage: str) -> None:
    _assert_refused(await _me(client, garbage))


async def test_an_unsigned_alg_none_token_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(account))}."
    _assert_refused(await _me(client, token))


async def test_a_token_whose_claims_were_edited_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    header, _, signature = account.access_token.split(".")
    forged = _b64(_claims(account, role="admin"))
    _assert_refused(await _me(client, f"{header}.{forged}.{signature}"))


async def test_a_token_with_a_damaged_signature_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    header, payload, signature = account.access_token.split(".")
    # Flip a character in the middle: the last one may only carry padding bits.
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    damaged = signature[:middle] + flipped + signature[middle + 1 :]
    _assert_refused(await _me(client, f"{header}.{payload}.{damaged}"))


async def test_a_token_signed_with_another_key_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    token = jwt.encode(_claims(account), "some-other-secret-0123456789abcdef", algorithm="HS256")
    _assert_refused(await _me(client, token))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_a_token_signed_with_another_algorithm_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    token = jwt.encode(_claims(account), _access_secret(settings), algorithm="HS512")
    _assert_refused(await _me(client, token))


async def test_an_expired_token_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    account = await register(client)
    past = int(time.time()) - 3600
    token = jwt.encode(
        _claims(account, iat=past - 900, exp=past), _access_secret(settings), algorithm="HS256"
    )
    response = await _me(client, token)
    _assert_refused(response)
    assert "expired" in response.json()["error"]["message"]


async def test_a_token_missing_a_required_claim_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    claims = _claims(account)
    del claims["jti"]
    _assert_refused(await _me(client, jwt.encode(claims, _access_secret(settings), "HS256")))


async def test_a_refresh_token_does_not_authenticate_a_request(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    _assert_refused(await _me(client, account.refresh_token))


async def test_a_refresh_typed_token_is_refused_even_with_the_access_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # The type claim is checked on its own, not only implied by the key.
    account = await register(client)
    claims = _claims(account, type="refresh", fam=str(uuid.uuid4()))
    _assert_refused(await _me(client, jwt.encode(claims, _access_secret(settings), "HS256")))


async def test_a_token_of_a_deactivated_user_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client)
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", account.id)
    _assert_refused(await client.get("/api/auth/me", headers=account.headers))


async def test_a_token_of_a_user_that_does_not_exist_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ghost = Account(uuid.uuid4(), "ghost@example.com", "", "worker", "", "")
    token = jwt.encode(_claims(ghost), _access_secret(settings), "HS256")
    _assert_refused(await _me(client, token))
