"""Notification state in MongoDB: the in-app notifications and the ledger of emails sent.

Both are keyed by the event that caused them, so a redelivered event finds its own traces:
- `notifications`: `_id` = "<event_id>:<kind>", written with `$setOnInsert` + upsert, so a
  second delivery changes nothing (not even a `read` flag the user has set meanwhile).
- `email_log`: `_id` = "<event_id>:<kind>", claimed by insert before the SMTP conversation and
  marked sent after it. A claim holds a token and a lease: the claimant releases it on failure;
  a worker that died mid-send leaves a claim another may take over once the lease has expired.
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

NOTIFICATIONS = "notifications"
EMAIL_LOG = "email_log"
# Three SMTP timeouts (bridges.email.SMTP_TIMEOUT_S = 10 s per step), so a live sender is not
# overtaken; and short enough that a dead sender's event, redelivered ~10 s later
# (broker_session_timeout), still gets its mail out within an agent's retry budget (~35 s)
# instead of being dead-lettered.
EMAIL_CLAIM_LEASE = timedelta(seconds=30)


async def ensure_indexes(db: MongoDatabase) -> None:
    """The listing index: a user's notifications, newest first."""
    await db[NOTIFICATIONS].create_index(
        [("userId", ASCENDING), ("createdAt", DESCENDING)], name="user_recent"
    )


async def add_notification(db: MongoDatabase, document: dict[str, Any]) -> bool:
    """Insert `document` unless its `_id` exists; True when this call created it."""
    fields = {key: value for key, value in document.items() if key != "_id"}
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


async def claim_email(
    db: MongoDatabase, claim_id: str, *, now: datetime, lease: timedelta = EMAIL_CLAIM_LEASE
) -> EmailClaim:
    """Try to become the one sender of email `claim_id`."""
    log = db[EMAIL_LOG]
    token = uuid.uuid4().hex
    try:
        await log.insert_one(
            {"_id": claim_id, "status": "sending", "token": token, "claimedAt": now, "attempts": 1}
        )
        return EmailClaim(claim_id, ClaimState.CLAIMED, token)
    except DuplicateKeyError:
        pass
    stale = await log.find_one_and_update(
        {"_id": claim_id, "status": "sending", "claimedAt": {"$lt": now - lease}},
        {"$set": {"token": token, "claimedAt": now}, "$inc": {"attempts": 1}},
    )
    if stale is not None:
        return EmailClaim(claim_id, ClaimState.CLAIMED, token)
    existing = await log.find_one({"_id": claim_id}, {"status": 1})
    if existing is None:
        # Released between our insert and our look: the next attempt will claim it.
        return EmailClaim(claim_id, ClaimState.IN_PROGRESS)
    if existing.get("status") == "sent":
        return EmailClaim(claim_id, ClaimState.SENT)
    return EmailClaim(claim_id, ClaimState.IN_PROGRESS)


async def mark_email_sent(
    db: MongoDatabase, claim: EmailClaim, *, now: datetime, message_id: str
) -> None:
    await db[EMAIL_LOG].update_one(
        {"_id": claim.id, "token": claim.token},
        {"$set": {"status": "sent", "sentAt": now, "messageId": message_id}},
    )


async def release_email(db: MongoDatabase, claim: EmailClaim) -> None:
    """Give the claim up (the send failed), so the next attempt may claim it again."""
    await db[EMAIL_LOG].delete_one({"_id": claim.id, "token": claim.token, "status": "sending"})


async def list_for_user(
    db: MongoDatabase,
    *,
    user_id: str,
    limit: int,
    before: datetime | None = None,
    unread_only: bool = False,
) -> list[dict[str, Any]]:
    """A user's notifications, newest first (served by the `user_recent` index)."""
    query: dict[str, Any] = {"userId": user_id}
    if before is not None:
        query["createdAt"] = {"$lt": before}
    if unread_only:
        query["read"] = False
    cursor = db[NOTIFICATIONS].find(query).sort("createdAt", DESCENDING).limit(limit)
    return [document async for document in cursor]


async def count_unread(db: MongoDatabase, *, user_id: str) -> int:
    return int(await db[NOTIFICATIONS].count_documents({"userId": user_id, "read": False}))


async def mark_read(db: MongoDatabase, *, user_id: str, notification_id: str | None) -> int:
    """Mark one notification (or, with None, all of them) read; only the owner's ever match."""
    query: dict[str, Any] = {"userId": user_id, "read": False}
    if notification_id is not None:
        query["_id"] = notification_id
    result = await db[NOTIFICATIONS].update_many(query, {"$set": {"read": True}})
    return int(result.matched_count)


async def exists_for_user(db: MongoDatabase, *, user_id: str, notification_id: str) -> bool:
    found = await db[NOTIFICATIONS].find_one(
        {"_id": notification_id, "userId": user_id}, {"_id": 1}
    )
    return found is not None
