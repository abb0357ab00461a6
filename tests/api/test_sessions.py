"""/api/sessions: a user's signed-in devices, listed and ended; an ended session's access tokens
are refused from the very next request."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from motor.motor_asyncio import AsyncIOMotorClient

from api.sessions.denylist import revoked_key
from api.sessions.devices import parse_user_agent
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.settings import Settings
from tests.api.conftest import Account, api_of_its_own, bearer, client_from, register, unique_ip

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36"
)


@pytest.fixture
def ip() -> str:
    return unique_ip()


@pytest.fixture
async def client(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API as seen from `ip`, so a test knows the address its sessions should show."""
    async with client_from(app, ip=ip) as c:
        yield c


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[MongoDatabase]:
    client: AsyncIOMotorClient[dict[str, Any]] = create_mongo_client(settings)
    try:
        yield mongo_database(client, settings)
    finally:
        client.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


class Session:
    """One signed-in device: its tokens as the login answered them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.access_token: str = data["accessToken"]
        self.refresh_token: str = data["refreshToken"]

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def _sign_in(client: httpx.AsyncClient, account: Account, user_agent: str) -> Session:
    response = await client.post(
        "/api/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    return Session(response.json()["data"])


async def _sessions(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/api/sessions", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    items: list[dict[str, Any]] = body["data"]["items"]
    return items


def _by_label(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["device"]["label"]: item for item in items}


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/api/auth/me", headers=headers)


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refreshToken": token})


def _session_id(session: Session, settings: Settings) -> str:
    claims = jwt.decode(
        session.access_token, settings.jwt_access_secret.get_secret_value(), algorithms=["HS256"]
    )
    return str(claims["sid"])


def _assert_signed_out(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


# --- listing -----------------------------------------------------------------------------------


async def test_each_sign_in_is_a_session_listed_with_its_device_and_address(
    client: httpx.AsyncClient, settings: Settings, ip: str
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    phone = await _sign_in(client, account, SAFARI_IPHONE)

    items = await _sessions(client, phone.headers)

    # Registration signed in too (as python-httpx, the test client).
    assert len(items) == 3
    listed = _by_label(items)
    firefox = listed["Firefox 126 on Windows"]
    safari = listed["Safari 17 on iOS 17"]
    assert firefox["device"]["kind"] == "desktop"
    assert firefox["device"]["userAgent"] == FIREFOX_WINDOWS
    assert safari["device"]["kind"] == "mobile"
    assert safari["id"] == _session_id(phone, settings)
    assert firefox["id"] == _session_id(laptop, settings)
    # Only the session asking is the current one.
    assert safari["current"] is True
    assert [item["current"] for item in items].count(True) == 1
    for item in items:
        assert item["ip"] == ip
        assert datetime.fromisoformat(item["lastUsedAt"]) >= datetime.fromisoformat(
            item["createdAt"]
        )
        assert datetime.fromisoformat(item["expiresAt"]) > datetime.fromisoformat(
            item["lastUsedAt"]
        )
    # Newest use first: the phone signed in last.
    assert items[0]["id"] == safari["id"]
    assert items[1]["id"] == firefox["id"]


async def test_a_refresh_moves_the_sessions_last_use_and_puts_it_first(
    client: httpx.AsyncClient, mongo: MongoDatabase, settings: Settings
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    phone = await _sign_in(client, account, SAFARI_IPHONE)
    before = _by_label(await _sessions(client, phone.headers))["Firefox 126 on Windows"]
    document_before = await mongo["sessions"].find_one({"_id": before["id"]})
    assert document_before is not None

    refreshed = await _refresh(client, laptop.refresh_token)
    assert refreshed.status_code == 200
    laptop = Session(refreshed.json()["data"])

    items = await _sessions(client, phone.headers)
    after = _by_label(items)["Firefox 126 on Windows"]
    assert after["id"] == before["id"]  # a refresh continues the session
    assert datetime.fromisoformat(after["lastUsedAt"]) > datetime.fromisoformat(
        before["lastUsedAt"]
    )
    assert after["createdAt"] == before["createdAt"]
    assert items[0]["id"] == after["id"]
    document_after = await mongo["sessions"].find_one({"_id": after["id"]})
    assert document_after is not None
    assert document_after["lastUsedAt"] > document_before["lastUsedAt"]
    assert document_after["expiresAt"] > document_before["expiresAt"]
    # The new access token belongs to the same session.
    assert _session_id(laptop, settings) == after["id"]


async def test_the_session_document_holds_the_seed_collections_fields(
    client: httpx.AsyncClient, mongo: MongoDatabase, settings: Settings, ip: str
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, CHROME_MAC)

    document = await mongo["sessions"].find_one({"_id": _session_id(laptop, settings)})

    assert document is not None
    assert document["userId"] == str(account.id)
    assert document["device"]["label"] == "Chrome 125 on macOS"
    assert document["ip"] == ip
    assert document["createdAt"] == document["lastUsedAt"]
    assert document["expiresAt"] > document["createdAt"]
    assert document["revokedAt"] is None
    indexes = await mongo["sessions"].index_information()
    assert indexes["user_recent"]["key"] == [("userId", 1), ("lastUsedAt", -1)]
    assert indexes["expiry"]["expireAfterSeconds"] == 0


async def test_listing_requires_a_signed_in_user(client: httpx.AsyncClient) -> None:
    _assert_signed_out(await client.get("/api/sessions"))


# --- revoking one ------------------------------------------------------------------------------


async def test_revoking_a_session_stops_its_tokens_at_once_and_spares_the_others(
    client: httpx.AsyncClient, mongo: MongoDatabase, settings: Settings
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    phone = await _sign_in(client, account, SAFARI_IPHONE)
    assert (await _me(client, laptop.headers)).status_code == 200
    laptop_id = _session_id(laptop, settings)

    response = await client.delete(f"/api/sessions/{laptop_id}", headers=phone.headers)

    assert response.status_code == 204
    assert response.content == b""
    # The access token has 15 minutes left, and is refused on the very next request.
    _assert_signed_out(await _me(client, laptop.headers))
    _assert_signed_out(await _refresh(client, laptop.refresh_token))
    # The other device goes on.
    assert (await _me(client, phone.headers)).status_code == 200
    assert (await _refresh(client, phone.refresh_token)).status_code == 200
    remaining = await _sessions(client, phone.headers)
    assert laptop_id not in {item["id"] for item in remaining}
    document = await mongo["sessions"].find_one({"_id": laptop_id})
    assert document is not None
    assert document["revokedAt"] is not None
    assert document["revokedReason"] == "revoked"


async def test_revoking_ones_own_current_session_signs_the_caller_out(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)

    response = await client.delete(
        f"/api/sessions/{_session_id(laptop, settings)}", headers=laptop.headers
    )

    assert response.status_code == 204
    _assert_signed_out(await _me(client, laptop.headers))


async def test_revoking_an_ended_session_again_succeeds(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # A retry after a 503 must be able to finish the job.
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    path = f"/api/sessions/{_session_id(laptop, settings)}"
    assert (await client.delete(path, headers=account.headers)).status_code == 204
    assert (await client.delete(path, headers=account.headers)).status_code == 204


async def test_another_users_session_is_not_found_and_stays_signed_in(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await register(client)
    laptop = await _sign_in(client, owner, FIREFOX_WINDOWS)
    stranger = await register(client)

    response = await client.delete(
        f"/api/sessions/{_session_id(laptop, settings)}", headers=stranger.headers
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert (await _me(client, laptop.headers)).status_code == 200
    assert (await _refresh(client, laptop.refresh_token)).status_code == 200


async def test_an_unknown_session_is_not_found(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.delete(f"/api/sessions/{uuid.uuid4()}", headers=account.headers)
    assert response.status_code == 404


async def test_a_malformed_session_id_is_refused_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    response = await client.delete("/api/sessions/not-a-uuid", headers=account.headers)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in body["error"]["details"]] == ["path.session_id"]


# --- revoking all ------------------------------------------------------------------------------


async def test_revoking_all_sessions_signs_out_every_device(client: httpx.AsyncClient) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    phone = await _sign_in(client, account, SAFARI_IPHONE)

    response = await client.delete("/api/sessions", headers=phone.headers)

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"revoked": 3}}
    for access_token, refresh_token in [
        (laptop.access_token, laptop.refresh_token),
        (phone.access_token, phone.refresh_token),
        (account.access_token, account.refresh_token),  # the registration's session
    ]:
        _assert_signed_out(await _me(client, bearer(access_token)))
        _assert_signed_out(await _refresh(client, refresh_token))


async def test_revoking_all_but_the_current_session_keeps_the_caller_signed_in(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    phone = await _sign_in(client, account, SAFARI_IPHONE)

    response = await client.delete(
        "/api/sessions", params={"keepCurrent": "true"}, headers=phone.headers
    )

    assert response.json()["data"] == {"revoked": 2}
    _assert_signed_out(await _me(client, laptop.headers))
    _assert_signed_out(await _me(client, account.headers))
    assert (await _me(client, phone.headers)).status_code == 200
    items = await _sessions(client, phone.headers)
    assert [(item["id"], item["current"]) for item in items] == [
        (_session_id(phone, settings), True)
    ]


async def test_a_retried_revoke_all_still_reaches_access_tokens(
    client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    phone = await _sign_in(client, account, SAFARI_IPHONE)
    everyone_else = {"keepCurrent": "true"}
    await client.delete("/api/sessions", params=everyone_else, headers=phone.headers)
    # As if Redis had failed after PostgreSQL committed: the client got a 503 and retries.
    laptop_key = revoked_key(uuid.UUID(_session_id(laptop, settings)))
    await redis.delete(laptop_key)
    # Requests ask PostgreSQL, where the revocation committed: no window for the laptop's token.
    _assert_signed_out(await _me(client, laptop.headers))

    retry = await client.delete("/api/sessions", params=everyone_else, headers=phone.headers)

    assert retry.json()["data"] == {"revoked": 0}
    # The retry sets the deny-list key again, for the laptop's open sockets and streams.
    assert await redis.exists(laptop_key)
    _assert_signed_out(await _me(client, laptop.headers))


# --- other ways a session ends -----------------------------------------------------------------


async def test_logout_stops_the_sessions_access_token_at_once(client: httpx.AsyncClient) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)

    response = await client.post("/api/auth/logout", json={"refreshToken": laptop.refresh_token})

    assert response.status_code == 204
    _assert_signed_out(await _me(client, laptop.headers))
    assert (await _me(client, account.headers)).status_code == 200


async def test_a_replayed_refresh_token_also_stops_the_familys_access_tokens(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    laptop = await _sign_in(client, account, FIREFOX_WINDOWS)
    rotated = Session((await _refresh(client, laptop.refresh_token)).json()["data"])

    _assert_signed_out(await _refresh(client, laptop.refresh_token))  # the replay

    # Whoever holds the newest pair may be the thief: its access token dies with the family.
    _assert_signed_out(await _me(client, rotated.headers))


async def test_an_access_token_without_a_session_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    now = int(time.time())
    claims = {
        "sub": str(account.id),
        "role": account.role,
        "type": "access",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, settings.jwt_access_secret.get_secret_value(), "HS256")
    _assert_signed_out(await _me(client, bearer(token)))


# --- Redis unreachable ---------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_without_redis_requests_are_still_authenticated_and_revoking_asks_for_a_retry(
    client: httpx.AsyncClient, settings: Settings, app: FastAPI
) -> None:
    account = await register(client)
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{_closed_port()}/0"})

    async with api_of_its_own(no_redis) as cut_off, client_from(cut_off, ip=unique_ip()) as other:
        me = await _me(other, account.headers)
        revoke = await other.delete("/api/sessions", headers=account.headers)
        after = await _me(other, account.headers)

    # PostgreSQL decides whether a session is live: requests need no Redis.
    assert me.status_code == 200
    # The revocation committed, but open sockets learn of it through Redis: 503, so the
    # client retries until every part is done.
    assert revoke.status_code == 503
    assert revoke.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    _assert_signed_out(after)
    _assert_signed_out(await _me(client, account.headers))


# --- devices -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "label", "kind"),
    [
        (FIREFOX_WINDOWS, "Firefox 126 on Windows", "desktop"),
        (SAFARI_IPHONE, "Safari 17 on iOS 17", "mobile"),
        (CHROME_MAC, "Chrome 125 on macOS", "desktop"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
            "Edge 124 on Windows",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.6422.53 Mobile Safari/537.36",
            "Chrome 125 on Android 14",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
            "Chrome 120 on iPadOS 16",
            "tablet",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Unknown device",
            "bot",
        ),
        ("curl/8.5.0", "curl 8", "other"),
        ("", "Unknown device", "other"),
    ],
)
def test_a_user_agent_reads_as_a_device_a_person_recognises(
    user_agent: str, label: str, kind: str
) -> None:
    device = parse_user_agent(user_agent)
    assert device.label == label
    assert device.kind == kind
    assert device.user_agent == user_agent


def test_an_overlong_user_agent_is_cut() -> None:
    device = parse_user_agent("x" * 10_000)
    assert len(device.user_agent) == 512
