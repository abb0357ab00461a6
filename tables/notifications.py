"""Notification state in MongoDB: the in-app notifications and the ledgers of what was sent.

Everything is keyed by the event that caused it, so a redelivered event finds its own traces:
- `flexwork_notifications` (the seed's collection, shared with the web push subscriptions, so
  every read and index here is limited to `kind: "notification"`): `_id` =
  "<event_id>:<type>:<user id>:in_app", written with `$setOnInsert` + upsert, so a second
  delivery changes nothing (not even a `read` flag the user has set meanwhile).
- `email_log` and `push_log`: `_id` = "<event_id>:<type>:<user id>:<channel>", claimed by insert
  before the SMTP conversation (or the push) and marked sent after it. A claim holds a token and
  a lease: the claimant releases it on failure; a worker that died mid-send leaves a claim
  another may take over once the lease has expired.

A user's list is newest first on (createdAt, _id): many notifications share a millisecond (BSON
dates hold no less, and one event notifies several users at one `occurred_at`), so the page
cursor carries both and the next page starts strictly after that pair: none is skipped or
repeated.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from infrastructure.mongo import MongoDatabase

NOTIFICATIONS = "flexwork_notifications"
NOTIFICATION_KIND = "notification"
EMAIL_LOG = "email_log"
PUSH_LOG = "push_log"
# Three SMTP timeouts (bridges.email.SMTP_TIMEOUT_S = 10 s per step), so a live sender is not
# overtaken; and short enough that a dead sender's event, redelivered ~10 s later
# (broker_session_timeout), still gets its mail out within an agent's retry budget (~35 s)
# instead of being dead-lettered.
EMAIL_CLAIM_LEASE = timedelta(seconds=30)
_OURS = {"kind": NOTIFICATION_KIND}
_NEWEST_FIRST = [("createdAt", DESCENDING), ("_id", DESCENDING)]


async def ensure_indexes(db: MongoDatabase) -> None:
    """The listing index (a user's notifications, newest first, ties by _id) and the unread
    one, both partial on our kind: push subscriptions share the collection."""
    collection = db[NOTIFICATIONS]
    await collection.create_index(
        [("userId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
        name="user_recent",
        partialFilterExpression=_OURS,
    )
    await collection.create_index(
        [("userId", ASCENDING), ("read", ASCENDING)],
        name="user_unread",
        partialFilterExpression=_OURS,
    )


async def add_notification(db: MongoDatabase, document: dict[str, Any]) -> bool:
    """Insert `document` (as a notification) unless its `_id` exists; True when this call
    created it."""
    fields = {key: value for key, value in document.items() if key != "_id"}
    fields["kind"] = NOTIFICATION_KIND
    result = await db[NOTIFICATIONS].update_one(
        {"_id": document["_id"]}, {"$setOnInsert": fields}, upsert=True
    )
    return result.upserted_id is not None


class ClaimState(enum.Enum):
    CLAIMED = "claimed"  # ours to send
    SENT = "sent"  # somebody sent it: skip
    IN_PROGRESS = "in_progress"  # somebody is sending it now (or died doing so, lease running)


@dataclass(frozen=True)
class EmailClaim:
    id: str
    state: ClaimState
    token: str | None = None
    ledger: str = EMAIL_LOG


async def claim_email(
    db: MongoDatabase,
    claim_id: str,
    *,
    now: datetime,
    lease: timedelta = EMAIL_CLAIM_LEASE,
    ledger: str = EMAIL_LOG,
) -> EmailClaim:
    """Try to become the one sender of email (or, with `ledger=PUSH_LOG`, push) `claim_id`."""
    log = db[ledger]
    token = uuid.uuid4().hex
    try:
        await log.insert_one(
            {"_id": claim_id, "status": "sending", "token": token, "claimedAt": now, "attempts": 1}
        )
        return EmailClaim(claim_id, ClaimState.CLAIMED, token, ledger)
    except DuplicateKeyError:
        pass
    stale = await log.find_one_and_update(
        {"_id": claim_id, "status": "sending", "claimedAt": {"$lt": now - lease}},
        {"$set": {"token": token, "claimedAt": now}, "$inc": {"attempts": 1}},
    )
    if stale is not None:
        return EmailClaim(claim_id, ClaimState.CLAIMED, token, ledger)
    existing = await log.find_one({"_id": claim_id}, {"status": 1})
    if existing is None:
        # Released between our insert and our look: the next attempt will claim it.
        return EmailClaim(claim_id, ClaimState.IN_PROGRESS, ledger=ledger)
    if existing.get("status") == "sent":
        return EmailClaim(claim_id, ClaimState.SENT, ledger=ledger)
    return EmailClaim(claim_id, ClaimState.IN_PROGRESS, ledger=ledger)


async def mark_email_sent(
    db: MongoDatabase, claim: EmailClaim, *, now: datetime, message_id: str
) -> None:
    await db[claim.ledger].update_one(
        {"_id": claim.id, "token": claim.token},
        {"$set": {"status": "sent", "sentAt": now, "messageId": message_id}},
    )


async def release_email(db: MongoDatabase, claim: EmailClaim) -> None:
    """Give the claim up (the send failed), so the next attempt may claim it again."""
    await db[claim.ledger].delete_one({"_id": claim.id, "token": claim.token, "status": "sending"})


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last item's sort key. The next page starts strictly after it."""

    created_at: datetime
    id: str


async def list_for_user(
    db: MongoDatabase,
    *,
    user_id: str,
    limit: int,
    after: Position | None = None,
    before: datetime | None = None,
    unread_only: bool = False,
) -> list[dict[str, Any]]:
    """A user's notifications, newest first, ties broken by _id (the `user_recent` index).
    `after`: strictly older than that item; `before`: created strictly before that time."""
    query: dict[str, Any] = {**_OURS, "userId": user_id}
    if after is not None:
        query["$or"] = [
            {"createdAt": {"$lt": after.created_at}},
            {"createdAt": after.created_at, "_id": {"$lt": after.id}},
        ]
    if before is not None:
        query.setdefault("$and", []).append({"createdAt": {"$lt": before}})
    if unread_only:
        query["read"] = False
    cursor = db[NOTIFICATIONS].find(query).sort(_NEWEST_FIRST).limit(limit)
    return [document async for document in cursor]


async def count_unread(db: MongoDatabase, *, user_id: str) -> int:
    return int(await db[NOTIFICATIONS].count_documents({**_OURS, "userId": user_id, "read": False}))


async def mark_read(db: MongoDatabase, *, user_id: str, notification_id: str | None) -> int:
    """Mark one notification (or, with None, all of them) read; only the owner's ever match."""
    query: dict[str, Any] = {**_OURS, "userId": user_id, "read": False}
    if notification_id is not None:
        query["_id"] = notification_id
    result = await db[NOTIFICATIONS].update_many(query, {"$set": {"read": True}})
    return int(result.matched_count)


async def exists_for_user(db: MongoDatabase, *, user_id: str, notification_id: str) -> bool:
    found = await db[NOTIFICATIONS].find_one(
        {**_OURS, "_id": notification_id, "userId": user_id}, {"_id": 1}
    )
    return found is not None
