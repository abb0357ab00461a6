"""/api/notifications/push: the VAPID key for browsers, and subscribing and unsubscribing them."""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from api.push.schemas import endpoint_problem
from api.state import AppState
from bridges.webpush import (
    WebPusher,
    b64url_encode,
    public_key_text,
    push_to_user,
    vapid_public_key,
)
from infrastructure.settings import Settings
from tables import push_subscriptions as store
from tests.api.conftest import error_fields, register
from tests.bridges.push_service import Browser, running_push_service, vapid_claims

SUBSCRIPTIONS = "/api/notifications/push/subscriptions"


def a_subscription(**overrides: Any) -> dict[str, Any]:
    """What a browser's `JSON.stringify(pushSubscription)` sends."""
    body: dict[str, Any] = {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/{uuid.uuid4().hex}",
        "expirationTime": None,
        "keys": {
            "p256dh": public_key_text(ec.generate_private_key(ec.SECP256R1()).public_key()),
            "auth": b64url_encode(os.urandom(16)),
        },
    }
    body.update(overrides)
    return body


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.tulifo
    return state


async def stored(app: FastAPI, endpoint: str) -> dict[str, Any] | None:
    document: dict[str, Any] | None = (
        await _state(app).mongo[store.COLLECTION].find_one({"_id": store.subscription_id(endpoint)})
    )
    return document


async def unsubscribe(client: httpx.AsyncClient, endpoint: str, headers: dict[str, str]) -> int:
    response = await client.request(
        "DELETE", SUBSCRIPTIONS, json={"endpoint": endpoint}, headers=headers
    )
    return response.status_code


async def test_anyone_can_read_the_vapid_public_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.get("/api/notifications/push/vapid-public-key")
    assert response.status_code == 200
    key = response.json()["data"]["publicKey"]
    assert key == vapid_public_key(settings)
    assert len(key) == 87 and "=" not in key  # 65 bytes, base64url without padding


