"""What a chat socket may say (frames `{"event": …, "data": {…}}`, the seed's Socket.IO names):

| client sends                           | server answers / relays                             |
|----------------------------------------|-----------------------------------------------------|
| `join_conversation` `{conversationId}` | `joined_conversation` (participants only)           |
| `leave_conversation` `{conversationId}`| `left_conversation`                                 |
| `typing` `{conversationId, isTyping?}` | `typing` `{conversationId, userId, isTyping}` to    |
|                                        | the conversation's room, the typist's sockets left out |
| `ping`                                 | `pong`                                              |

Anything refused gets an `error` frame `{code, message, event, details}` and the socket stays
open. Typing is ephemeral: relayed through Redis to the conversation's room, never stored nor
sent through Kafka. `new_message` and `messages_read` come from the pipeline and the read
endpoint (agents/messages.py, api/messages/service.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.errors import TulifoError
from api.messages.service import participants_of
from api.realtime.hub import Connection, Hub
from streams.messages import conversation_room
from tables import messages as store


class FrameError(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def error_frame(event: str | None, error: FrameError) -> dict[str, Any]:
    return {
        "event": "error",
        "data": {
            "code": error.code,
            "message": error.message,
            "event": event,
            "details": error.details,
        },
    }


def _conversation_id(data: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(data["conversationId"]))
    except (KeyError, ValueError) as exc:
        raise FrameError(
            "VALIDATION_ERROR",
            "conversationId: a conversation id is required",
            [{"field": "conversationId", "message": "a conversation id is required"}],
        ) from exc


async def handle(
    event: str,
    data: dict[str, Any],
    *,
    connection: Connection,
    hub: Hub,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    """Act on one client frame; FrameError says why it was refused."""
    if event == "ping":
        connection.send({"event": "pong", "data": {}})
    elif event == "join_conversation":
        conversation_id = _conversation_id(data)
        try:
            async with pool.acquire() as conn:
                await participants_of(
                    conn, conversation_id=conversation_id, user=connection.user_id
                )
        except TulifoError as exc:
            raise FrameError(exc.code, exc.message) from exc
        try:
            await hub.join(connection, conversation_room(conversation_id))
        except (TimeoutError, RedisError, OSError) as exc:
            await hub.leave(connection, conversation_room(conversation_id))
            raise FrameError("SERVICE_UNAVAILABLE", "live updates are unavailable") from exc
        connection.send(
            {"event": "joined_conversation", "data": {"conversationId": str(conversation_id)}}
        )
    elif event == "leave_conversation":
        conversation_id = _conversation_id(data)
        await hub.leave(connection, conversation_room(conversation_id))
        connection.send(
            {"event": "left_conversation", "data": {"conversationId": str(conversation_id)}}
        )
    elif event == "typing":
        conversation_id = _conversation_id(data)
        room = conversation_room(conversation_id)
        # Joining checked participation once; typing is too frequent to ask PostgreSQL each time.
        if room not in connection.rooms:
            raise FrameError("FORBIDDEN", "join the conversation before typing in it")
        frame = {
            "event": "typing",
            "data": {
                "conversationId": str(conversation_id),
                "userId": str(connection.user_id),
                "isTyping": data.get("isTyping", True) is not False,
            },
        }
        try:
            await store.publish(redis, [room], frame, exclude_user_id=str(connection.user_id))
        except (RedisError, OSError) as exc:
            raise FrameError("SERVICE_UNAVAILABLE", "live updates are unavailable") from exc
    else:
        raise FrameError("UNKNOWN_EVENT", f"unknown event {event!r}")
