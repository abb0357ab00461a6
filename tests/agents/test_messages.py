"""The messages agent's handler on real MongoDB and Redis (no Kafka): a message is stored once and
published once to every participant's room, whatever the redeliveries; a record without the
message is poison."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from agents.messages import Deliverer
from agents.runtime import AgentDeps, PoisonEvent, RetryPolicy
from bridges.email import SmtpMailer
from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings
from streams.events import Event, new_event
from streams.messages import MessageSent, room_channel, user_room
from tables.messages import MESSAGES, history

QUICK = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.01)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def deps_for(mongo_db: MongoDatabase, redis: aioredis.Redis | None) -> AgentDeps:
    settings = Settings()
    return AgentDeps(
        settings=settings, mongo=mongo_db, mailer=SmtpMailer(settings), retry=QUICK, redis=redis
    )


def message_event(sequence: int = 1, **overrides: Any) -> tuple[Event, MessageSent]:
    sender, recipient = uuid.uuid4(), uuid.uuid4()
    record = MessageSent(
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        sender_id=sender,
        recipient_ids=[recipient],
        offline_recipient_ids=[],
        preview="Hi",
        project_id=uuid.uuid4(),
        message_sequence=sequence,
        content="Hi there",
        message_type="text",
        sent_at=datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC),
    ).model_copy(update=overrides)
    return new_event(record, aggregate_id=record.conversation_id, actor_id=sender), record


SENTINEL = {"event": "end_of_test", "data": {}}


async def frames_on(
    redis: aioredis.Redis, rooms: list[str], *, timeout: float = 20.0
) -> list[tuple[str, dict[str, Any]]]:
    """Every frame published on `rooms` before the SENTINEL frame (on any of them)."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(*[room_channel(room) for room in rooms])
    received: list[tuple[str, dict[str, Any]]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    try:
        while loop.time() < end:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is None:
                continue
            frame = json.loads(message["data"])
            if frame == SENTINEL:
                return received
            received.append((message["channel"], frame))
    finally:
        await pubsub.aclose()
    raise AssertionError(f"no sentinel within {timeout}s; got {received}")


async def test_a_message_is_stored_then_published_to_every_participant_once(
    mongo_db: MongoDatabase, redis: aioredis.Redis
) -> None:
    event, record = message_event()
    deliverer = Deliverer(deps_for(mongo_db, redis))
    rooms = [user_room(record.sender_id), user_room(record.recipient_ids[0])]
    listening = asyncio.create_task(frames_on(redis, rooms))
    await _subscribed(redis, room_channel(rooms[1]))

    assert await deliverer.handle(event) is True
    assert await deliverer.handle(event) is False  # redelivered: stored and published already
    # Published after both handlings returned, so it arrives after anything they published.
    await redis.publish(room_channel(rooms[0]), json.dumps(SENTINEL))
    received = await listening
    assert sorted(channel for channel, _ in received) == sorted(room_channel(r) for r in rooms)
    for _, frame in received:
        assert frame["event"] == "new_message"
        assert frame["data"] == {
            "id": str(record.message_id),
            "conversationId": str(record.conversation_id),
            "sequence": 1,
            "senderId": str(record.sender_id),
            "type": "text",
            "content": "Hi there",
            "createdAt": "2026-05-01T12:00:00.123Z",
        }
    [stored] = await history(
        mongo_db, conversation_id=record.conversation_id, limit=10, before_sequence=None
    )
    assert stored["_id"] == str(record.message_id)
    assert stored["kind"] == "message"
    assert stored["eventId"] == str(event.event_id)
    assert "publishedAt" in stored
    assert await mongo_db[MESSAGES].count_documents({"_id": str(record.message_id)}) == 1


async def test_without_redis_the_message_is_still_stored(mongo_db: MongoDatabase) -> None:
    event, record = message_event(sequence=4)
    assert await Deliverer(deps_for(mongo_db, None)).handle(event) is False
    [stored] = await history(
        mongo_db, conversation_id=record.conversation_id, limit=10, before_sequence=None
    )
    assert (stored["sequence"], stored["content"]) == (4, "Hi there")


@pytest.mark.parametrize(
    "data",
    [
        {"message_id": "nope"},
        # The notifications-only shape: no message to store.
        {
            "message_id": str(uuid.UUID(int=1)),
            "conversation_id": str(uuid.UUID(int=2)),
            "sender_id": str(uuid.UUID(int=3)),
            "recipient_ids": [],
        },
    ],
)
async def test_an_event_without_a_whole_message_is_poison(
    mongo_db: MongoDatabase, data: dict[str, Any]
) -> None:
    event, _ = message_event()
    broken = event.model_copy(update={"data": data})
    with pytest.raises(PoisonEvent):
        await Deliverer(deps_for(mongo_db, None)).handle(broken)


async def _subscribed(redis: aioredis.Redis, channel: str, timeout: float = 5.0) -> None:
    """Wait until Redis counts a subscriber on `channel`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        counts = dict(await redis.pubsub_numsub(channel))
        if counts.get(channel, 0) > 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody subscribed to {channel}")