async def test_a_browser_subscribed_through_the_api_receives_and_reads_a_push(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """The whole channel: the key the API serves, the subscription it stores, the push the
    worker's call sends, decrypted with the browser's own keys."""
    ann = await register(client)
    served = (await client.get("/api/notifications/push/vapid-public-key")).json()["data"]
    db = _state(app).mongo
    async with running_push_service() as service, WebPusher.from_settings(settings) as pusher:
        browser = Browser(service.endpoint("ann"))
        body = {
            "endpoint": browser.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": browser.subscription.p256dh, "auth": browser.subscription.auth},
        }
        assert (await client.post(SUBSCRIPTIONS, json=body, headers=ann.headers)).is_success

        payload = {"title": "New bid", "body": "Bob bid on your project", "tag": "e1"}
        assert await push_to_user(db, pusher, str(ann.id), payload) == 1

        [message] = service.received
        assert browser.decrypt(message.body) == payload
        vapid_claims(
            message.headers["Authorization"], public_key=served["publicKey"], audience=service.url
        )

        # The browser's permission was revoked: its push service answers 410 from now on.
        service.answers["/push/ann"] = 410
        assert await push_to_user(db, pusher, str(ann.id), payload) == 0
        assert await stored(app, browser.endpoint) is None


async def test_a_user_subscribes_a_browser_and_it_is_stored_as_the_seed_keeps_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client)
    body = a_subscription()

    response = await client.post(
        SUBSCRIPTIONS, json=body, headers={**ann.headers, "User-Agent": "Firefox/140"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["data"] == {"endpoint": body["endpoint"]}
    document = await stored(app, body["endpoint"])
    assert document is not None
    assert document["kind"] == "push_subscription"
    assert document["userId"] == str(ann.id)
    assert document["keys"] == body["keys"]
    assert document["userAgent"] == "Firefox/140"
    assert document["createdAt"] is not None
    assert [
        s.endpoint for s in await store.list_for_user(_state(app).mongo, user_id=str(ann.id))
    ] == [body["endpoint"]]


async def test_the_subscription_index_covers_only_subscriptions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client)
    assert (await client.post(SUBSCRIPTIONS, json=a_subscription(), headers=ann.headers)).is_success
    indexes = await _state(app).mongo[store.COLLECTION].index_information()
    index = indexes["push_subscriptions_by_user"]
    assert index["key"] == [("userId", 1)]
    assert index["partialFilterExpression"] == {"kind": "push_subscription"}


async def test_subscribing_again_keeps_one_subscription_with_the_new_keys(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann = await register(client)
    first = a_subscription()
    again = a_subscription(endpoint=first["endpoint"])
    for body in (first, again):
        response = await client.post(SUBSCRIPTIONS, json=body, headers=ann.headers)
        assert response.status_code == 201

    mine = await store.list_for_user(_state(app).mongo, user_id=str(ann.id))
    assert [(s.endpoint, s.auth) for s in mine] == [(first["endpoint"], again["keys"]["auth"])]


async def test_a_browser_that_changes_hands_moves_to_the_new_user(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann, bob = await register(client), await register(client)
    body = a_subscription()
    await client.post(SUBSCRIPTIONS, json=body, headers=ann.headers)
    await client.post(SUBSCRIPTIONS, json=body, headers=bob.headers)

    db = _state(app).mongo
    assert await store.list_for_user(db, user_id=str(ann.id)) == []
    assert [s.endpoint for s in await store.list_for_user(db, user_id=str(bob.id))] == [
        body["endpoint"]
    ]


async def test_a_user_unsubscribes_their_own_browser_and_nobody_elses(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ann, mallory = await register(client), await register(client)
    body = a_subscription()
    await client.post(SUBSCRIPTIONS, json=body, headers=ann.headers)

    # Another user's attempt answers like any unsubscribe, and changes nothing.
    assert await unsubscribe(client, body["endpoint"], mallory.headers) == 204
    assert await stored(app, body["endpoint"]) is not None

    assert await unsubscribe(client, body["endpoint"], ann.headers) == 204
    assert await stored(app, body["endpoint"]) is None
    # Idempotent: a second unsubscribe is no error.
    assert await unsubscribe(client, body["endpoint"], ann.headers) == 204


async def test_subscribing_and_unsubscribing_need_a_signed_in_user(
    client: httpx.AsyncClient,
) -> None:
    body = a_subscription()
    assert (await client.post(SUBSCRIPTIONS, json=body)).status_code == 401
    assert (await client.request("DELETE", SUBSCRIPTIONS, json=body)).status_code == 401


def _with_keys(**keys: str) -> dict[str, Any]:
    body = a_subscription()
    body["keys"] = {**body["keys"], **keys}
    return body


def _point_off_the_curve() -> str:
    raw = bytearray(b"\x04" + bytes(64))
    raw[-1] = 1
    return b64url_encode(bytes(raw))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with_keys(p256dh=b64url_encode(os.urandom(33))), "keys.p256dh"),
        (_with_keys(p256dh=_point_off_the_curve()), "keys.p256dh"),
        (_with_keys(p256dh="BBNn+gO0/901"), "keys.p256dh"),  # standard base64, not base64url
        (_with_keys(auth=b64url_encode(os.urandom(8))), "keys.auth"),
        (_with_keys(auth="!!!!"), "keys.auth"),
        (a_subscription(endpoint="ftp://push.example.com/x"), "endpoint"),
        (a_subscription(endpoint="/relative/path"), "endpoint"),
        (a_subscription(endpoint="http://push.example.com/x"), "endpoint"),
        (a_subscription(endpoint="https://" + "a" * 2100 + ".com/"), "endpoint"),
        (a_subscription(keys=None), "keys"),
        ({"keys": a_subscription()["keys"]}, "endpoint"),
        (a_subscription(extra="x"), "extra"),
    ],
)
async def test_a_malformed_subscription_is_refused_naming_the_field(
    client: httpx.AsyncClient, app: FastAPI, body: dict[str, Any], field: str
) -> None:
    ann = await register(client)
    response = await client.post(SUBSCRIPTIONS, json=body, headers=ann.headers)
    assert response.status_code == 422, response.text
    assert field in error_fields(response)
    assert await store.list_for_user(_state(app).mongo, user_id=str(ann.id)) == []


async def test_a_local_push_service_may_be_http_outside_production(
    client: httpx.AsyncClient,
) -> None:
    ann = await register(client)
    body = a_subscription(endpoint="http://127.0.0.1:9/push/x")
    assert (await client.post(SUBSCRIPTIONS, json=body, headers=ann.headers)).status_code == 201


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9/push/x",
        "https://127.0.0.1/push/x",
        "https://10.0.0.5/push/x",
        "https://[::1]/push/x",
        "https://localhost/push/x",
    ],
)
def test_production_takes_only_https_push_service_hosts(endpoint: str) -> None:
    assert endpoint_problem(endpoint, production=True) is not None
    assert endpoint_problem("https://fcm.googleapis.com/fcm/send/abc", production=True) is None
