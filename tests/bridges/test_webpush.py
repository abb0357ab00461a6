"""Web Push end to end against a local push service: the message a browser would receive is
decrypted with the browser's own keys, and its VAPID signature checked with our public key."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bridges.webpush import (
    MAX_PAYLOAD_BYTES,
    PushRejected,
    PushSubscription,
    PushUnavailable,
    SubscriptionGone,
    Urgency,
    VapidKeys,
    WebPusher,
    b64url_encode,
    public_key_text,
    push_to_user,
    vapid_public_key,
)
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from tables import push_subscriptions as store
from tests.bridges.push_service import Browser, PushService, running_push_service, vapid_claims
from tests.tables.support import scratch_database

# A key pair of the test's own, not the development default: proves the settings are used.
SERVER_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    async with running_push_service() as service:
        yield service


@pytest.fixture
def push_settings() -> Settings:
    raw = SERVER_KEY.private_numbers().private_value.to_bytes(32, "big")
    return Settings(
        env="test", vapid_private_key=b64url_encode(raw), vapid_subject="mailto:ops@x.io"
    )


@pytest.fixture
async def pusher(push_settings: Settings) -> AsyncIterator[WebPusher]:
    async with WebPusher.from_settings(push_settings) as p:
        yield p


@pytest.fixture
async def mongo_db(mongo_url: str) -> AsyncIterator[MongoDatabase]:
    async with scratch_database(mongo_url) as db:
        await store.ensure_indexes(db)
        yield db


async def subscribe(db: MongoDatabase, user_id: str, browser: Browser) -> None:
    s = browser.subscription
    await store.save_subscription(
        db,
        user_id=user_id,
        endpoint=s.endpoint,
        p256dh=s.p256dh,
        auth=s.auth,
        user_agent="test",
        now=datetime.now(UTC),
    )


async def test_a_push_arrives_encrypted_for_the_browser_and_signed_with_our_key(
    push_service: PushService, pusher: WebPusher, push_settings: Settings
) -> None:
    browser = Browser(push_service.endpoint("ann"))
    payload = {"title": "New bid", "body": "Ann bid 1005 cents — ünïcode", "tag": "e1"}

    await pusher.send(browser.subscription, payload, ttl=600, urgency=Urgency.HIGH, topic="bids")

    [message] = push_service.received
    assert message.path == "/push/ann"
    assert message.headers["Content-Encoding"] == "aes128gcm"
    assert message.headers["TTL"] == "600"
    assert message.headers["Urgency"] == "high"
    assert message.headers["Topic"] == "bids"
    assert payload["body"].encode() not in message.body
    assert browser.decrypt(message.body) == payload

    public_key = vapid_public_key(push_settings)
    assert public_key == public_key_text(SERVER_KEY.public_key())
    claims = vapid_claims(
        message.headers["Authorization"], public_key=public_key, audience=push_service.url
    )
    assert claims["sub"] == "mailto:ops@x.io"
    assert claims["exp"] > datetime.now(UTC).timestamp()


async def test_another_browser_cannot_read_the_message(
    push_service: PushService, pusher: WebPusher
) -> None:
    browser = Browser(push_service.endpoint("ann"))
    await pusher.send(browser.subscription, {"title": "secret"})

    stranger = Browser(browser.endpoint)
    with pytest.raises(http_ece.ECEException):
        stranger.decrypt(push_service.received[0].body)


async def test_a_signature_from_another_key_does_not_verify(
    push_service: PushService, pusher: WebPusher
) -> None:
    """The check above can fail: a token is only good against the key that signed it."""
    await pusher.send(Browser(push_service.endpoint("ann")).subscription, {"title": "x"})
    other = public_key_text(ec.generate_private_key(ec.SECP256R1()).public_key())
    authorization = push_service.received[0].headers["Authorization"]
    forged = authorization.replace(authorization.split("k=")[1], other)
    with pytest.raises(jwt.InvalidSignatureError):
        vapid_claims(forged, public_key=other, audience=push_service.url)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, SubscriptionGone),
        (410, SubscriptionGone),
        (429, PushUnavailable),
        (500, PushUnavailable),
        (503, PushUnavailable),
        (400, PushRejected),
        (403, PushRejected),
        (413, PushRejected),
    ],
)
async def test_each_answer_of_the_push_service_maps_to_what_the_caller_should_do(
    push_service: PushService, pusher: WebPusher, status: int, error: type[Exception]
) -> None:
    push_service.answers["/push/ann"] = status
    with pytest.raises(error) as raised:
        await pusher.send(Browser(push_service.endpoint("ann")).subscription, {"title": "x"})
    assert getattr(raised.value, "status", None) == status
    if status == 429:
        assert isinstance(raised.value, PushUnavailable) and raised.value.retry_after == "30"


async def test_keys_that_cannot_be_encrypted_to_are_refused_before_sending(
    push_service: PushService, pusher: WebPusher
) -> None:
    off_the_curve = b64url_encode(b"\x04" + bytes(63) + b"\x01")
    subscription = PushSubscription(
        endpoint=push_service.endpoint("ann"), p256dh=off_the_curve, auth=b64url_encode(bytes(16))
    )
    with pytest.raises(PushRejected, match="cannot encrypt"):
        await pusher.send(subscription, {"title": "x"})
    assert push_service.received == []


async def test_an_unreachable_push_service_is_retryable(pusher: WebPusher) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(PushUnavailable):
        await pusher.send(Browser("http://127.0.0.1:1/push/x").subscription, {"title": "x"})


async def test_a_payload_too_large_for_a_push_is_refused_before_sending(
    push_service: PushService, pusher: WebPusher
) -> None:
    browser = Browser(push_service.endpoint("ann"))
    with pytest.raises(PushRejected, match="bytes"):
        await pusher.send(browser.subscription, {"body": "x" * MAX_PAYLOAD_BYTES})
    assert push_service.received == []

    # The largest allowed still fits in the 4096 bytes every push service must accept.
    await pusher.send(browser.subscription, {"body": "x" * (MAX_PAYLOAD_BYTES - 11)})
    assert len(push_service.received[0].body) == 4096


async def test_push_to_user_reaches_every_device_and_forgets_gone_ones(
    push_service: PushService, pusher: WebPusher, mongo_db: MongoDatabase
) -> None:
    user = str(uuid.uuid4())
    laptop, phone, old = (Browser(push_service.endpoint(n)) for n in ("laptop", "phone", "old"))
    for browser in (laptop, phone, old):
        await subscribe(mongo_db, user, browser)
    push_service.answers["/push/old"] = 410

    delivered = await push_to_user(mongo_db, pusher, user, {"title": "Paid", "tag": "e2"})

    assert delivered == 2
    assert laptop.decrypt(push_service.received[0].body) == {"title": "Paid", "tag": "e2"}
    remaining = await store.list_for_user(mongo_db, user_id=user)
    assert {s.endpoint for s in remaining} == {laptop.endpoint, phone.endpoint}

    # The next push no longer tries the gone one.
    push_service.received.clear()
    assert await push_to_user(mongo_db, pusher, user, {"title": "again"}) == 2
    assert sorted(r.path for r in push_service.received) == ["/push/laptop", "/push/phone"]


async def test_push_to_user_raises_retryable_after_trying_every_device(
    push_service: PushService, pusher: WebPusher, mongo_db: MongoDatabase
) -> None:
    user = str(uuid.uuid4())
    down, up = Browser(push_service.endpoint("down")), Browser(push_service.endpoint("up"))
    await subscribe(mongo_db, user, down)
    await subscribe(mongo_db, user, up)
    push_service.answers["/push/down"] = 500

    with pytest.raises(PushUnavailable, match="1 delivered") as raised:
        await push_to_user(mongo_db, pusher, user, {"title": "x"})

    assert raised.value.status == 500
    assert sorted(r.path for r in push_service.received) == ["/push/down", "/push/up"]
    # A 5xx is no reason to forget a subscription.
    assert len(await store.list_for_user(mongo_db, user_id=user)) == 2


async def test_a_retry_with_a_delivery_id_sends_only_to_the_devices_that_missed_it(
    push_service: PushService, pusher: WebPusher, mongo_db: MongoDatabase
) -> None:
    user = str(uuid.uuid4())
    down, up = Browser(push_service.endpoint("down")), Browser(push_service.endpoint("up"))
    await subscribe(mongo_db, user, down)
    await subscribe(mongo_db, user, up)
    push_service.answers["/push/down"] = 503
    with pytest.raises(PushUnavailable):
        await push_to_user(mongo_db, pusher, user, {"title": "x"}, delivery_id="e3:bid")

    push_service.received.clear()
    push_service.answers["/push/down"] = 201
    assert await push_to_user(mongo_db, pusher, user, {"title": "x"}, delivery_id="e3:bid") == 2
    assert [r.path for r in push_service.received] == ["/push/down"]

    # A third delivery of the same event sends nothing; another event goes to both.
    push_service.received.clear()
    assert await push_to_user(mongo_db, pusher, user, {"title": "x"}, delivery_id="e3:bid") == 2
    assert push_service.received == []
    assert await push_to_user(mongo_db, pusher, user, {"title": "y"}, delivery_id="e4:bid") == 2
    assert len(push_service.received) == 2


async def test_a_refused_device_does_not_stop_the_others(
    push_service: PushService, pusher: WebPusher, mongo_db: MongoDatabase
) -> None:
    user = str(uuid.uuid4())
    bad, good = Browser(push_service.endpoint("bad")), Browser(push_service.endpoint("good"))
    await subscribe(mongo_db, user, bad)
    await subscribe(mongo_db, user, good)
    push_service.answers["/push/bad"] = 403

    assert await push_to_user(mongo_db, pusher, user, {"title": "x"}) == 1
    assert len(await store.list_for_user(mongo_db, user_id=user)) == 2


async def test_a_user_without_subscriptions_gets_nothing(
    pusher: WebPusher, mongo_db: MongoDatabase
) -> None:
    assert await push_to_user(mongo_db, pusher, str(uuid.uuid4()), {"title": "x"}) == 0


# --- keys from settings


def test_the_development_key_is_fixed_so_subscriptions_survive_a_restart() -> None:
    assert vapid_public_key(Settings(env="development")) == (
        "BBNnYgO0G901sICZd_iIPXO0MBKTe4WqCBd1hhFugbHs3PYMEaLbPxzVLyrjy0-562ZjSXCAa2LwS9pS2_GC5NE"
    )


def test_a_pem_key_and_its_public_key_are_accepted() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = SERVER_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = public_key_text(SERVER_KEY.public_key())
    keys = VapidKeys.from_settings(
        Settings(env="test", vapid_private_key=pem, vapid_public_key=public)
    )
    assert keys.public_key == public


def test_a_public_key_that_does_not_match_the_private_key_is_refused() -> None:
    other = public_key_text(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(ValueError, match="TULIFO_VAPID_PUBLIC_KEY does not belong"):
        VapidKeys.from_settings(Settings(env="test", vapid_public_key=other))


def test_a_malformed_private_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="TULIFO_VAPID_PRIVATE_KEY"):
        VapidKeys.from_settings(Settings(env="test", vapid_private_key="not a key!"))


def test_production_refuses_the_development_vapid_key_and_subject() -> None:
    with pytest.raises(ValueError, match="TULIFO_VAPID_PRIVATE_KEY is the development default"):
        Settings(
            env="production",
            jwt_access_secret="a" * 40,
            jwt_refresh_secret="b" * 40,
            stripe_api_key="sk_live_x",
            stripe_webhook_secret="whsec_x",
        )
    with pytest.raises(ValueError, match="TULIFO_VAPID_SUBJECT is the development default"):
        Settings(env="production", vapid_private_key=b64url_encode(os.urandom(32)))


def test_the_subject_must_be_a_contact_url() -> None:
    with pytest.raises(ValueError, match="TULIFO_VAPID_SUBJECT"):
        Settings(env="test", vapid_subject="ops@example.com")
