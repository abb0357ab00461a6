"""Messages in MongoDB `flexwork_messages`, and their live delivery over Redis pub/sub.

`flexwork_messages` is the seed's collection for "conversations, messages, read receipts"; each
document says what it is in `kind` (as `flexwork_notifications` does), and every read and index
here is limited to `kind: "message"`. A message's `_id` is its id, written with `$setOnInsert` +
upsert: a redelivered `message.sent` changes nothing.

History is newest first on the conversation's own `sequence` (1, 2, 3, … given by PostgreSQL in
the sending transaction): no two messages of a conversation share one, so a page that ends
between two messages of the same millisecond neither skips nor repeats either.

Live frames are JSON `{"event": …, "data": {…}}` published on each room's channel
(streams/messages.py `room_channel`); `excludeUserId`, when present, is a user whose sockets must
not get the frame (the typist of a `typing` frame). The API's hub strips it before sending.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import redis.asyncio as aioredis
from pymongo import ASCENDING, DESCENDING

from infrastructure.mongo import MongoDatabase
from streams.events import Event
from streams.messages import MessageSent, room_channel

MESSAGES: Final = "flexwork_messages"
MESSAGE_KIND: Final = "message"
_OURS: Final = {"kind": MESSAGE_KIND}


async def ensure_indexes(db: MongoDatabase) -> None:
    """A conversation's messages by sequence (history pages), partial on our kind."""
    await db[MESSAGES].create_index(
        [("conversationId", ASCENDING), ("sequence", DESCENDING)],
        name="conversation_sequence",
        partialFilterExpression=_OURS,
    )


def message_document(event: Event, message: MessageSent) -> dict[str, Any]:
    """The stored message, from its event alone (a replay rebuilds the history)."""
    return {
        "_id": str(message.message_id),
        "kind": MESSAGE_KIND,
        "conversationId": str(message.conversation_id),
        "projectId": str(message.project_id) if message.project_id else None,
        "sequence": message.message_sequence,
        "senderId": str(message.sender_id),
        "type": message.message_type,
        "content": message.content,
        # The API's time, not the event's: the POST answered this one (both in milliseconds).
        "createdAt": message.sent_at or event.occurred_at,
        "eventId": str(event.event_id),
    }


async def add_message(db: MongoDatabase, document: dict[str, Any]) -> bool:
    """Insert `document` unless its `_id` exists; True when this call created it."""
    fields = {key: value for key, value in document.items() if key != "_id"}
    result = await db[MESSAGES].update_one(
        {"_id": document["_id"]}, {"$setOnInsert": fields}, upsert=True
    )
    return result.upserted_id is not None


async def is_published(db: MongoDatabase, *, message_id: str) -> bool:
    """Whether the message's live frame went out already (agents/messages.py)."""
    found = await db[MESSAGES].find_one(
        {"_id": message_id, "publishedAt": {"$exists": True}}, {"_id": 1}
    )
    return found is not None


async def mark_published(db: MongoDatabase, *, message_id: str, now: datetime) -> None:
    await db[MESSAGES].update_one({"_id": message_id}, {"$set": {"publishedAt": now}})


async def history(
    db: MongoDatabase, *, conversation_id: uuid.UUID, limit: int, before_sequence: int | None
) -> list[dict[str, Any]]:
    """Up to `limit` messages of a conversation, newest first, older than `before_sequence`."""
    query: dict[str, Any] = {**_OURS, "conversationId": str(conversation_id)}
    if before_sequence is not None:
        query["sequence"] = {"$lt": before_sequence}
    cursor = db[MESSAGES].find(query).sort("sequence", DESCENDING).limit(limit)
    return [document async for document in cursor]


def message_frame(document: dict[str, Any]) -> dict[str, Any]:
    """The `new_message` frame of a stored message: the same fields as the REST answer."""
    created_at: datetime = document["createdAt"]
    return {
        "event": "new_message",
        "data": {
            "id": document["_id"],
            "conversationId": document["conversationId"],
            "sequence": document["sequence"],
            "senderId": document["senderId"],
            "type": document["type"],
            "content": document["content"],
            "createdAt": created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    }


async def publish(
    redis: aioredis.Redis,
    rooms: Iterable[str],
    frame: dict[str, Any],
    *,
    exclude_user_id: str | None = None,
) -> None:
    """Send `frame` to every socket in `rooms`, whichever API process holds it."""
    payload = dict(frame)
    if exclude_user_id is not None:
        payload["excludeUserId"] = exclude_user_id
    text = json.dumps(payload, separators=(",", ":"))
    async with redis.pipeline(transaction=False) as pipe:
        for room in rooms:
            pipe.publish(room_channel(room), text)
        await pipe.execute()
