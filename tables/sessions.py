"""Sign-in sessions in MongoDB `sessions` (the seed's session service): one document per
refresh-token family, saying where the session was opened and when it was last used.

`_id` is the family id as a string: the `fam` claim of the session's refresh tokens and the `sid`
claim of its access tokens. PostgreSQL's `refresh_token_families` decides whether a session is
live; a document here describes it (device, address, times) and records its revocation.
Expired documents are removed by the TTL index on `expiresAt`, which slides with each refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from infrastructure.mongo import MongoDatabase

SESSIONS = "sessions"


async def ensure_indexes(db: MongoDatabase) -> None:
    """A user's sessions by last use, and expiry. Idempotent: run at every process start."""
    await db[SESSIONS].create_index(
        [("userId", ASCENDING), ("lastUsedAt", DESCENDING)], name="user_recent"
    )
    # expireAfterSeconds=0: a document goes when the instant in `expiresAt` has passed (MongoDB's
    # TTL monitor runs every 60 s, so readers still filter on it).
    await db[SESSIONS].create_index("expiresAt", name="expiry", expireAfterSeconds=0)


async def open_session(
    db: MongoDatabase,
    *,
    session_id: str,
    user_id: str,
    device: dict[str, Any],
    ip: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Record a new session; a second call with the same id changes nothing."""
    await db[SESSIONS].update_one(
        {"_id": session_id},
        {
            "$setOnInsert": {
                "userId": user_id,
                "device": device,
                "ip": ip,
                "createdAt": now,
                "lastUsedAt": now,
                "expiresAt": expires_at,
                "revokedAt": None,
                "revokedReason": None,
            }
        },
        upsert=True,
    )


async def touch_session(
    db: MongoDatabase, *, session_id: str, ip: str, now: datetime, expires_at: datetime
) -> None:
    """Note a use of a live session (a refresh) from `ip`."""
    # $max: two refreshes finishing out of order never move the times backwards.
    await db[SESSIONS].update_one(
        {"_id": session_id, "revokedAt": None},
        {"$max": {"lastUsedAt": now, "expiresAt": expires_at}, "$set": {"ip": ip}},
    )


async def mark_revoked(
    db: MongoDatabase, *, session_ids: Iterable[str], now: datetime, reason: str
) -> None:
    """Stamp the revocation on sessions not already revoked (the first reason stays)."""
    ids = list(session_ids)
    if not ids:
        return
    await db[SESSIONS].update_many(
        {"_id": {"$in": ids}, "revokedAt": None},
        {"$set": {"revokedAt": now, "revokedReason": reason}},
    )


async def find_sessions(
    db: MongoDatabase, *, session_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The documents of `session_ids` that exist, by id."""
    ids = list(session_ids)
    if not ids:
        return {}
    cursor = db[SESSIONS].find({"_id": {"$in": ids}})
    return {document["_id"]: document async for document in cursor}
