"""Messaging: who may talk about a project, and what they said.

A conversation is between a project's client and one worker who bid on it or is booked for it;
either may open it, and only those two read or post in it. Admins are not participants: private
chats are not theirs to read (disputes carry their own evidence).

A message is written to PostgreSQL with its `message.sent` event in one transaction; the messages
agent copies it into MongoDB and delivers it live (agents/messages.py). The history is read from
MongoDB, so it shows a message once the agent has stored it, normally well under a second later.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.auth.schemas import AuthenticatedUser
from api.errors import Forbidden, NotFound
from api.messages import repository
from api.messages.schemas import (
    ConversationOpen,
    ConversationOut,
    ConversationPage,
    MessageCreate,
    MessageOut,
    MessagePage,
    Participant,
    ReadReceiptIn,
    ReadReceiptOut,
)
from api.pagination import Cursor, encode_cursor
from api.realtime import presence
from api.schemas import invalid
from bridges.outbox import append_event
from infrastructure.database import unit_of_work
from infrastructure.mongo import MongoDatabase
from streams.events import new_event
from streams.messages import MessageSent, user_room
from tables import messages as store

log = logging.getLogger(__name__)

CONVERSATION_NOT_FOUND = "conversation not found"
# A notification's preview is cut shorter still (agents/notification_templates.py).
PREVIEW_CHARS = 200


def now_ms() -> datetime:
    """Now, to the millisecond: what MongoDB keeps, so the POST answers the time the history
    will show."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def open_conversation(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, body: ConversationOpen
) -> tuple[ConversationOut, bool]:
    """The conversation of the caller and `participantId` about a project (opened on first
    call); and whether this call opened it."""
    async with unit_of_work(pool) as conn:
        project = await repository.fetch_project(conn, project_id=body.project_id)
        if project is None:
            raise NotFound("project not found")
        client_id: uuid.UUID = project["client_id"]
        caller_on_project = user.id == client_id or await repository.worker_is_on_project(
            conn, project_id=body.project_id, worker_id=user.id
        )
        if not caller_on_project and project["status"] != "open":
            # Off the public board it is 404 to outsiders, as everywhere (api/projects/access.py).
            raise NotFound("project not found")
        if user.id == client_id:
            worker_id = body.participant_id
        elif body.participant_id == client_id and caller_on_project:
            worker_id = user.id
        else:
            raise Forbidden(
                "a conversation is between the project's client and a worker who bid on it"
            )
        if worker_id == client_id or not await repository.worker_is_on_project(
            conn, project_id=body.project_id, worker_id=worker_id
        ):
            raise Forbidden(
                "only a worker who bid on or is booked for the project can talk about it"
            )
        record, created = await repository.open_conversation(
            conn,
            conversation_id=uuid.uuid4(),
            project_id=body.project_id,
            client_id=client_id,
            worker_id=worker_id,
            now=now_ms(),
        )
        view = await repository.fetch_conversation_view(
            conn, user_id=user.id, conversation_id=record["id"]
        )
    return _conversation(view), created


async def list_conversations(
    *, pool: asyncpg.Pool, user: AuthenticatedUser, cursor: Cursor | None, limit: int
) -> ConversationPage:
    async with pool.acquire() as conn:
        rows = await repository.list_conversations(
            conn, user_id=user.id, cursor=cursor, limit=limit
        )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(page[-1]["last_activity_at"], page[-1]["id"])
    return ConversationPage(items=[_conversation(row) for row in page], next_cursor=next_cursor)


async def participants_of(
    conn: asyncpg.Connection, *, conversation_id: uuid.UUID, user: AuthenticatedUser | uuid.UUID
) -> asyncpg.Record:
    """The conversation, when `user` is one of its two parties; 404 when there is none, 403
    for anyone else."""
    user_id = user.id if isinstance(user, AuthenticatedUser) else user
    conversation = await repository.fetch_conversation(conn, conversation_id=conversation_id)
    if conversation is None:
        raise NotFound(CONVERSATION_NOT_FOUND)
    if user_id not in (conversation["client_id"], conversation["worker_id"]):
        raise Forbidden("only the conversation's participants may read or post in it")
    return conversation


async def send_message(
    *, pool: asyncpg.Pool, redis: aioredis.Redis, user: AuthenticatedUser, body: MessageCreate
) -> MessageOut:
    """Store a message and its `message.sent` event, naming the recipients with no live
    socket (they get a notification instead)."""
    async with pool.acquire() as conn:
        conversation = await participants_of(conn, conversation_id=body.conversation_id, user=user)
    recipients = [
        party
        for party in (conversation["client_id"], conversation["worker_id"])
        if party != user.id
    ]
    # Asked before the transaction: no Redis round trip while the conversation row is locked.
    offline = await _offline(redis, recipients)
    message_id = uuid.uuid4()
    created_at = now_ms()
    async with unit_of_work(pool) as conn:
        sequence = await repository.next_sequence(
            conn, conversation_id=body.conversation_id, now=created_at
        )
        await repository.insert_message(
            conn,
            message_id=message_id,
            conversation_id=body.conversation_id,
            sequence=sequence,
            sender_id=user.id,
            message_type=body.type,
            content=body.content,
            created_at=created_at,
        )
        event = MessageSent(
            message_id=message_id,
            conversation_id=body.conversation_id,
            sender_id=user.id,
            recipient_ids=recipients,
            offline_recipient_ids=offline,
            preview=body.content[:PREVIEW_CHARS] if body.type == "text" else "Sent a file",
            project_id=conversation["project_id"],
            message_sequence=sequence,
            content=body.content,
            message_type=body.type,
            sent_at=created_at,
        )
        await append_event(
            conn, new_event(event, aggregate_id=body.conversation_id, actor_id=user.id)
        )
    return MessageOut(
        id=message_id,
        conversation_id=body.conversation_id,
        sequence=sequence,
        sender_id=user.id,
        type=body.type,
        content=body.content,
        created_at=created_at,
    )


