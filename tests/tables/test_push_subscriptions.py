"""Push subscriptions in `flexwork_notifications`: one per endpoint, owned by one user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from infrastructure.mongo import MongoDatabase
from tables import push_subscriptions as store

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def subscribe(
    db: MongoDatabase, user_id: str, endpoint: str, *, auth: str = "a1", now: datetime = NOW
) -> bool:
    return await store.save_subscription(
        db, user_id=user_id, endpoint=endpoint, p256dh="BP", auth=auth, user_agent=None, now=now
    )


async def test_subscribing_is_an_upsert_on_the_endpoint(mongo_db: MongoDatabase) -> None:
    assert await subscribe(mongo_db, "u1", "https://push.example.com/a") is True
    assert await subscribe(mongo_db, "u1", "https://push.example.com/a", auth="a2") is False
    [stored] = await store.list_for_user(mongo_db, user_id="u1")
    assert stored.auth == "a2"
    assert await mongo_db[store.COLLECTION].count_documents({}) == 1


async def test_listing_ignores_the_collections_other_documents(mongo_db: MongoDatabase) -> None:
    await mongo_db[store.COLLECTION].insert_one({"_id": "n1", "userId": "u1", "title": "hi"})
    await subscribe(mongo_db, "u1", "https://push.example.com/a")
    assert [s.endpoint for s in await store.list_for_user(mongo_db, user_id="u1")] == [
        "https://push.example.com/a"
    ]


async def test_a_gone_subscription_is_removed_unless_it_was_subscribed_again(
    mongo_db: MongoDatabase,
) -> None:
    await subscribe(mongo_db, "u1", "https://push.example.com/a", auth="old")
    [sent_to] = await store.list_for_user(mongo_db, user_id="u1")
    # The browser subscribed again (new keys) between the push and its 410.
    await subscribe(mongo_db, "u1", "https://push.example.com/a", auth="new")
    assert await store.remove_gone(mongo_db, sent_to) is False
    [current] = await store.list_for_user(mongo_db, user_id="u1")
    assert await store.remove_gone(mongo_db, current) is True
    assert await store.list_for_user(mongo_db, user_id="u1") == []


async def test_only_the_owner_deletes_a_subscription(mongo_db: MongoDatabase) -> None:
    await subscribe(mongo_db, "u1", "https://push.example.com/a")
    assert (
        await store.delete_subscription(
            mongo_db, user_id="u2", endpoint="https://push.example.com/a"
        )
        is False
    )
    assert (
        await store.delete_subscription(
            mongo_db, user_id="u1", endpoint="https://push.example.com/a"
        )
        is True
    )


async def test_past_the_limit_a_users_oldest_subscription_is_dropped(
    mongo_db: MongoDatabase,
) -> None:
    user = str(uuid.uuid4())
    for n in range(store.MAX_PER_USER + 1):
        await subscribe(
            mongo_db, user, f"https://push.example.com/{n}", now=NOW + timedelta(minutes=n)
        )
    endpoints = [s.endpoint for s in await store.list_for_user(mongo_db, user_id=user)]
    assert len(endpoints) == store.MAX_PER_USER
    assert "https://push.example.com/0" not in endpoints
    assert endpoints[-1] == f"https://push.example.com/{store.MAX_PER_USER}"


async def test_a_subscription_remembers_only_its_latest_deliveries(
    mongo_db: MongoDatabase,
) -> None:
    await subscribe(mongo_db, "u1", "https://push.example.com/a")
    [stored] = await store.list_for_user(mongo_db, user_id="u1")
    for n in range(store.REMEMBERED_DELIVERIES + 5):
        await store.record_delivery(mongo_db, stored, f"e{n}")
    [stored] = await store.list_for_user(mongo_db, user_id="u1")
    assert stored.deliveries == tuple(f"e{n}" for n in range(5, store.REMEMBERED_DELIVERIES + 5))
