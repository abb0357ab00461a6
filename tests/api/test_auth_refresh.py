"""POST /api/auth/refresh and /logout: rotation, replay detection, revocation."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import jwt

from api.auth.tokens import decode_refresh_token
from infrastructure.settings import Settings
from tests.api.conftest import bearer, login, register


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refreshToken": token})


async def _family(db: asyncpg.Connection, token: str, settings: Settings) -> asyncpg.Record:
    family_id = decode_refresh_token(token, settings=settings).family_id
    row: asyncpg.Record = await db.fetchrow(
        "SELECT * FROM refresh_token_families WHERE id = $1", family_id
    )
    return row


async def test_a_refresh_rotates_both_tokens(client: httpx.AsyncClient, settings: Settings) -> None:
    account = await register(client)
    response = await _refresh(client, account.refresh_token)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["refreshToken"] != account.refresh_token
    assert data["accessToken"] != account.access_token
    me = await client.get("/api/auth/me", headers=bearer(data["accessToken"]))
    assert me.json()["data"]["id"] == str(account.id)
    old = decode_refresh_token(account.refresh_token, settings=settings)
    new = decode_refresh_token(data["refreshToken"], settings=settings)
    assert new.family_id == old.family_id
    assert new.jti != old.jti


async def test_refresh_tokens_carry_the_documented_claims(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    claims = jwt.decode(
        account.refresh_token,
        settings.jwt_refresh_secret.get_secret_value(),
        algorithms=["HS256"],
    )
    assert set(claims) == {"sub", "role", "type", "iat", "exp", "jti", "fam"}
    assert claims["type"] == "refresh"
    assert claims["exp"] - claims["iat"] == settings.refresh_token_ttl_seconds
    access = jwt.decode(
        account.access_token,
        settings.jwt_access_secret.get_secret_value(),
        algorithms=["HS256"],
    )
    assert access["type"] == "access"
    assert access["exp"] - access["iat"] == settings.access_token_ttl_seconds


async def test_a_replayed_refresh_token_revokes_its_whole_family(
    client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings
) -> None:
    account = await register(client)
    rotated = (await _refresh(client, account.refresh_token)).json()["data"]["refreshToken"]

    replay = await _refresh(client, account.refresh_token)

    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "UNAUTHORIZED"
    # The thief may hold the newest token: it dies with the family.
    assert (await _refresh(client, rotated)).status_code == 401
    family = await _family(db, rotated, settings)
    assert family["revoked_reason"] == "reuse"
    assert family["revoked_at"] is not None


async def test_a_replay_leaves_the_users_other_sessions_alone(client: httpx.AsyncClient) -> None:
    account = await register(client)
    other_session = (await login(client, account.email, account.password)).json()["data"]
    await _refresh(client, account.refresh_token)
    await _refresh(client, account.refresh_token)  # replay: revokes the first family only

    assert (await _refresh(client, other_session["refreshToken"])).status_code == 200


async def test_two_racing_refreshes_with_one_token_let_only_one_through(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    responses = await asyncio.gather(
        _refresh(client, account.refresh_token), _refresh(client, account.refresh_token)
    )
    assert sorted(r.status_code for r in responses) == [200, 401]


async def test_an_access_token_cannot_be_used_to_refresh(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await _refresh(client, account.access_token)
    assert response.status_code == 401


async def test_a_garbled_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    assert (await _refresh(client, "not.a.token")).status_code == 401


async def test_an_expired_family_cannot_refresh_and_is_not_taken_for_a_replay(
    client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings
) -> None:
    account = await register(client)
    family_id = decode_refresh_token(account.refresh_token, settings=settings).family_id
    await db.execute(
        "UPDATE refresh_token_families SET expires_at = now() - interval '1 second' WHERE id = $1",
        family_id,
    )
    assert (await _refresh(client, account.refresh_token)).status_code == 401
    assert (await _family(db, account.refresh_token, settings))["revoked_at"] is None


async def test_a_deactivated_user_cannot_refresh(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    account = await register(client)
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", account.id)
    assert (await _refresh(client, account.refresh_token)).status_code == 401


async def test_logout_revokes_the_family_and_is_idempotent(
    client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings
) -> None:
    account = await register(client)
    # No access token needed: the refresh token is the proof of the session it ends.
    response = await client.post("/api/auth/logout", json={"refreshToken": account.refresh_token})
    assert response.status_code == 204
    assert response.content == b""

    assert (await _refresh(client, account.refresh_token)).status_code == 401
    assert (await _family(db, account.refresh_token, settings))["revoked_reason"] == "logout"
    again = await client.post("/api/auth/logout", json={"refreshToken": account.refresh_token})
    assert again.status_code == 204


async def test_logout_refuses_a_token_that_is_not_a_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    response = await client.post("/api/auth/logout", json={"refreshToken": account.access_token})
    assert response.status_code == 401


async def test_refresh_requires_the_token_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/refresh", json={"token": "x"})
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"refreshToken", "token"}