async def _offline(redis: aioredis.Redis, user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The users with no live socket. Redis unreachable: all of them, since a notification
    too many is better than a message nobody is told about."""
    try:
        live = await presence.online(redis, user_ids)
    except (RedisError, OSError) as exc:
        log.warning("presence unknown (%s); notifying every recipient", exc)
        live = set()
    return [user_id for user_id in user_ids if user_id not in live]


async def history(
    *,
    pool: asyncpg.Pool,
    mongo: MongoDatabase,
    user: AuthenticatedUser,
    conversation_id: uuid.UUID,
    cursor: str | None,
    limit: int,
) -> MessagePage:
    """A conversation's messages, newest first; pages follow the conversation's sequence."""
    async with pool.acquire() as conn:
        await participants_of(conn, conversation_id=conversation_id, user=user)
    documents = await store.history(
        mongo,
        conversation_id=conversation_id,
        limit=limit + 1,
        before_sequence=decode_sequence_cursor(cursor),
    )
    page = documents[:limit]
    next_cursor = encode_sequence_cursor(page[-1]["sequence"]) if len(documents) > limit else None
    return MessagePage(items=[_message(document) for document in page], next_cursor=next_cursor)


async def mark_read(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    user: AuthenticatedUser,
    conversation_id: uuid.UUID,
    body: ReadReceiptIn,
) -> ReadReceiptOut:
    """Everything up to `upToMessageId` is read by the caller; the other party's sockets (and
    the caller's other ones) hear it as `messages_read`. The mark only moves forward."""
    async with unit_of_work(pool) as conn:
        conversation = await participants_of(conn, conversation_id=conversation_id, user=user)
        message = await repository.fetch_message(
            conn, conversation_id=conversation_id, message_id=body.up_to_message_id
        )
        if message is None:
            raise invalid(
                [
                    {
                        "field": "upToMessageId",
                        "message": "no such message in this conversation",
                        "type": "not_found",
                    }
                ]
            )
        moved = await repository.advance_read(
            conn,
            conversation_id=conversation_id,
            user_id=user.id,
            message_id=message["id"],
            sequence=message["sequence"],
            now=now_ms(),
        )
        read = await repository.fetch_read(conn, conversation_id=conversation_id, user_id=user.id)
    receipt = ReadReceiptOut(
        conversation_id=conversation_id,
        user_id=user.id,
        up_to_message_id=read["last_read_message_id"],
        sequence=read["last_read_sequence"],
        read_at=read["read_at"],
        unread_count=read["unread_count"],
    )
    if moved:
        # After the commit: the receipt is kept whether or not anyone hears it live.
        frame = {
            "event": "messages_read",
            "data": receipt.model_dump(mode="json", by_alias=True, exclude={"unread_count"}),
        }
        rooms = [user_room(conversation["client_id"]), user_room(conversation["worker_id"])]
        try:
            await store.publish(redis, rooms, frame)
        except (RedisError, OSError) as exc:
            log.warning("read receipt not delivered live: %s", exc)
    return receipt


def encode_sequence_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(["seq", sequence]).encode()).decode().rstrip("=")


def decode_sequence_cursor(value: str | None) -> int | None:
    """A history cursor we issued; anything else is a 422 naming `cursor`."""
    if value is None:
        return None
    try:
        padded = value + "=" * (-len(value) % 4)
        tag, sequence = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if tag != "seq" or not isinstance(sequence, int) or isinstance(sequence, bool):
            raise ValueError("not a history cursor")
        if sequence < 1:
            raise ValueError("not a history cursor")
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise invalid(
            [{"field": "cursor", "message": "not a cursor this API issued", "type": "cursor"}]
        ) from exc
    return sequence


def _message(document: dict[str, Any]) -> MessageOut:
    return MessageOut(
        id=uuid.UUID(document["_id"]),
        conversation_id=uuid.UUID(document["conversationId"]),
        sequence=document["sequence"],
        sender_id=uuid.UUID(document["senderId"]),
        type=document["type"],
        content=document["content"],
        created_at=document["createdAt"],
    )


def _conversation(row: asyncpg.Record) -> ConversationOut:
    last = None
    if row["last_id"] is not None:
        last = MessageOut(
            id=row["last_id"],
            conversation_id=row["id"],
            sequence=row["last_sequence"],
            sender_id=row["last_sender_id"],
            type=row["last_type"],
            content=row["last_content"],
            created_at=row["last_created_at"],
        )
    return ConversationOut(
        id=row["id"],
        project_id=row["project_id"],
        project_title=row["project_title"],
        client_id=row["client_id"],
        worker_id=row["worker_id"],
        participant=Participant(id=row["other_id"], name=row["other_name"], role=row["other_role"]),
        last_message=last,
        unread_count=row["unread_count"],
        last_activity_at=row["last_activity_at"],
        created_at=row["created_at"],
    )
