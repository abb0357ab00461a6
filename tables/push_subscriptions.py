"""Browsers' Web Push subscriptions, in the seed's `flexwork_notifications` collection.

The seed keeps push subscriptions and notification history in that one collection, so every
document here says what it is (`kind: "push_subscription"`) and every query asks for the kind.
A subscription is keyed by its endpoint (`_id` = "push:" + sha256(endpoint)): a push service
hands each subscription an endpoint URL of its own, so subscribing again from the same browser
finds the same document, and a browser that changes hands (another user logs in there) moves the
subscription to the new user instead of pushing the previous user's notifications to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from infrastructure.mongo import MongoDatabase

COLLECTION = "flexwork_notifications"
KIND = "push_subscription"
# A user's devices: a phone, a laptop or two, a few browsers. A browser that is reinstalled or
# clears its data subscribes anew without unsubscribing, and the old one lingers until a push
# to it answers 410; past this many, the oldest is dropped so a user is never locked out.
MAX_PER_USER = 20
# Deliveries a subscription remembers, so an event retried after a partial failure skips the
# devices that already got it. A retry comes within ~35 s (the agent's retry budget); 50 is far
# more pushes than one user receives in that time.
REMEMBERED_DELIVERIES = 50


@dataclass(frozen=True)
class StoredSubscription:
    user_id: str
    endpoint: str
    p256dh: str
    auth: str
    # Ids of the latest deliveries made to it, newest last (`record_delivery`).
    deliveries: tuple[str, ...] = ()


def subscription_id(endpoint: str) -> str:
    return "push:" + hashlib.sha256(endpoint.encode()).hexdigest()


async def ensure_indexes(db: MongoDatabase) -> None:
    """A user's subscriptions; partial, so the collection's other documents stay out of it."""
    await db[COLLECTION].create_index(
        [("userId", ASCENDING)],
        name="push_subscriptions_by_user",
        partialFilterExpression={"kind": KIND},
    )


async def save_subscription(
    db: MongoDatabase,
    *,
    user_id: str,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
    now: datetime,
) -> bool:
    """Store the subscription for `user_id` (taking it over from whoever had it); True when it
    was not stored for this user before."""
    document_id = subscription_id(endpoint)
    previous = await db[COLLECTION].find_one_and_update(
        {"_id": document_id},
        {
            "$set": {
                "kind": KIND,
                "userId": user_id,
                "endpoint": endpoint,
                "keys": {"p256dh": p256dh, "auth": auth},
                "userAgent": user_agent,
            },
            "$setOnInsert": {"createdAt": now},
        },
        upsert=True,
        projection={"userId": 1},
    )
    if previous is None or previous.get("userId") != user_id:
        # A subscription that changed hands counts as new for its new owner.
        if previous is not None:
            await db[COLLECTION].update_one({"_id": document_id}, {"$set": {"createdAt": now}})
        await _drop_oldest_beyond_limit(db, user_id=user_id)
        return True
    return False


async def _drop_oldest_beyond_limit(db: MongoDatabase, *, user_id: str) -> None:
    cursor = (
        db[COLLECTION]
        .find({"kind": KIND, "userId": user_id}, {"_id": 1})
        .sort("createdAt", DESCENDING)
        .skip(MAX_PER_USER)
    )
    stale = [document["_id"] async for document in cursor]
    if stale:
        await db[COLLECTION].delete_many({"_id": {"$in": stale}, "kind": KIND})


async def delete_subscription(db: MongoDatabase, *, user_id: str, endpoint: str) -> bool:
    """Remove `user_id`'s subscription at `endpoint`; another user's is never touched."""
    result = await db[COLLECTION].delete_one(
        {"_id": subscription_id(endpoint), "kind": KIND, "userId": user_id}
    )
    return bool(result.deleted_count)


async def remove_gone(db: MongoDatabase, subscription: StoredSubscription) -> bool:
    """Forget a subscription its push service answered 404/410 for. Only the one that was sent
    to: if the endpoint was subscribed again meanwhile with new keys, that one stays."""
    result = await db[COLLECTION].delete_one(
        {
            "_id": subscription_id(subscription.endpoint),
            "kind": KIND,
            "keys.auth": subscription.auth,
        }
    )
    return bool(result.deleted_count)


async def record_delivery(
    db: MongoDatabase, subscription: StoredSubscription, delivery_id: str
) -> None:
    """Remember that `delivery_id` reached `subscription` (only the most recent are kept)."""
    await db[COLLECTION].update_one(
        {"_id": subscription_id(subscription.endpoint), "kind": KIND},
        {"$push": {"deliveries": {"$each": [delivery_id], "$slice": -REMEMBERED_DELIVERIES}}},
    )


async def list_for_user(db: MongoDatabase, *, user_id: str) -> list[StoredSubscription]:
    """Every subscription of `user_id`, oldest first."""
    cursor = db[COLLECTION].find({"kind": KIND, "userId": user_id}).sort("createdAt", ASCENDING)
    return [_stored(document) async for document in cursor]


def _stored(document: dict[str, Any]) -> StoredSubscription:
    keys = document.get("keys") or {}
    return StoredSubscription(
        user_id=document["userId"],
        endpoint=document["endpoint"],
        p256dh=keys.get("p256dh", ""),
        auth=keys.get("auth", ""),
        deliveries=tuple(document.get("deliveries") or ()),
    )
